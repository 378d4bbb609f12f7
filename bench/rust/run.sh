#!/usr/bin/env bash
# Runs the Rust anchor harness (../shared/bench/rust) with coopcache as a contender, on a copy,
# and writes bench/results/rust.md and rust.json. Extra arguments go to the harness
# (for example --quick, or --only hit).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
harness=${ANCHORS_RUST:-$repo/../shared/bench/rust}
[ -d "$harness" ] || { echo "the Rust anchor harness is not at $harness (set ANCHORS_RUST)" >&2; exit 1; }
work=$(mktemp -d /tmp/coopcache-bench-rust.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$harness/." "$work/"
sed -i "s|^# coopcache = .*|coopcache = { path = \"$repo/core\", optional = true }|; s|^coopcache = \[\]|coopcache = [\"dep:coopcache\"]|" "$work/Cargo.toml"
cp "$repo/bench/rust/coopcache_contender.rs" "$work/src/contenders/coopcache.rs"
mkdir -p "$repo/bench/results"
(cd "$work" && cargo build -q --release --features coopcache)
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--only hit,stampede,memory,semantics --contender coopcache,moka-sync,moka-future,quick_cache,dashmap)
(cd "$work" && ./target/release/anchors "${args[@]}" --json "$repo/bench/results/rust.json") | tee "$repo/bench/results/rust.md"
# A hit while its value is being refreshed (refresh_after) vs any hit, in the core alone.
(cd "$repo" && cargo run -q --release -p coopcache --example bench_refresh_hit) | tee "$repo/bench/results/refresh_hit.md"
# What exact idle expiry's clock read costs a hit on 100k keys: the system clock vs a manual one.
(cd "$repo" && cargo run -q --release -p coopcache --example bench_hit_clock) | tee "$repo/bench/results/hit_clock.md"
