#!/usr/bin/env bash
# `make dist`: builds and checks, into dist/, every artifact this machine can build:
#   - the Python abi3 wheel (CPython 3.9+) for manylinux_2_17 x86_64, built with zig as the linker
#     so that it runs on glibc 2.17+ whatever this machine's glibc is; `auditwheel show` must find
#     that tag and no library outside the policy, `abi3audit` no call outside the stable ABI;
#   - the Python sdist (the source build, `pip install` of it is tried by `make test-dist`);
#   - the npm packages: the main one and coopcache-linux-x64-gnu (bindings-node/pack.mjs);
#   - the crate (`cargo package`, then `cargo publish --dry-run`, both of which build what they pack).
# The other platforms are built by .github/workflows/release.yml. The tools come from
# release/requirements.txt into a virtualenv of their own ($DIST_VENV).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DIST_VENV="${DIST_VENV:-$ROOT/.venv-dist}"
PYTHON="${PYTHON:-python3}"
OUT="$ROOT/dist"
say() { printf '\n== %s\n' "$*"; }

say "tools (release/requirements.txt) in $DIST_VENV"
test -x "$DIST_VENV/bin/python" || "$PYTHON" -m venv "$DIST_VENV"
"$DIST_VENV/bin/python" -m pip install -q --disable-pip-version-check -r release/requirements.txt
# maturin finds zig on the PATH (the ziglang package puts it in the venv's bin/).
export PATH="$DIST_VENV/bin:$PATH"

rm -rf "$OUT"
mkdir -p "$OUT"
target_dir=$(cargo metadata --no-deps --format-version 1 | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

say "Python wheel (abi3, manylinux_2_17 x86_64, linked with zig)"
# A target folder of its own: the napi CLI builds for the same triple with another linker, and
# sharing one would make each build redo the other's.
CARGO_TARGET_DIR="$target_dir/wheel-zig" maturin build --release --zig --target x86_64-unknown-linux-gnu \
    --compatibility manylinux_2_17 --out "$OUT" --quiet
wheel=$(ls "$OUT"/coopcache-*-cp39-abi3-*manylinux_2_17_x86_64*.whl)
auditwheel show "$wheel" | tee "$OUT/auditwheel.txt"
# (auditwheel wraps its lines to the terminal's width)
tr '\n' ' ' < "$OUT/auditwheel.txt" | grep -q 'consistent with the following platform tag: "manylinux_2_17_x86_64"' || {
    echo "release/dist.sh: auditwheel does not find $wheel consistent with manylinux_2_17_x86_64" >&2
    exit 1
}
abi3audit --strict "$wheel" && echo "abi3audit: $(basename "$wheel") calls nothing outside the CPython 3.9 stable ABI"

say "Python sdist"
maturin sdist --out "$OUT"
sdist=$(ls "$OUT"/coopcache-*.tar.gz)
# It must hold what a build from it needs: both crates it builds, the lock file, the backend.
listing=$(mktemp)
tar -tzf "$sdist" > "$listing"
for f in Cargo.lock pyproject.toml bindings-python/Cargo.toml bindings-python/build_backend.py core/Cargo.toml \
    core/src/lib.rs bindings-python/python/coopcache/__init__.py; do
    grep -qx "coopcache-[^/]*/$f" "$listing" || { echo "release/dist.sh: $sdist lacks $f" >&2; exit 1; }
done
rm "$listing"

say "npm packages (main, linux-x64-gnu)"
# The addon a contributor's `npm run build` makes: a release build, the one the tests load.
npm run -s build
node bindings-node/pack.mjs "$OUT"

say "crate (cargo package, cargo publish --dry-run)"
cargo package -p coopcache --quiet ${CARGO_PACKAGE_FLAGS:-}
cp "$target_dir/package/coopcache-$(node -p "require('./package.json').version").crate" "$OUT/"
cargo publish -p coopcache --dry-run --quiet ${CARGO_PACKAGE_FLAGS:-}

say "release workflow (actionlint)"
actionlint .github/workflows/*.yml

say "dist/"
(cd "$OUT" && ls -l --block-size=K coopcache*)
