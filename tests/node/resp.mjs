// A minimal Redis client for the tests (one command per connection, RESP2 replies), so the
// tests and the shared worker need no npm dependency.
import net from 'node:net';

/** Sends one command to `url` (redis://host:port) and resolves with its reply. */
export function command(url, ...args) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port || 6379), u.hostname || '127.0.0.1');
    let buf = Buffer.alloc(0);
    sock.setTimeout(10000, () => sock.destroy(new Error('redis: timed out')));
    sock.on('error', reject);
    sock.on('connect', () => {
      const parts = [`*${args.length}\r\n`];
      for (const a of args) {
        const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
        parts.push(`$${b.length}\r\n`, b, '\r\n');
      }
      sock.write(Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p)))));
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const r = parse(buf, 0);
      if (r === undefined) return;
      sock.end();
      if (r.value instanceof Error) reject(r.value);
      else resolve(r.value);
    });
  });
}

// One reply at `i`, or undefined if it is not complete yet. Bulk strings are Buffers.
function parse(b, i) {
  const eol = b.indexOf('\r\n', i);
  if (eol < 0) return undefined;
  const line = b.toString('utf8', i + 1, eol);
  const next = eol + 2;
  switch (String.fromCharCode(b[i])) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new Error(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      if (b.length < next + n + 2) return undefined;
      return { value: b.subarray(next, next + n), end: next + n + 2 };
    }
    case '*': {
      const n = Number(line);
      if (n < 0) return { value: null, end: next };
      const out = [];
      let at = next;
      for (let k = 0; k < n; k++) {
        const r = parse(b, at);
        if (r === undefined) return undefined;
        out.push(r.value);
        at = r.end;
      }
      return { value: out, end: at };
    }
    default:
      return { value: new Error(`redis: unexpected reply ${line}`), end: next };
  }
}
