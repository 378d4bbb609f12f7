// A web handler that memoizes its database query: a burst of concurrent requests for one cold
// URL runs the query once.
//
// A node:http server answers GET /users/<id> from a (simulated, slow) database, with the query
// wrapped in coopcache. The script starts the server on a free port, fires 50 concurrent
// requests at /users/42, shows that the database was queried once, and exits.
// Run from the repository root after `npm install && npm run build`: node examples/node/web_handler.mjs
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { configure, cached, stats } from 'coopcache';

// Idle entries go after 5 minutes; at most 10 MiB of cached rows.
configure('users', { memoryLimit: 10 * 1024 * 1024, cacheDuration: 300 });

// Stands in for a database client: a table and a slow query.
const table = new Map([[42, { id: 42, name: 'Ada', plan: 'pro' }], [7, { id: 7, name: 'Grace', plan: 'free' }]]);
let queries = 0;
async function loadUser(id) {
  queries += 1;
  await sleep(200); // SELECT id, name, plan FROM users WHERE id = ?
  return table.get(id) ?? null;
}

const server = http.createServer(async (req, res) => {
  const match = /^\/users\/(\d+)$/.exec(req.url);
  if (!match) return res.writeHead(404).end('not found\n');
  const id = Number(match[1]);
  // One query per user id, however many requests ask for it at once; the others wait for it.
  let user;
  try {
    user = await cached('users', ['user', id], () => loadUser(id));
  } catch (e) {
    return res.writeHead(500).end(`${e.message}\n`); // the query failed (for every waiter; not cached)
  }
  if (!user) return res.writeHead(404).end('no such user\n');
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(user));
});
server.listen(0, '127.0.0.1'); // port 0: a free port
await new Promise((resolve) => server.once('listening', resolve));
const url = `http://127.0.0.1:${server.address().port}/users/42`;

const start = performance.now();
const bodies = await Promise.all(Array.from({ length: 50 }, async () => (await fetch(url)).text()));
const ms = performance.now() - start;
server.close();
server.closeAllConnections(); // fetch keeps connections alive; let the process exit now

const same = bodies.every((b) => b === bodies[0]);
console.log(`web handler: 50 concurrent requests for GET /users/42 in ${ms.toFixed(0)} ms: ` +
  `the database was queried ${queries} time${queries === 1 ? '' : 's'}; every response was ${bodies[0]}: ${same}`);
const s = stats('users');
console.log(`  stats: misses=${s.misses} coalesced=${s.coalesced} hits=${s.hits} entries=${s.entries}`);
if (queries !== 1 || !same) process.exitCode = 1;
