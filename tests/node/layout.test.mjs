// The npm package's layout. In a checkout: hand-written JS and types in bindings-node/js/, a
// contributor's build (the addon, the napi CLI's native.d.ts) in bindings-node/native/, nothing of
// ours at the root but what npm needs there, and a tarball with neither the addon nor anything that
// builds. Installed from the packed tarballs (`make test-dist`): the addon comes from the platform
// package, and the main package lists every platform package as an optional dependency.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';

const require = createRequire(import.meta.url);
const ENTRY = require.resolve('coopcache');
const JS = 'bindings-node/js';
const PKG_ROOT = path.resolve(path.dirname(ENTRY), '..', '..');
const INSTALLED = ENTRY.split(path.sep).includes('node_modules');
const pkg = JSON.parse(fs.readFileSync(path.join(PKG_ROOT, 'package.json'), 'utf8'));
const { platformName, PREBUILT } = require(path.join(PKG_ROOT, JS, 'load.js'));
const PLATFORMS = fs.existsSync(path.join(PKG_ROOT, 'bindings-node', 'npm'))
  ? fs.readdirSync(path.join(PKG_ROOT, 'bindings-node', 'npm')).sort()
  : null;
const checkout = { skip: INSTALLED && 'installed from a tarball, not a checkout' };
const installed = { skip: !INSTALLED && 'a checkout, not installed from a tarball' };

/** The .node files this process has loaded. */
function loadedAddons() {
  require('coopcache');
  return Object.keys(require.cache).filter((f) => f.endsWith('.node'));
}

test("package.json's entry points are the hand-written files in bindings-node/js/", () => {
  const entries = [pkg.main, pkg.types, ...Object.values(pkg.exports['.'])];
  assert.deepEqual(Object.keys(pkg.exports['.']), ['types', 'import', 'require'], 'types first, as TypeScript wants');
  for (const e of entries) {
    assert.equal(path.posix.dirname(path.posix.normalize(e)), JS, e);
    assert.ok(fs.existsSync(path.join(PKG_ROOT, e)), `${e} does not exist`);
  }
  assert.equal(path.posix.normalize(pkg.exports['.'].require), path.posix.normalize(pkg.main));
  assert.equal(path.posix.normalize(pkg.exports['.'].types), path.posix.normalize(pkg.types));
  assert.equal(ENTRY, path.join(PKG_ROOT, JS, 'index.js'));
  assert.equal(require.resolve(PKG_ROOT), path.join(PKG_ROOT, JS, 'index.js'), 'a path require uses main');
});

test('no install script: npm never compiles on install', () => {
  for (const hook of ['preinstall', 'install', 'postinstall', 'prepare']) {
    assert.equal(pkg.scripts?.[hook], undefined, `scripts.${hook}`);
  }
});

test("the prebuilt platforms are the napi targets' and bindings-node/npm/'s", checkout, () => {
  assert.deepEqual([...PREBUILT].sort(), PLATFORMS);
  assert.equal(pkg.napi.targets.length, PLATFORMS.length);
  for (const platform of PLATFORMS) {
    const m = JSON.parse(fs.readFileSync(path.join(PKG_ROOT, 'bindings-node', 'npm', platform, 'package.json'), 'utf8'));
    assert.equal(m.name, `coopcache-${platform}`);
    assert.equal(m.version, pkg.version, `${m.name}: one version for all`);
    assert.equal(m.main, `coopcache.${platform}.node`);
    const [os, cpu, abi] = platform.split('-');
    assert.deepEqual([m.os, m.cpu], [[os], [cpu]], m.name);
    assert.deepEqual(m.libc, os === 'linux' ? [abi === 'musl' ? 'musl' : 'glibc'] : undefined, m.name);
  }
});

test('the root holds no JS or types of ours, bindings-node/js/ no generated files', checkout, () => {
  const scripts = /\.(c|m)?(j|t)s$/;
  const atRoot = fs.readdirSync(PKG_ROOT).filter((f) => scripts.test(f));
  assert.deepEqual(atRoot, []);
  assert.deepEqual(fs.readdirSync(path.join(PKG_ROOT, JS)).sort(), ['index.d.ts', 'index.js', 'index.mjs', 'load.js']);
  // With no platform package in a checkout, the contributor's build is loaded.
  const addons = loadedAddons();
  assert.ok(addons.length > 0, 'the addon is loaded');
  for (const f of addons) assert.equal(path.dirname(f), path.join(PKG_ROOT, 'bindings-node', 'native'));
});

test('npm pack of the checkout takes the entry points and the loader: no addon, nothing that builds', checkout, () => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: PKG_ROOT,
    encoding: 'utf8',
    timeout: 60000,
    shell: process.platform === 'win32',
  });
  assert.equal(r.status, 0, r.stderr);
  const files = JSON.parse(r.stdout)[0].files.map((f) => f.path).sort();
  for (const want of ['package.json', `${JS}/index.js`, `${JS}/index.mjs`, `${JS}/index.d.ts`, `${JS}/load.js`]) {
    assert.ok(files.includes(want), `${want} is not packed: ${files.join(', ')}`);
  }
  for (const f of files) {
    assert.ok(f === 'package.json' || /^(README|LICENSE)/i.test(f) || f.startsWith(`${JS}/`), `${f} should not be packed`);
  }
});

test('installed: the addon is the platform package, listed with all the others as optional', installed, () => {
  const platform = platformName();
  const addons = loadedAddons();
  assert.ok(addons.length > 0, 'the addon is loaded');
  for (const f of addons) {
    assert.equal(f, require.resolve(`coopcache-${platform}`), 'loaded from the platform package');
  }
  const optional = pkg.optionalDependencies ?? {};
  assert.deepEqual(Object.keys(optional).sort(), PREBUILT.map((p) => `coopcache-${p}`).sort());
  for (const [name, version] of Object.entries(optional)) assert.equal(version, pkg.version, name);
  const platformPkg = require(`coopcache-${platform}/package.json`);
  assert.equal(platformPkg.version, pkg.version);
  assert.ok(!fs.existsSync(path.join(PKG_ROOT, 'bindings-node', 'native')), 'no build folder is packed');
});

test('the error when no addon fits says what to do, in one line', () => {
  // A child process that pretends to be on a platform nothing is built for.
  const code = `Object.defineProperty(process, 'arch', { value: 'mips' }); require(${JSON.stringify(ENTRY)});`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 60000 });
  assert.notEqual(r.status, 0);
  const line = r.stderr.split('\n').find((l) => l.startsWith('Error: coopcache:'));
  assert.ok(line, r.stderr);
  assert.match(line, /no prebuilt addon for \w+-mips/);
  assert.match(line, /prebuilt: linux-x64-gnu, /);
  assert.match(line, /Rust/);
});
