"""A web handler that memoizes its database query: a burst of concurrent requests for one cold
URL runs the query once.

A plain WSGI app (what Flask, Django and friends build on) serves GET /users/<id> from a sqlite3
database, with the query wrapped in coopcache. The script starts the server on a free port in a
background thread, fires 50 concurrent requests at /users/42, shows that the database was
queried once, and exits.

Run: python examples/python/web_handler.py"""

import json
import sqlite3
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from socketserver import ThreadingMixIn
from typing import Any, Callable, Dict, Iterable, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import coopcache

DB = "file:app?mode=memory&cache=shared"  # an in-memory database, alive while a connection is open
queries = 0  # how many times the database was asked

# Idle entries go after 5 minutes; at most 10 MiB of cached rows.
coopcache.configure("users", memory_limit=10 * 1024 * 1024, cache_duration=300)


def create_db() -> sqlite3.Connection:
    db = sqlite3.connect(DB, uri=True)
    db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, plan TEXT)")
    db.executemany("INSERT INTO users VALUES (?, ?, ?)", [(42, "Ada", "pro"), (7, "Grace", "free")])
    db.commit()
    return db


def load_user(user_id: int) -> Optional[Dict[str, Any]]:
    """The expensive part: a database query (made slow here, as a real one under load is)."""
    global queries
    queries += 1
    db = sqlite3.connect(DB, uri=True)  # one connection per call: handlers run in many threads
    try:
        time.sleep(0.2)
        row = db.execute("SELECT id, name, plan FROM users WHERE id = ?", (user_id,)).fetchone()
    finally:
        db.close()
    return None if row is None else {"id": row[0], "name": row[1], "plan": row[2]}


def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The WSGI app: GET /users/<id>."""
    parts = environ["PATH_INFO"].strip("/").split("/")
    if len(parts) != 2 or parts[0] != "users" or not parts[1].isdigit():
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    user_id = int(parts[1])
    # One query per user id, however many requests ask for it at once; the others wait for it.
    user = coopcache.cached("users", ("user", user_id), lambda: load_user(user_id))
    if user is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such user\n"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(user).encode()]


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a thread per request (a production server has many workers too)
    request_queue_size = 128  # room for the burst of connections


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # no access log on stderr
        pass


def main() -> int:
    db = create_db()
    server = make_server("127.0.0.1", 0, app, ThreadingWSGIServer, QuietHandler)  # port 0: a free port
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/users/42"

    def get(_: int) -> bytes:
        with urllib.request.urlopen(url, timeout=30) as r:
            body: bytes = r.read()
            return body

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=50) as pool:  # 50 requests at the same moment
        bodies = list(pool.map(get, range(50)))
    wall_ms = (time.perf_counter() - start) * 1000
    server.shutdown()
    db.close()

    same = all(b == bodies[0] for b in bodies)
    print(
        f"web handler: 50 concurrent requests for GET /users/42 in {wall_ms:.0f} ms: "
        f"the database was queried {queries} time{'' if queries == 1 else 's'}; "
        f"every response was {bodies[0].decode()}: {str(same).lower()}"
    )
    stats = coopcache.stats("users")
    print(
        f"  stats: misses={stats['misses']} coalesced={stats['coalesced']} hits={stats['hits']} "
        f"entries={stats['entries']}"
    )
    return 0 if queries == 1 and same else 1


if __name__ == "__main__":
    sys.exit(main())
