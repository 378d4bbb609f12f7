#!/usr/bin/env bash
# `make test-dist`: installs the artifacts of `make dist` as a user gets them, into clean
# environments with cargo and rustc hidden from the PATH, and runs the suites against them:
#   - Python: the wheel into fresh virtualenvs of CPython 3.9 and 3.13, tests/python in each;
#     the sdist into a fresh virtualenv, built from itself (with Rust), and without Rust, where the
#     build must fail with one line that says what to install;
#   - Node: the main and linux-x64-gnu tarballs into a fresh project, tests/node under Node 18, 20
#     and 22 (the same install: one addon serves every Node), a smoke test under Bun and Deno;
#     and `npm run build` of a checkout without Rust, which must fail with one line.
# The runtimes that the machine lacks come from the package registries (release/runtimes.json
# for Node 18/22, Bun and Deno). Prints the install times, which the release notes quote.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
DIST="$ROOT/dist"
TOOLS="${DIST_TOOLS:-$ROOT/.dist-tools}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
say() { printf '\n== %s\n' "$*"; }
TIMES="$WORK/times"
: > "$TIMES"
# `timed LABEL CMD...`: runs CMD and notes its wall time under LABEL.
timed() {
    local label=$1 start end
    shift
    start=$EPOCHREALTIME
    "$@"
    end=$EPOCHREALTIME
    awk -v l="$label" -v s="$start" -v e="$end" 'BEGIN { printf "%-48s %6.1f s\n", l, e - s }' >> "$TIMES"
}

version=$(node -p "require('./package.json').version")
wheel=$(ls "$DIST"/coopcache-"$version"-cp39-abi3-*manylinux_2_17_x86_64*.whl)
sdist="$DIST/coopcache-$version.tar.gz"
main_tgz="$DIST/coopcache-$version.tgz"
platform_tgz="$DIST/coopcache-linux-x64-gnu-$version.tgz"
for f in "$wheel" "$sdist" "$main_tgz" "$platform_tgz"; do
    test -f "$f" || { echo "release/test_dist.sh: $f is missing: run \`make dist\` first" >&2; exit 1; }
done

# The PATH without the folders that hold cargo or rustc (rustup's ~/.cargo/bin, or elsewhere).
NO_RUST_PATH=$(IFS=:; for d in $PATH; do
    [[ -x "$d/cargo" || -x "$d/rustc" ]] || printf '%s:' "$d"; done)
NO_RUST_PATH=${NO_RUST_PATH%:}
norust() { env -u CARGO -u RUSTC -u RUSTUP_HOME -u CARGO_HOME PATH="$NO_RUST_PATH" "$@"; }
norust sh -c '! command -v cargo && ! command -v rustc' >/dev/null || { echo "cargo is still on the PATH" >&2; exit 1; }

# An interpreter of CPython X.Y that runs: pyenv's (its shims on the PATH fail for a version that
# is not selected), else pythonX.Y on the PATH.
find_python() {
    local v=$1 p
    for p in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/"python$v" 2>/dev/null | sort -rV) \
        $(command -v "python$v"); do
        "$p" -c '' 2>/dev/null && { echo "$p"; return; }
    done
    echo "release/test_dist.sh: no CPython $v (pyenv's, or python$v on the PATH)" >&2
    return 1
}

for v in 3.9 3.13; do
    say "Python $v: the wheel, no Rust"
    py=$(find_python "$v")
    venv="$WORK/py$v"
    "$py" -m venv "$venv"
    norust "$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
    timed "pip install wheel (Python $v)" norust "$venv/bin/python" -m pip install -q --no-deps --no-index "$wheel"
    # From tests/python (run.sh goes there), so the installed package is imported, not the tree.
    norust "$venv/bin/python" -c 'import coopcache, sys; assert "site-packages" in coopcache.__file__, coopcache.__file__'
    norust bash tests/python/run.sh "$venv/bin/python"
done

say "Python sdist: without Rust, one line that says what to install"
venv="$WORK/sdist-norust"
python3 -m venv "$venv"
if norust "$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check "$sdist" > "$WORK/sdist.log" 2>&1; then
    echo "release/test_dist.sh: the sdist installed without Rust" >&2
    exit 1
fi
grep -c 'coopcache: building from source needs Rust' "$WORK/sdist.log" | grep -qx 1 || {
    cat "$WORK/sdist.log"
    echo "release/test_dist.sh: no one-line 'needs Rust' message from the sdist's build" >&2
    exit 1
}
grep 'coopcache: building from source needs Rust' "$WORK/sdist.log"

say "Python sdist: builds from itself (with Rust)"
venv="$WORK/sdist"
python3 -m venv "$venv"
# The workspace's target folder, as the wheel's build left it: the dependencies are compiled once
# per CI run, not twice (so this time is a warm source build; a cold one takes minutes).
timed "pip install sdist (source build, warm cargo)" env CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" "$venv/bin/python" -m pip install -q --no-cache-dir --disable-pip-version-check "$sdist"
(cd "$WORK" && "$venv/bin/python" -c 'import coopcache; coopcache.configure("c"); print("sdist build:", coopcache.cached("c", 1, lambda: "ok"))')

say "Node runtimes (release/runtimes.json)"
mkdir -p "$TOOLS"
cp release/runtimes.json "$TOOLS/package.json"
(cd "$TOOLS" && npm install --no-audit --no-fund --loglevel=error)
node_bin() { case $1 in 20) dirname "$(command -v node)" ;; *) echo "$TOOLS/node_modules/node$1/bin" ;; esac; }

say "Node: the tarballs into a fresh project, no Rust"
proj="$WORK/node-project"
mkdir -p "$proj/tests"
cp -r tests/node "$proj/tests/node"
echo '{ "name": "coopcache-dist-test", "private": true }' > "$proj/package.json"
timed "npm install tarballs (main + linux-x64-gnu)" \
    norust sh -c "cd '$proj' && npm install --no-audit --no-fund --loglevel=error '$main_tgz' '$platform_tgz'"
types=$(node -p "const d = require('./package.json').devDependencies; [\`typescript@\${d.typescript}\`, \`@types/node@\${d['@types/node']}\`].join(' ')")
# shellcheck disable=SC2086
(cd "$proj" && npm install --no-audit --no-fund --loglevel=error --no-save $types)
for n in 18 20 22; do
    say "Node $n: tests/node against the installed package"
    (cd "$proj" && norust env PATH="$(node_bin "$n"):$NO_RUST_PATH" node --version &&
        norust env PATH="$(node_bin "$n"):$NO_RUST_PATH" node --test tests/node/*.test.mjs)
done
(cd "$proj" && norust npx --no-install tsc --noEmit --strict -p tests/node && echo "tsc: the types check")

smoke="$proj/smoke.mjs"
cat > "$smoke" <<'EOF'
import { configure, cached, stats } from 'coopcache';
configure('smoke');
let runs = 0;
const vs = await Promise.all(Array.from({ length: 100 }, () => cached('smoke', 'k', async () => ++runs)));
if (runs !== 1 || !vs.every((v) => v === 1) || stats('smoke').entries !== 1) throw new Error(`runs ${runs}`);
console.log('smoke: 100 calls, computed once');
EOF
say "Bun: smoke test"
(cd "$proj" && norust "$TOOLS/node_modules/bun/bin/bun.exe" --version && norust "$TOOLS/node_modules/bun/bin/bun.exe" smoke.mjs)
say "Deno: smoke test"
deno=$(ls "$TOOLS"/node_modules/@deno/linux-x64-glibc/deno)
(cd "$proj" && norust "$deno" --version && norust "$deno" run --allow-all smoke.mjs)

say "Node: building from a checkout without Rust fails with one line"
if norust node bindings-node/build.mjs > "$WORK/build.out" 2> "$WORK/build.err"; then
    echo "release/test_dist.sh: the addon built without Rust" >&2
    exit 1
fi
cat "$WORK/build.err"
[[ $(wc -l < "$WORK/build.err") -eq 1 ]] && grep -q 'needs Rust' "$WORK/build.err" || {
    echo "release/test_dist.sh: not one line that says Rust is needed" >&2
    exit 1
}

say "artifacts and install times"
(cd "$DIST" && for f in coopcache*; do printf '%-60s %8s\n' "$f" "$(du -h --apparent-size "$f" | cut -f1)"; done)
cat "$TIMES"
echo "release/test_dist.sh: all passed"
