# coopcache: one Rust core, thin Python and Node layers. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: help test test-rust test-models check-models test-python test-node test-cross bench bench-rust bench-python bench-node bench-shared bench-growth \
        demo demo-rust demo-python demo-node demo-shared test-examples bench-charts lint python-env node-env test-readme \
        dist test-dist

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

test: test-rust test-models test-python test-node test-cross test-readme test-examples ## every test suite (Rust, models, Python, Node, cross-language, README, examples)

RUST_FEATURES := redis,tls,json

test-rust: ## the core's tests and doc tests (the shared tier's against a local redis-server)
	cargo test -p coopcache --release --features $(RUST_FEATURES)

test-models: ## the flight protocol under the shuttle model checker (random and PCT schedules)
	cargo test -p coopcache --release --features shuttle --test models

check-models: ## each model against a build with the bug it is there for: every one must fail (slow)
	$(PYTHON) core/tests/model_mutants.py

python-env: ## a virtualenv with the package and the test tools installed
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r tests/python/requirements.txt
	@echo "python-env: building the Python extension from source (a release build of the core: a few minutes the first time)"
	$(PY) -m pip install -q --force-reinstall --no-deps .

test-python: python-env ## the Python package's tests (pytest, mypy --strict on the stubs)
	bash tests/python/run.sh $(PY)

node-env: ## the locked dev tools (npm ci: package-lock.json is never rewritten), then the addon's build from source (needs Rust)
	npm ci --no-audit --no-fund
	@echo "node-env: building the Node addon from source (a release build of the core: a few minutes the first time)"
	npm run -s build

test-node: node-env ## the Node package's tests (node --test, tsc --strict on the types)
	bash tests/node/run.sh

test-cross: python-env node-env ## Python, Node and Rust processes sharing one key on a local redis-server
	cargo build -q --release -p coopcache --features $(RUST_FEATURES) --example shared_worker
	$(PY) -m pytest -q tests/cross

test-examples: python-env node-env ## every example, run as a user would (the Redis ones on a local redis-server)
	cargo build -q --release -p coopcache --example stampede
	cargo build -q --release -p coopcache --features $(RUST_FEATURES) --example shared_demo
	$(PY) -m pytest -q -p no:cacheprovider tests/test_examples.py

test-readme: python-env node-env ## every README snippet runs as written and type-checks (mypy --strict, pyright); one version everywhere; docstrings and TSDoc
	$(PY) -m pytest -q -p no:cacheprovider tests/test_readme.py tests/test_repository.py tests/test_typing.py tests/test_versions.py tests/test_docstrings.py tests/test_msrv.py

demo: demo-rust demo-python demo-node demo-shared ## a cold-key stampede in Rust, Python and Node (and across processes, with Redis)

demo-rust:
	@cargo run -q --release -p coopcache --example stampede

demo-python: python-env
	@$(PY) examples/python/stampede.py

demo-node: node-env
	@node examples/node/stampede.mjs

demo-shared: python-env node-env ## Python, Node and Rust processes on one cold key (REDIS_URL, or a redis-server on the PATH)
	@$(PY) examples/shared/demo.py

bench: bench-rust bench-python bench-node bench-shared bench-growth bench-charts ## the anchor benchmarks with coopcache as a contender, shared mode, growth, charts

bench-rust:
	bash bench/rust/run.sh

bench-python: python-env
	bash bench/python/run.sh $(PY)

bench-node: node-env ## the Node harness, its miss rows on Node 24 too (where AsyncLocalStorage costs no promise hooks), its hit row in 48 memory layouts
	bash bench/node/run.sh
	bash bench/node/layouts.sh
	COOPCACHE_BENCH_NODE=24 bash bench/node/run.sh --only multikey,stampede

bench-growth: python-env node-env ## costs as a cache grows, 10^4 to 10^7 entries, in each language (bench/growth/run.sh)
	bash bench/growth/run.sh $(PY)

bench-charts: ## PNG charts (docs/bench/*.png) from the JSON of the last runs in bench/results/
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q 'matplotlib==3.10.9; python_version >= "3.10"' 'matplotlib==3.9.4; python_version < "3.10"'
	$(PY) bench/chart.py

bench-shared: python-env ## shared mode: a shared-tier hit vs a raw GET, a cross-process stampede vs dogpile.cache (one Redis, a Redis Cluster)
	bash bench/shared/run.sh $(PY)

dist: node-env ## wheel, sdist, npm tarballs and crate for this machine into dist/, each checked (release/dist.sh)
	bash release/dist.sh

test-dist: ## install dist/'s artifacts into clean environments without Rust and run the suites there
	bash release/test_dist.sh

lint: python-env node-env ## rustfmt, clippy, ruff, tsc (in a fresh clone too: it sets up what it needs)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	for f in '' shared json redis $(RUST_FEATURES) shuttle; do \
	  cargo clippy -p coopcache --all-targets --features "$$f" -- -D warnings || exit 1; done
	RUSTDOCFLAGS='-D warnings' cargo doc -p coopcache --no-deps --features $(RUST_FEATURES)
	$(PY) -m ruff check bindings-python/python bindings-python/build_backend.py tests/python tests/cross tests/test_*.py examples bench
	$(PY) -m ruff format --check bindings-python/python bindings-python/build_backend.py tests/python tests/cross tests/test_*.py examples bench
	npx tsc --noEmit -p tests/node
