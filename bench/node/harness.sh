# Sourced by bench/node/run.sh and bench/node/layouts.sh: the anchor harness (../shared/bench/node,
# or $COOPCACHE_BENCH_HARNESS) copied to a directory of our own (it is not edited), its pinned
# packages installed there, this repository's package linked in and our contender file copied.
# Needs ROOT (the repository). `harness_copy DIR` fills DIR; `harness_link DIR` links the package
# and the contender (after any further `npm install` in DIR: npm prunes a link it does not know).
HARNESS="${COOPCACHE_BENCH_HARNESS:-$ROOT/../shared/bench/node}"
if [ ! -f "$HARNESS/anchors.mjs" ]; then
    echo "anchor harness not found at $HARNESS (set COOPCACHE_BENCH_HARNESS)" >&2
    exit 2
fi
if ! ls "$ROOT"/bindings-node/native/coopcache.*.node >/dev/null 2>&1; then
    echo "the addon is not built: run \`npm install && npm run build\` at $ROOT first" >&2
    exit 2
fi

harness_copy() {
    tar -C "$HARNESS" --exclude=node_modules -cf - . | tar -C "$1" -xf -
    (cd "$1" && npm install --no-audit --no-fund --loglevel=error)
}

harness_link() {
    ln -s "$ROOT" "$1/node_modules/coopcache"
    cp "$ROOT/bench/node/coopcache.mjs" "$1/contenders/coopcache.mjs"
}
