// Shared helpers for the node --test suites.
import { fork } from 'node:child_process';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

let n = 0;
/** A cache name unique to this test file and call. */
export function uniq(prefix = 't') {
  n += 1;
  return `${prefix}-${process.pid}-${n}`;
}

/** Polls `cond` until it is true or `ms` pass (behaviour, not timing: the bound is generous). */
export async function until(cond, ms = 10000, every = 20) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await sleep(every);
  }
}

export { sleep };

/** A child process running shared_child.mjs, driven over IPC: `call(op, args)` resolves with its
 * reply, `close()` lets it exit. It is in `children` until closed, so a file's `after` can close
 * those a failing test left. */
export function ipcChild(children) {
  const proc = fork(path.join(HERE, 'shared_child.mjs'), [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const replies = new Map();
  let next = 0;
  proc.on('message', (m) => {
    const r = replies.get(m.id);
    replies.delete(m.id);
    if (m.ok) r.resolve(m.result);
    else r.reject(Object.assign(new Error(m.error.message), m.error));
  });
  const exited = new Promise((r) => proc.once('exit', r));
  const c = {
    call(op, args = {}) {
      const id = ++next;
      return new Promise((resolve, reject) => {
        replies.set(id, { resolve, reject });
        proc.send({ id, op, ...args });
      });
    },
    async close() {
      children.delete(c);
      if (proc.connected) proc.disconnect();
      // It exits on its own once disconnected; the kill only stops a broken test.
      const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
      await exited;
      clearTimeout(t);
    },
  };
  children.add(c);
  return c;
}
