// Packs the npm packages as they are published, napi-rs's layout: one package per platform
// (bindings-node/npm/<platform>/package.json, with `os`, `cpu` and `libc`, plus that platform's
// addon from bindings-node/native/), and the main package, whose manifest gets every platform
// package as an optional dependency of the same version (npm installs only the one that fits).
// The repository's package.json does not list them, so a checkout's `npm install` never fetches a
// published addon that would shadow the contributor's own build.
//
// Usage: node bindings-node/pack.mjs OUT_DIR [--all]
// Packs a platform package for each addon that is built; --all (the release) requires all of them.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const [outArg, ...flags] = process.argv.slice(2);
if (!outArg) {
  console.error('usage: node bindings-node/pack.mjs OUT_DIR [--all]');
  process.exit(2);
}
const out = path.resolve(outArg);
fs.mkdirSync(out, { recursive: true });

const main = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const platforms = fs.readdirSync(path.join(here, 'npm')).sort();
const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'coopcache-pack-'));

function pack(dir) {
  const r = spawnSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', out], {
    cwd: dir,
    encoding: 'utf8',
    shell: process.platform === 'win32',
  });
  if (r.status !== 0) {
    console.error(r.stderr);
    process.exit(1);
  }
  const file = JSON.parse(r.stdout)[0].filename;
  console.log(`bindings-node/pack.mjs: ${path.join(path.relative(root, out) || '.', file)}`);
}

const licenses = ['LICENSE-MIT', 'LICENSE-APACHE'];
const packed = [];
for (const platform of platforms) {
  const manifest = JSON.parse(fs.readFileSync(path.join(here, 'npm', platform, 'package.json'), 'utf8'));
  if (manifest.version !== main.version) {
    console.error(`bindings-node/npm/${platform}: version ${manifest.version}, package.json's ${main.version}`);
    process.exit(1);
  }
  const addon = path.join(here, 'native', manifest.main);
  if (!fs.existsSync(addon)) {
    if (flags.includes('--all')) {
      console.error(`bindings-node/pack.mjs: --all, and ${path.relative(root, addon)} is not built`);
      process.exit(1);
    }
    continue;
  }
  const dir = path.join(stage, platform);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  fs.copyFileSync(addon, path.join(dir, manifest.main));
  for (const f of licenses) fs.copyFileSync(path.join(root, f), path.join(dir, f));
  fs.writeFileSync(
    path.join(dir, 'README.md'),
    `# ${manifest.name}\n\nThe prebuilt native addon of the \`coopcache\` package ` +
      `for ${platform}. Install \`coopcache\`, which depends on it where it fits.\n`,
  );
  pack(dir);
  packed.push(platform);
}
if (packed.length === 0) {
  console.error('bindings-node/pack.mjs: no addon is built in bindings-node/native/ (`npm run build`)');
  process.exit(1);
}

// The main package: package.json's `files` (the JS, the licenses) and the README; no scripts or
// devDependencies, which a user's install has no use for.
const dir = path.join(stage, 'coopcache');
fs.mkdirSync(dir);
const { scripts, devDependencies, ...published } = main;
published.optionalDependencies = Object.fromEntries(platforms.map((p) => [`coopcache-${p}`, main.version]));
fs.writeFileSync(path.join(dir, 'package.json'), `${JSON.stringify(published, null, 2)}\n`);
for (const f of [...main.files, 'README.md']) fs.cpSync(path.join(root, f), path.join(dir, f), { recursive: true });
pack(dir);
fs.rmSync(stage, { recursive: true, force: true });
