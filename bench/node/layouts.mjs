// The `hit` row of the anchor harness, in many memory layouts: the harness's directory renamed to
// paths of every length in a range, each contender's hit measured in each (as the harness runs a
// child: `node --expose-gc DIR/anchors.mjs --child hit --name NAME --contender ...`, absolute paths).
// Why: a hit that crosses into native code is 10-20 ns slower in some layouts, and the path's
// length (in the child's arguments and environment, and in the strings Node allocates at start)
// picks the layout. The child's working directory and $PWD are the harness's, as under run.sh.
// One `make bench` run samples one layout; this shows the spread, every contender alike.
//
//   node bench/node/layouts.mjs DIR OUT [--from 1] [--to 48] [--reps 3]
//
// DIR: a harness copy (bench/node/harness.sh), renamed in turn to DIR's parent/dd...d (n times d)
// and back. Each figure is the best of --reps children (the harness's own `hit` row takes the
// median of 5 children in rotated order; the best of a few is steadier for a map of layouts).
// Writes OUT.md (summary and every figure) and OUT.json.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { from: { type: 'string', default: '1' }, to: { type: 'string', default: '48' }, reps: { type: 'string', default: '3' } },
});
const [dir, out] = positionals;
if (!dir || !out) throw new Error('usage: node layouts.mjs DIR OUT [--from N] [--to N] [--reps N]');
const [from, to, reps] = [Number(opt.from), Number(opt.to), Number(opt.reps)];
if (![from, to, reps].every(Number.isInteger) || from < 1 || to < from || reps < 1) {
  throw new Error(`--from, --to and --reps take whole numbers, 1 <= from <= to and reps >= 1; got ${opt.from}, ${opt.to}, ${opt.reps}`);
}

const COOP = 'coopcache';
const ANCHOR = 'lru-cache fetch()';
// The plain cache, the same hit through a process-wide cache, the anchor, and a pure-JS control.
const CONTENDERS = [COOP, "coopcache shared: 'process'", ANCHOR, 'baseline: Map+promise'];

function hitNs(at, name) {
  const args = ['--expose-gc', path.join(at, 'anchors.mjs'), '--child', 'hit', '--name', name];
  args.push('--contender', path.join(at, 'contenders', 'coopcache.mjs'));
  const env = { ...process.env, PWD: at };
  const r = spawnSync(process.execPath, args, { cwd: at, env, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  const line = r.stdout.split('\n').find((l) => l.startsWith('@@RESULT '));
  if (r.status !== 0 || !line) throw new Error(`${name} in ${at}: exit ${r.status}: ${r.stderr.trim().slice(-400)}`);
  return JSON.parse(line.slice('@@RESULT '.length)).reps[0];
}

const parent = path.dirname(path.resolve(dir));
let at = path.resolve(dir);
const rows = [];
try {
  for (let n = from; n <= to; n++) {
    const next = path.join(parent, 'd'.repeat(n));
    fs.renameSync(at, next);
    at = next;
    const row = { length: at.length };
    // Rotated order, so that drift in the machine's speed is spread over the contenders.
    for (let i = 0; i < CONTENDERS.length; i++) {
      const name = CONTENDERS[(i + n) % CONTENDERS.length];
      let best = Infinity;
      for (let r = 0; r < reps; r++) best = Math.min(best, hitNs(at, name));
      row[name] = best;
    }
    rows.push(row);
    process.stderr.write(`${at.length} `);
  }
} finally {
  fs.renameSync(at, path.resolve(dir));
}
process.stderr.write('\n');

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const r1 = (x) => Math.round(x * 10) / 10;
const r2 = (x) => x.toFixed(2);
const ratios = rows.map((row) => row[COOP] / row[ANCHOR]);
const slower = rows.filter((row) => row[COOP] > row[ANCHOR]).map((row) => row.length);
const summary = [
  `## The hit row in ${rows.length} layouts (path lengths ${rows[0].length}-${rows.at(-1).length}, best of ${reps} children each)`,
  '',
  '| contender | median ns | min | max |',
  '| --- | ---: | ---: | ---: |',
  ...CONTENDERS.map((c) => {
    const xs = rows.map((row) => row[c]);
    return `| ${c} | ${r1(median(xs))} | ${r1(Math.min(...xs))} | ${r1(Math.max(...xs))} |`;
  }),
  '',
  `${COOP} / ${ANCHOR}, per layout: median ${r2(median(ratios))}x, range ${r2(Math.min(...ratios))}-${r2(Math.max(...ratios))}x; ` +
    `slower than the anchor in ${slower.length} of ${rows.length} layouts` +
    (slower.length ? ` (path lengths ${slower.join(', ')})` : ''),
];
const lines = [
  ...summary,
  '',
  `| path length | ${CONTENDERS.join(' | ')} | ratio |`,
  `| ---: | ${CONTENDERS.map(() => '---:').join(' | ')} | ---: |`,
  ...rows.map((row, i) => `| ${row.length} | ${CONTENDERS.map((c) => r1(row[c])).join(' | ')} | ${r2(ratios[i])} |`),
  '',
  `node ${process.version}`,
];
fs.writeFileSync(`${out}.md`, lines.join('\n') + '\n');
fs.writeFileSync(`${out}.json`, JSON.stringify({ node: process.version, reps, rows }, null, 1) + '\n');
console.log(summary.join('\n'));
