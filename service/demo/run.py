"""`make demo`: one request's whole life on real local components, printed as a timeline."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from service.catalog import load_catalog
from service.core.policy import owned_sid, split
from service.core.rules import Vote
from service.demo.local import seed_iam, start_celery, start_moto, start_redis
from service.settings import Settings

CATALOG = Path(__file__).resolve().parents[2] / "config" / "catalog.example.yaml"
T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {datetime.now(UTC):%H:%M:%S}Z  {text}", flush=True)


def wait_until(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def run_demo(grant_seconds: int = 15, *, keep: bool = False) -> int:
    """Returns the exit code: 0 when every step happened as it should. `keep`: then serve the console on the
    same stack until Ctrl-C (service/demo/console.py)."""
    workdir = Path(tempfile.mkdtemp(prefix="keyturn-demo-"))
    redis_url, redis_proc = start_redis(workdir)
    aws_url, moto = start_moto()
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"sqlite:///{workdir}/keyturn.db", REDIS_URL=redis_url, KEYTURN_CATALOG=str(CATALOG),
        AWS_ENDPOINT_URL=aws_url, AWS_ACCESS_KEY_ID="demo", AWS_SECRET_ACCESS_KEY="demo",  # noqa: S106
        AWS_DEFAULT_REGION="us-east-1", KEYTURN_SWEEP_INTERVAL="1s",
        # The demo's own key for sealing queued interactions (never a default: every run makes one).
        KEYTURN_TASK_SIGNING_KEY=os.environ.get("KEYTURN_TASK_SIGNING_KEY") or secrets.token_urlsafe(32),
    )
    os.environ.update(env)
    procs = []
    try:
        say(f"workdir {workdir}; redis {redis_url}; moto server (AWS) {aws_url}")
        import boto3

        from service.app import create_app
        from service.store.db import migrate

        migrate(env["DATABASE_URL"])
        catalog = load_catalog(CATALOG)
        iam = boto3.client("iam")
        seed_iam(iam, catalog)
        say("IAM seeded from the catalogue (roles with a foreign 'BreakGlassTeam' statement, users, groups)")
        procs = [start_celery("worker", env, workdir), start_celery("beat", env, workdir)]
        say("started a Celery worker and Celery beat (sweeper every 1s)")
        # The timeline is the demo's output; the service's own log lines are in worker.log and beat.log.
        rt = create_app(replace(Settings.from_env(), log_level="WARNING")).extensions["keyturn"]
        code = _walk(rt, iam, catalog, grant_seconds)
        if keep and code == 0:
            from service.demo.console import serve_console

            serve_console(catalog, say)
        return code
    except Exception as exc:
        say(f"FAILED: {type(exc).__name__}: {exc}")
        for name in ("worker.log", "beat.log"):
            path = workdir / name
            if path.exists():
                print(f"--- {name} (last lines) ---\n" + "\n".join(path.read_text().splitlines()[-20:]))
        return 1
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except Exception:
                proc.kill()
        moto.stop()
        if redis_proc:
            redis_proc.terminate()


def _walk(rt: Any, iam: Any, catalog: Any, grant_seconds: int) -> int:
    from service.operations.decide_request import decide_request
    from service.operations.request_access import request_access
    from service.operations.revoke_grant import revoke_grant
    from service.store.models import Grant

    role = catalog.roles["prod-admin"]
    alice, bob = "U0ALICE01", "U0BOB0001"
    principal = catalog.principals[alice]

    def owned_now() -> list[dict[str, Any]]:
        doc = iam.get_role(RoleName=role.role_name)["Role"]["AssumeRolePolicyDocument"]
        return [s for s in split(doc)[1] if s["Sid"] == owned_sid(principal)]

    def grant_state(grant_id: int | None) -> str:
        with rt.ctx.store() as session:
            return str(session.get(Grant, grant_id).state)

    filed = request_access(rt.ctx, requester=alice, role_id=role.id, duration=timedelta(seconds=grant_seconds),
                           reason="fixing INC-123")
    say(f"alice requests {role.id} for {grant_seconds}s: request {filed.request_id} is {filed.state.value}")
    decided = decide_request(rt.ctx, request_id=filed.request_id, approver=bob, vote=Vote.APPROVE)
    assert decided.grant_id is not None, "one approval reaches this role's quorum"
    say(f"bob approves: request {filed.request_id} {decided.outcome.value}, grant {decided.grant_id} created")
    # The first sync waits for the worker's start too, which takes a while on a busy machine.
    wait_until("the grant to become active", lambda: grant_state(decided.grant_id) == "active", 90)
    statement = owned_now()
    say(f"worker synced the trust policy; grant {decided.grant_id} is active. Owned statement:")
    print(json.dumps(statement, indent=2))
    say(f"console link: {role.switch_role_url(catalog.accounts[role.account].label)}")
    wait_until("the grant to expire", lambda: grant_state(decided.grant_id) == "expired", grant_seconds + 30)
    gone = not owned_now()
    say(f"grant {decided.grant_id} expired; the sweeper removed the statement: {'gone' if gone else 'STILL THERE'}")
    again = request_access(rt.ctx, requester=alice, role_id=role.id, duration=timedelta(minutes=30),
                           reason="one more look")
    second = decide_request(rt.ctx, request_id=again.request_id, approver=bob, vote=Vote.APPROVE)
    assert second.grant_id is not None
    wait_until("the second grant", lambda: grant_state(second.grant_id) == "active", 20)
    say(f"second grant {second.grant_id} active for 30m; alice clicks \"I'm done\"")
    revoke_grant(rt.ctx, grant_id=int(second.grant_id), actor_id=alice)
    wait_until("the revocation", lambda: grant_state(second.grant_id) == "revoked", 20)
    revoked_gone = not owned_now()
    say(f"grant {second.grant_id} revoked; statement {'gone' if revoked_gone else 'STILL THERE'}")
    sso_ok = _sso_person(rt, iam, role, bob, grant_state)
    doc = iam.get_role(RoleName=role.role_name)["Role"]["AssumeRolePolicyDocument"]
    foreign_ok = [s["Sid"] for s in doc["Statement"]] == ["BreakGlassTeam"]
    say(f"foreign statement untouched: {foreign_ok}")
    ok = bool(statement) and gone and revoked_gone and sso_ok and foreign_ok
    say("demo finished: " + ("every step checked out" if ok else "SOMETHING WAS WRONG"))
    return 0 if ok else 1


def _sso_person(rt: Any, iam: Any, role: Any, approver: str, grant_state: Callable[[int | None], str]) -> bool:
    """An IAM Identity Center person: pinned to their own session of the shared permission-set role."""
    from service.operations.decide_request import decide_request
    from service.operations.request_access import request_access
    from service.operations.revoke_grant import revoke_grant

    dana = rt.catalog.identities["U0DANA001"]

    def owned_now() -> list[dict[str, Any]]:
        doc = iam.get_role(RoleName=role.role_name)["Role"]["AssumeRolePolicyDocument"]
        return [s for s in split(doc)[1] if s["Sid"] == owned_sid(dana.key)]

    filed = request_access(rt.ctx, requester=dana.slack_id, role_id=role.id, duration=timedelta(minutes=30),
                           reason="on call")
    decided = decide_request(rt.ctx, request_id=filed.request_id, approver=approver, vote=Vote.APPROVE)
    assert decided.grant_id is not None
    say(f"dana ({dana.label}) signs in through SSO; her request {filed.request_id} is approved")
    wait_until("dana's grant", lambda: grant_state(decided.grant_id) == "active", 20)
    [statement] = owned_now()
    say("dana's statement admits her session of the permission-set role only (aws:userid = role id:session):")
    print(json.dumps({"Principal": statement["Principal"], "Condition": statement["Condition"]}, indent=2))
    pinned = statement["Condition"]["StringEquals"].get("aws:userid", "").endswith(f":{dana.session_name}")
    revoke_grant(rt.ctx, grant_id=int(decided.grant_id), actor_id=dana.slack_id)
    wait_until("dana's revocation", lambda: grant_state(decided.grant_id) == "revoked", 20)
    gone = not owned_now()
    say(f"dana clicks \"I'm done\": grant {decided.grant_id} revoked; statement {'gone' if gone else 'STILL THERE'}")
    return pinned and gone
