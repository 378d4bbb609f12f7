// Builds the native addon from source into bindings-node/native/ (`npm run build` in a checkout;
// contributors only: users get a prebuilt addon, the platform package, and npm never runs this).
// That folder holds only generated files (gitignored, never packed); the hand-written JS and types
// are in bindings-node/js/. Plain JS that runs on Node 18. Where the napi-rs CLI can run (installed, and
// Node within its engines: ^20.17, ^22.13 or >= 23.5), the CLI builds. Elsewhere (Node 18) the
// fallback does the part of the CLI's work this package needs: `cargo build --release` of the
// crate, then a copy of the cdylib to the name js/index.js looks for, the CLI's
// `coopcache.<platform>-<arch>[-<abi>].node`. It does not write native/native.d.ts, the CLI's
// generated types: a reference that nothing imports (js/index.d.ts is hand-written).
import { spawnSync, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const out = path.join(here, 'native');

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit' });
  if (r.error) throw r.error;
  if (r.status !== 0) process.exit(r.status ?? 1);
}

// Without Rust the build cannot start: say so in one line, with what to install.
const cargo = spawnSync(process.env.CARGO || 'cargo', ['--version'], { stdio: 'ignore' });
if (cargo.error || cargo.status !== 0) {
  console.error(
    'bindings-node/build.mjs: building the addon from source needs Rust 1.85+ (cargo is not on the PATH): ' +
      'install it with rustup (https://rustup.rs); to use coopcache, `npm install coopcache` needs no Rust',
  );
  process.exit(1);
}

const [major, minor] = process.versions.node.split('.').map(Number);
const nodeFitsCli =
  (major === 20 && minor >= 17) ||
  (major === 22 && minor >= 13) ||
  (major === 23 && minor >= 5) ||
  major >= 24;
let cli = null;
try {
  const pkgJson = createRequire(import.meta.url).resolve('@napi-rs/cli/package.json');
  cli = path.join(path.dirname(pkgJson), JSON.parse(fs.readFileSync(pkgJson, 'utf8')).bin.napi);
} catch {
  // not installed (`npm install --omit=dev`): the fallback builds
}

if (nodeFitsCli && cli) {
  run(process.execPath, [
    cli, 'build', '--platform', '--release', '--no-js', '--dts', 'native.d.ts',
    '--manifest-path', 'bindings-node/Cargo.toml', '--output-dir', path.relative(root, out),
    // The release's cross builds add theirs (`npm run build -- --target T --cross-compile`).
    ...process.argv.slice(2),
  ]);
  process.exit(0);
}

// The fallback. These triples are package.json's napi.targets, with the CLI's names for them.
const NAMES = {
  'x86_64-unknown-linux-gnu': 'linux-x64-gnu',
  'x86_64-unknown-linux-musl': 'linux-x64-musl',
  'aarch64-unknown-linux-gnu': 'linux-arm64-gnu',
  'aarch64-unknown-linux-musl': 'linux-arm64-musl',
  'x86_64-apple-darwin': 'darwin-x64',
  'aarch64-apple-darwin': 'darwin-arm64',
  'x86_64-pc-windows-msvc': 'win32-x64-msvc',
};
const why = cli ? `Node ${process.version} is too old for @napi-rs/cli` : 'no @napi-rs/cli';
console.log(`bindings-node/build.mjs: ${why}; building with cargo`);
const rustc = execFileSync(process.env.RUSTC || 'rustc', ['-vV'], { encoding: 'utf8' });
const triple = process.env.CARGO_BUILD_TARGET || rustc.match(/^host: (\S+)/m)[1];
if (!NAMES[triple]) {
  console.error(`bindings-node/build.mjs: ${triple} is not one of package.json's napi.targets`);
  process.exit(1);
}
run('cargo', ['build', '--release', '-p', 'coopcache-node']);

// cargo metadata knows the target directory (CARGO_TARGET_DIR, .cargo/config.toml or ./target).
const meta = JSON.parse(
  execFileSync('cargo', ['metadata', '--no-deps', '--format-version', '1'], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  }),
);
const lib = triple.includes('windows')
  ? 'coopcache_node.dll'
  : triple.includes('apple')
    ? 'libcoopcache_node.dylib'
    : 'libcoopcache_node.so';
const subdir = process.env.CARGO_BUILD_TARGET ? triple : '';
const from = path.join(meta.target_directory, subdir, 'release', lib);
const to = path.join(out, `coopcache.${NAMES[triple]}.node`);
fs.mkdirSync(out, { recursive: true });
fs.rmSync(to, { force: true }); // a new file rather than rewriting one a process may have loaded
fs.copyFileSync(from, to);
console.log(`bindings-node/build.mjs: ${path.relative(root, to)} <- ${from}`);
