"""gunicorn's configuration for the web: the one place the shipped layout is set.

    gunicorn --config python:service.gunicorn_conf service.wsgi:app

The Dockerfile runs exactly this, and bench/env.py starts the benchmarked gunicorn with the same file (its
command-line flags, e.g. `-b 127.0.0.1:PORT`, override single settings), so what is measured is what ships.

Why gevent: a sync worker (the old layout: 2 sync workers) is held for the whole request by one client, so
two clients dribbling a body one byte a second stopped every Slack acknowledgement; a gthread worker is held
one thread per client (2 x 4 threads: 8 slow clients left 1 acknowledgement in 5). A gevent worker spends
one greenlet per connection, so slow clients wait on their sockets while the others are answered.
tests/ops/test_slow_clients.py shows both on real gunicorn processes.

The bounds a slow or hostile client meets here:
* `worker_connections`: at most this many connections per worker at once (slow ones included); past it,
  new connections wait in the listen backlog.
* `keepalive`: gunicorn reads each request line and headers under a timeout of this many seconds (the
  gevent worker's keep-alive timeout covers the headers of every request, the first included), so a client
  dribbling headers is cut off after it.
* `REQUEST_DEADLINE_S` (the hooks below): a request, its body included, must be served within this many
  seconds, or its connection is closed. Slack gives up after 3 s anyway.
* `limit_request_*`: the request line and headers are bounded before the app sees them; bodies are capped
  at 1 MiB by the app itself (service/api/limits.py).
The TLS proxy in front (docker-compose.yml) is the first line against floods; this is the second.
"""

from __future__ import annotations

import os
from typing import Any

# Inside the container; compose publishes it on the host's loopback only.
bind = "0.0.0.0:8000"
workers = 2
worker_class = "gevent"
worker_connections = 500
# The gevent worker's heartbeat: a worker whose event loop is blocked this long is killed and replaced.
timeout = 30
graceful_timeout = 30
keepalive = 5
limit_request_line = 4094
limit_request_fields = 60
limit_request_field_size = 8190
backlog = 2048
# No gunicornc control socket: nothing uses it, and two gunicorns on one host would share its path.
control_socket_disable = True
# gunicorn's heartbeat files on tmpfs, not on the container's overlay disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - tmpfs, gunicorn's own files

REQUEST_DEADLINE_S = 10.0


def _is_gevent(worker: Any) -> bool:
    return type(worker).__module__.endswith("ggevent")


def pre_request(worker: Any, req: Any) -> None:
    """Arm the request's deadline (gevent workers only: the other classes cannot interrupt a read)."""
    if _is_gevent(worker):
        import gevent  # type: ignore[import-untyped]

        deadline = gevent.Timeout(REQUEST_DEADLINE_S)
        deadline.start()
        req.keyturn_deadline = deadline


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    deadline = getattr(req, "keyturn_deadline", None)
    if deadline is not None:
        deadline.close()
