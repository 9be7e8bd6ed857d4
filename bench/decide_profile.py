"""Where one Approve decision's time goes, without HTTP: `decide_request` in-process on PostgreSQL.

`python -m bench.decide_profile [--decisions 300]` files N requests, then profiles N approvals with
cProfile and prints the wall time per decision, the SQL statements per decision and the top functions.
It uses a database of its own (`kt_decide_profile`, dropped and created on the local server).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event

from service.core.rules import Vote
from service.operations.decide_request import decide_request
from service.operations.request_access import request_access
from tests.api import ALICE, BOB, make_api

SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432"
DATABASE = "kt_decide_profile"


def fresh_database() -> str:
    admin = sa.create_engine(f"{SERVER}/test", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {DATABASE}"))
        conn.execute(sa.text(f"CREATE DATABASE {DATABASE}"))
    admin.dispose()
    return f"{SERVER}/{DATABASE}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=300)
    args = parser.parse_args()
    world = make_api(fresh_database(), Path(tempfile.mkdtemp()))
    ctx = world.runtime.ctx
    ids = [request_access(ctx, requester=ALICE, role_id="prod-admin", duration=timedelta(hours=1),
                          reason="bench").request_id for _ in range(args.decisions)]
    statements = 0

    def count(*_: object) -> None:
        nonlocal statements
        statements += 1

    event.listen(world.runtime.engine, "before_cursor_execute", count)
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    for request_id in ids:
        decide_request(ctx, request_id=request_id, approver=BOB, vote=Vote.APPROVE)
    profile.disable()
    elapsed = time.perf_counter() - started
    print(f"{args.decisions} decisions: {elapsed / args.decisions * 1000:.1f} ms each (wall), "
          f"{statements / args.decisions:.1f} SQL statements each (plus BEGIN/COMMIT)")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(20)
    print(out.getvalue())
    world.close()


if __name__ == "__main__":
    main()
