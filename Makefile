# coopcache: one Rust core, thin Python and Node layers. `make help` lists the targets.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python

.PHONY: help test test-rust test-python test-node test-cross bench bench-rust bench-python bench-node \
        demo demo-rust demo-python demo-node lint python-env node-env

help: ## this list
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

test: test-rust test-python test-node test-cross ## every test suite (Rust, Python, Node, cross-language)

test-rust: ## the core's tests and doc tests (the shared tier's against a local redis-server)
	cargo test -p coopcache --release --features shared

python-env: ## a virtualenv with the package and the test tools installed
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r tests/python/requirements.txt
	$(PY) -m pip install -q --force-reinstall --no-deps .

test-python: python-env ## the Python package's tests (pytest, mypy --strict on the stubs)
	bash tests/python/run.sh $(PY)

node-env: ## npm install at the root (builds the addon from source)
	npm install --no-audit --no-fund

test-node: node-env ## the Node package's tests (node --test, tsc --strict on the types)
	bash tests/node/run.sh

test-cross: python-env node-env ## Python, Node and Rust processes sharing one key on a local redis-server
	cargo build -q --release -p coopcache --features shared --example shared_worker
	$(PY) -m pytest -q tests/cross

demo: demo-rust demo-python demo-node ## a cold-key stampede in Rust, Python and Node

demo-rust:
	cargo run -q --release -p coopcache --example stampede

demo-python: python-env
	$(PY) examples/python/stampede.py

demo-node: node-env
	node examples/node/stampede.mjs

bench: bench-rust bench-python bench-node ## the anchor benchmarks with coopcache as a contender

bench-rust:
	bash bench/rust/run.sh

bench-python: python-env
	bash bench/python/run.sh $(PY)

bench-node: node-env
	bash bench/node/run.sh

lint: ## rustfmt, clippy, ruff, tsc
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(PY) -m ruff check bindings-python/python tests/python tests/cross examples/python bench/python
	npx tsc --noEmit -p tests/node
