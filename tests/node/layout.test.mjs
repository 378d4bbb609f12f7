// The npm package's layout: hand-written JS and types in bindings-node/js/, generated files
// (the addon, the napi CLI's native.d.ts) in bindings-node/native/, nothing of ours at the root
// but what npm needs there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import fs from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const JS = 'bindings-node/js';

test("package.json's entry points are the hand-written files in bindings-node/js/", () => {
  const entries = [pkg.main, pkg.types, ...Object.values(pkg.exports['.'])];
  assert.deepEqual(Object.keys(pkg.exports['.']), ['types', 'import', 'require'], 'types first, as TypeScript wants');
  for (const e of entries) {
    assert.equal(path.posix.dirname(path.posix.normalize(e)), JS, e);
    assert.ok(fs.existsSync(path.join(ROOT, e)), `${e} does not exist`);
  }
  assert.equal(path.posix.normalize(pkg.exports['.'].require), path.posix.normalize(pkg.main));
  assert.equal(path.posix.normalize(pkg.exports['.'].types), path.posix.normalize(pkg.types));
  const require = createRequire(import.meta.url);
  assert.equal(require.resolve('coopcache'), path.join(ROOT, JS, 'index.js'));
  assert.equal(require.resolve(ROOT), path.join(ROOT, JS, 'index.js'), 'a path require uses main');
});

test('the root holds no JS or types of ours, bindings-node/js/ no generated files', () => {
  const scripts = /\.(c|m)?(j|t)s$/;
  const atRoot = fs.readdirSync(ROOT).filter((f) => scripts.test(f));
  assert.deepEqual(atRoot, []);
  assert.deepEqual(fs.readdirSync(path.join(ROOT, JS)).sort(), ['index.d.ts', 'index.js', 'index.mjs']);
  // The loaded addon comes from bindings-node/native/.
  const require = createRequire(import.meta.url);
  require('coopcache');
  const addons = Object.keys(require.cache).filter((f) => f.endsWith('.node'));
  assert.ok(addons.length > 0, 'the addon is loaded');
  for (const f of addons) assert.equal(path.dirname(f), path.join(ROOT, 'bindings-node', 'native'));
});

test('npm pack takes the entry points, the addon and the build inputs, nothing else', () => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60000,
    shell: process.platform === 'win32',
  });
  assert.equal(r.status, 0, r.stderr);
  const files = JSON.parse(r.stdout)[0].files.map((f) => f.path).sort();
  for (const want of [
    'package.json',
    `${JS}/index.js`,
    `${JS}/index.mjs`,
    `${JS}/index.d.ts`,
    'bindings-node/build.mjs',
    'bindings-node/Cargo.toml',
    'bindings-node/src/lib.rs',
  ]) {
    assert.ok(files.includes(want), `${want} is not packed: ${files.join(', ')}`);
  }
  assert.ok(files.some((f) => /^bindings-node\/native\/coopcache\.[^/]+\.node$/.test(f)), 'the addon is packed');
  for (const f of files) {
    assert.ok(
      f === 'package.json' || /^(README|LICENSE|CHANGELOG)/i.test(f) || f.startsWith('bindings-node/'),
      `${f} should not be packed`,
    );
    assert.ok(!f.endsWith('native.d.ts'), 'the generated types are not packed');
  }
});
