// Do the Node package's costs stay flat as a cache grows? For 10^4 to 10^7 entries (int keys):
// the `await cached()` hit latency on uniformly random keys and the heap + native memory per
// entry, beside a plain Map of the same entries (the floor). Each row runs in a process of its
// own. Prints a Markdown table; with `--json FILE`, writes the figures for bench/chart.py.
//
//     node --expose-gc bench/growth/node_growth.mjs [--json FILE] [--max N]
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const LOOKUPS = 1_000_000;
const SIZES = [10_000, 100_000, 1_000_000, 10_000_000];

function randomKeys(n) {
  let s = 7n;
  const keys = new Array(LOOKUPS);
  for (let i = 0; i < LOOKUPS; i++) {
    s = (s * 6364136223846793005n + 1442695040888963407n) & 0xffffffffffffffffn;
    keys[i] = Number((s >> 33n) % BigInt(n));
  }
  return keys;
}

function rss() {
  globalThis.gc?.();
  return process.memoryUsage().rss;
}

async function row(name, n) {
  const keys = randomKeys(n);
  const { configure, cached } = await import('coopcache'); // not the entries' memory
  const before = rss();
  let get;
  if (name === 'map') {
    const m = new Map();
    for (let k = 0; k < n; k++) m.set(k, k * k);
    get = async (k) => m.get(k);
  } else {
    configure('growth', { memoryLimit: 0.5 });
    const square = (k) => k * k;
    for (let k = 0; k < n; k++) await cached('growth', k, () => square(k));
    get = (k) => cached('growth', k, () => square(k));
  }
  const perEntry = (rss() - before) / n;
  let best = Infinity;
  for (let pass = 0; pass < 3; pass++) {
    const t = process.hrtime.bigint();
    for (const k of keys) await get(k);
    best = Math.min(best, Number(process.hrtime.bigint() - t) / keys.length);
  }
  return { hit_ns: best, bytes_per_entry: perEntry };
}

const args = process.argv.slice(2);
const opt = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
if (opt('--row')) {
  console.log(JSON.stringify(await row(opt('--row'), Number(args[args.indexOf('--row') + 2]))));
} else {
  const max = Number(opt('--max') ?? SIZES.at(-1));
  const out = [];
  console.log('| entries | coopcache hit (ns) | Map hit (ns) | coopcache bytes/entry | Map bytes/entry |');
  console.log('|---:|---:|---:|---:|---:|');
  for (const n of SIZES.filter((s) => s <= max)) {
    const r = { entries: n };
    for (const name of ['coopcache', 'map']) {
      const res = execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--row', name, String(n)], { encoding: 'utf8', maxBuffer: 1 << 20 });
      for (const [k, v] of Object.entries(JSON.parse(res))) r[`${name}_${k}`] = v;
    }
    console.log(`| ${n} | ${r.coopcache_hit_ns.toFixed(1)} | ${r.map_hit_ns.toFixed(1)} | ${r.coopcache_bytes_per_entry.toFixed(1)} | ${r.map_bytes_per_entry.toFixed(1)} |`);
    out.push(r);
  }
  if (opt('--json')) writeFileSync(opt('--json'), JSON.stringify(out, null, 2));
}
