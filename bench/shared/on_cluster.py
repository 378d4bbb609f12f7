"""Keeps a Redis Cluster of six nodes on loopback (three masters, a replica each: the tests'
cluster, tests/redis_server.py) running for bench/shared/run.sh and fanout.sh (see cluster.sh).

    python bench/shared/on_cluster.py URL_FILE

Writes the cluster's redis+cluster:// URL to URL_FILE once every slot is served, then waits
until it is terminated (SIGTERM or SIGINT); every node is stopped on the way out.
"""

from __future__ import annotations

import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests"))

import redis_server  # noqa: E402


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with redis_server.cluster() as url:
        tmp = sys.argv[1] + ".tmp"
        with open(tmp, "w") as f:
            f.write(url)
        os.replace(tmp, sys.argv[1])
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
