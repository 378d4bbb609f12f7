'use strict';
// Finds the native addon. A user's `npm install coopcache` brings one prebuilt addon as an
// optional dependency: the package for this platform (`coopcache-linux-x64-gnu`, ...; npm installs
// only the one whose `os`, `cpu` and `libc` fit). That package is looked for first. A checkout of
// the repository has none; there a contributor's build (`npm run build`, into bindings-node/native/,
// which is never packed) is loaded. When neither is there, the error says what this platform is,
// which ones are prebuilt and what to do, rather than a bare MODULE_NOT_FOUND.

const path = require('node:path');
const fs = require('node:fs');

/** The platforms a prebuilt addon is published for (package.json's napi.targets, by napi-rs name). */
const PREBUILT = [
  'linux-x64-gnu',
  'linux-x64-musl',
  'linux-arm64-gnu',
  'linux-arm64-musl',
  'darwin-x64',
  'darwin-arm64',
  'win32-x64-msvc',
];

/** Whether this Linux process runs on musl (Alpine) rather than glibc: ldd says so (a file read),
 * else the process report's header (which costs some 6-15 ms of module load: only without ldd). */
function isMusl() {
  try {
    return fs.readFileSync('/usr/bin/ldd', 'utf8').includes('musl');
  } catch {
    // no ldd (a distroless image): ask the process report below
  }
  try {
    const report = process.report?.getReport?.();
    const header = typeof report === 'string' ? JSON.parse(report).header : report?.header;
    return header !== undefined && !header.glibcVersionRuntime;
  } catch {
    return false; // a runtime without process.report (some Deno and Bun versions)
  }
}

/** This process's platform in napi-rs's names: `linux-x64-gnu`, `darwin-arm64`, `win32-x64-msvc`. */
function platformName() {
  const base = `${process.platform}-${process.arch}`;
  if (process.platform === 'linux') return `${base}-${isMusl() ? 'musl' : 'gnu'}`;
  if (process.platform === 'win32') return `${base}-msvc`;
  return base;
}

/** Whether `err` says that `request` itself was not found (not a file it needs). */
function notFound(err, request) {
  return err?.code === 'MODULE_NOT_FOUND' && String(err.message).includes(`'${request}'`);
}

/** No addon this process can load: an Error with the stable code ERR_COOPCACHE_NOT_BUILT. */
function notBuilt(message) {
  return Object.assign(new Error(`coopcache: ${message}`), { code: 'ERR_COOPCACHE_NOT_BUILT' });
}

function load() {
  const platform = platformName();
  const pkg = `coopcache-${platform}`;
  try {
    return require(pkg);
  } catch (err) {
    // Installed but unloadable (another Node ABI, a damaged file): say so, not "not found".
    if (!notFound(err, pkg)) throw notBuilt(`${pkg} is installed but its addon did not load: ${err.message}`);
  }
  const local = path.join(__dirname, '..', 'native', `coopcache.${platform}.node`);
  if (fs.existsSync(local)) return require(local);
  const { version } = require('../../package.json');
  const build = 'or build it in a checkout of the repository with Rust installed (`npm install && npm run build`)';
  if (!PREBUILT.includes(platform)) {
    throw notBuilt(`no prebuilt addon for ${platform} (prebuilt: ${PREBUILT.join(', ')}); ${build.slice(3)}`);
  }
  throw notBuilt(
    `the prebuilt addon for ${platform}, the optional dependency ${pkg}, is not installed ` +
      '(npm skips it with --omit=optional, or with a lockfile made on another platform): ' +
      `run \`npm install ${pkg}@${version}\`, ${build}`,
  );
}

module.exports = { load, platformName, PREBUILT };
