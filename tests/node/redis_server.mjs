// Test Redis servers for the node --test suites (tests/redis_server.py is the Python side's):
// the one command line every test server starts from, and a Redis Cluster of six.
import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { until } from './helpers.mjs';

const run = promisify(execFile);

/** A free loopback port (bound and released: the server takes it next). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** redis-server's arguments for a test server on `port`: loopback only, nothing written to disk
 * (no RDB snapshots, no AOF), so a test's server is its own and leaves nothing behind; then `extra`. */
export function serverArgs(port, ...extra) {
  return ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extra];
}

async function cli(port, ...args) {
  const { stdout } = await run('redis-cli', ['-p', String(port), ...args], { timeout: 30000 });
  return stdout.trim();
}

/** A Redis Cluster of six nodes on free loopback ports (three masters, a replica each) in a
 * temporary directory, joined by `redis-cli --cluster create`, once every node sees it ok:
 * `{ url, stop() }` with its `redis+cluster://` URL (every node a seed). `stop()` kills every
 * node and removes the directory; a failed start stops what it started. */
export async function startCluster() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coopcache-cluster-'));
  const procs = [];
  const stop = async () => {
    await Promise.all(
      procs.map((p) => {
        if (p.exitCode !== null || p.signalCode !== null) return null;
        const gone = new Promise((r) => p.once('exit', r));
        p.kill('SIGKILL');
        return gone;
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const ports = [];
    while (ports.length < 6) {
      // Six different ones (a port released can be handed out again), each with its cluster bus
      // port (10000 higher) a port too.
      const port = await freePort();
      if (!ports.includes(port) && port + 10000 <= 65535) ports.push(port);
    }
    for (const port of ports) {
      // A file of its own for each node's RDB: a replica's full sync goes through it, so with one
      // shared name replicas syncing at once could load another master's data.
      const args = serverArgs(port, '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
        '--dbfilename', `dump-${port}.rdb`);
      procs.push(spawn('redis-server', args, { cwd: dir, stdio: 'ignore' }));
    }
    const answers = (p) => cli(p, 'PING').then((o) => o === 'PONG', () => false);
    if (!(await until(async () => (await Promise.all(ports.map(answers))).every(Boolean), 20000))) {
      throw new Error('the cluster nodes did not start');
    }
    await cli(ports[0], '--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '1', '--cluster-yes');
    const ok = (p) => cli(p, 'CLUSTER', 'INFO').then((o) => o.includes('cluster_state:ok'), () => false);
    if (!(await until(async () => (await Promise.all(ports.map(ok))).every(Boolean), 30000))) {
      throw new Error('the cluster did not become ok');
    }
    return { url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(',')}`, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}
