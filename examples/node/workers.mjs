// worker_threads sharing one cache without Redis: `shared: 'process'`.
// Four workers each get 250 concurrent requests for the same cold report; it is built once for
// the whole process, and every worker gets its own copy (through the v8 serializer).
// Run from the repository root after `npm install && npm run build`: node examples/node/workers.mjs
import { Worker, isMainThread, parentPort, threadId } from 'node:worker_threads';
import { configure, cached, stats } from 'coopcache';

const WORKERS = 4;
const CALLS = 250;

// Every thread that uses the cache configures it with the same name and `shared: 'process'`.
configure('reports', { cacheDuration: 60, shared: 'process' });

async function buildReport(month) {
  await new Promise((resolve) => setTimeout(resolve, 200)); // a slow query
  return { month, total: 1234, builtBy: `thread ${threadId}` };
}

if (isMainThread) {
  const workers = Array.from({ length: WORKERS }, () => new Worker(new URL(import.meta.url)));
  const replies = await Promise.all(
    workers.map((w) => new Promise((resolve) => w.once('message', resolve))),
  );
  const built = replies.reduce((n, r) => n + r.built, 0);
  for (const r of replies) console.log(`thread ${r.thread}: ${r.calls} calls, got a report built by ${r.builtBy}`);
  console.log(`${WORKERS} workers x ${CALLS} calls: the report was built ${built} time${built === 1 ? '' : 's'}`);
  // The main thread reads it too, without building it.
  const report = await cached('reports', ['report', '2026-11'], () => buildReport('2026-11'));
  console.log(`main thread: built by ${report.builtBy}; stats:`, stats('reports'));
  await Promise.all(workers.map((w) => w.terminate()));
  if (built !== 1) process.exitCode = 1;
} else {
  let built = 0;
  const reports = await Promise.all(
    Array.from({ length: CALLS }, () =>
      cached('reports', ['report', '2026-11'], () => {
        built += 1;
        return buildReport('2026-11');
      }),
    ),
  );
  parentPort.postMessage({ thread: threadId, calls: reports.length, built, builtBy: reports[0].builtBy });
}
