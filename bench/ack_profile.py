"""Where one Slack acknowledgement's CPU goes without an HTTP server: the WSGI app called in-process.

`python -m bench.ack_profile [--requests 5000] [--kind list|file] [--profile]` builds the web app as
gunicorn does (create_app, Bolt, the REST API), with the fake Slack Web API on loopback, SQLite, and the
local Redis (db 13, emptied), and calls it with signed `/access` commands on one thread. It prints the CPU
per request; with --profile, the top functions by own time under cProfile (which inflates small calls).
Compare with the web's CPU per acknowledgement under gunicorn in the ack benchmark: the difference is
gunicorn's HTTP handling and its threads (bench/RESULTS.md, benchmark 1).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from service.app import create_app
from service.settings import Settings
from tests.support.slack_fake import FakeSlack
from tests.support.slack_signing import sign, slash_command_body

SECRET = "bench-ack-profile-secret-7c2e9f4a1d8b"  # 32+ characters
REDIS_URL = "redis://127.0.0.1:6379/13"
CATALOG = Path(__file__).resolve().parent.parent / "config" / "catalog.example.yaml"


def caller(app: Any, body: str) -> Callable[[], bytes]:
    """One signed POST /slack/events through the WSGI interface, as gunicorn makes it."""
    raw = body.encode()

    def call() -> bytes:
        stamp = str(int(time.time()))
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/slack/events", "SERVER_NAME": "bench", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(raw),
            "wsgi.errors": sys.stderr, "CONTENT_LENGTH": str(len(raw)),
            "CONTENT_TYPE": "application/x-www-form-urlencoded", "HTTP_X_SLACK_REQUEST_TIMESTAMP": stamp,
            "HTTP_X_SLACK_SIGNATURE": sign(SECRET, stamp, body),
        }
        status: list[str] = []
        chunks = app(environ, lambda s, _h, _e=None: status.append(s))
        out = b"".join(chunks)
        if not status or not status[0].startswith("200"):
            raise RuntimeError(f"the app answered {status}: {out[:200]!r}")
        return out

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--kind", choices=("list", "file"), default="list")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    slack = FakeSlack().start()
    settings = Settings(database_url=f"sqlite:///{tempfile.mkdtemp()}/ack-profile.sqlite", redis_url=REDIS_URL,
                        catalog_path=CATALOG, slack_bot_token="xoxb-test", slack_signing_secret=SECRET,
                        task_signing_key="bench-ack-profile-task-key-5e8a0c3f9b71",
                        slack_api_url=slack.base_url, log_level="INFO")
    app = create_app(settings)
    queue = redis.Redis.from_url(REDIS_URL)
    queue.flushdb()
    text = "list" if args.kind == "list" else "prod-readonly 1h bench"
    call = caller(app, slash_command_body(text=text, user_id="U0ALICE01", channel_id="C0BENCH01",
                                          response_url=f"{slack.root_url}/response/bench"))
    try:
        for _ in range(200):  # warm: the first requests build Bolt's and SQLAlchemy's caches
            call()
        started = time.process_time()
        for _ in range(args.requests):
            call()
        cpu = time.process_time() - started
        print(f"{args.requests} `/access {text}` acknowledgements in-process: "
              f"{cpu / args.requests * 1000:.3f} ms CPU each")
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(args.requests):
                call()
            profile.disable()
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
            print(out.getvalue())
    finally:
        queue.flushdb()
        slack.stop()


if __name__ == "__main__":
    main()
