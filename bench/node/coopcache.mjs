// coopcache as a contender of the anchor harness (../shared/bench/node/anchors.mjs), from its
// template contenders/coopcache.example.mjs. bench/node/run.sh links the package into the
// harness's node_modules, so `import 'coopcache'` loads this repository's build.
import { configure, cached } from 'coopcache';

export const name = 'coopcache';
export const version = '0.1.0';
export const config =
  'cached(name, key, fn); memoryLimit 4 GiB, cacheDuration 3600 s (idle), size from the built-in estimate';
export const features = { sizeLimit: 'bytes', expiry: 'idle (last read or write)' };

export function factory(fn, ctx) {
  const ns = ctx?.name ?? 'bench';
  configure(ns, { memoryLimit: 4 * 1024 ** 3, cacheDuration: 3600 });
  return (key) => cached(ns, key, () => fn(key));
}
