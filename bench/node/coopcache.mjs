// coopcache as contenders of the anchor harness (../shared/bench/node/anchors.mjs), from its
// template contenders/coopcache.example.mjs. bench/node/run.sh links the package into the
// harness's node_modules, so `import 'coopcache'` loads this repository's build.
// Two contenders: a cache per thread (the default), and `shared: 'process'`, one cache for every
// worker thread of the process (what the `workers` scenario measures).
import { configure, cached } from 'coopcache';

const version = '0.1.0';
const features = { sizeLimit: 'bytes', expiry: 'idle (last read or write)' };

function contender(name, config, extra) {
  return {
    name,
    version,
    config,
    features,
    factory(fn, ctx) {
      const ns = ctx?.name ?? 'bench';
      configure(ns, { memoryLimit: 4 * 1024 ** 3, cacheDuration: 3600, ...extra });
      return (key) => cached(ns, key, () => fn(key));
    },
  };
}

export const contenders = [
  contender('coopcache', 'cached(name, key, fn); memoryLimit 4 GiB, cacheDuration 3600 s (idle), size from the built-in estimate', {}),
  contender(
    "coopcache shared: 'process'",
    "the same with shared: 'process' (one cache for the worker threads; values cross threads v8-serialized)",
    { shared: 'process' },
  ),
];
