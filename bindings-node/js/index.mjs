// ES module entry: the same instance as `require('coopcache')`.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const m = require('./index.js');

export const { configure, cached, cachedMany, nocache, get, invalidate, invalidateTag, clear, stats } = m;
export const { names, cache, events, Cache, version, _keyBytes } = m;
export default m;
