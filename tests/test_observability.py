"""Health, readiness, Prometheus metrics and structured logs of the real app, on SQLite and PostgreSQL.

The app is `create_app` on a migrated database with the real Redis; work is driven through the REST API
(bearer tokens: secrets that must never reach a log line).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.logs import JsonFormatter, redact
from service.store.models import Grant
from tests.api import ALICE, BOB, TOKENS, ApiWorld, bearer, make_api
from tests.support.ports import free_port


@pytest.fixture
def world(db_url: str, redis_url: str, tmp_path: Path) -> Iterator[ApiWorld]:
    w = make_api(db_url, tmp_path, redis_url=redis_url)
    yield w
    w.close()


def scrape(world: ApiWorld) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = world.client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    out = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def file_and_approve(world: ApiWorld) -> tuple[int, int]:
    c = world.client
    filed = c.post("/api/v1/requests", json={"role_id": "prod-admin", "duration": "1h", "reason": "INC-7"},
                   headers=bearer(ALICE))
    assert filed.status_code == 201, filed.json
    request_id = filed.json["id"]
    approved = c.post(f"/api/v1/requests/{request_id}/approve", json={}, headers=bearer(BOB))
    assert approved.status_code == 200, approved.json
    return request_id, approved.json["grant_id"]


# ---- health -------------------------------------------------------------------------------------------
def test_healthz_and_readyz_when_everything_answers(world: ApiWorld) -> None:
    assert world.client.get("/healthz").json == {"status": "ok"}
    ready = world.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_503_when_the_broker_is_down(db_url: str, tmp_path: Path) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    w = make_api(db_url, tmp_path, redis_url=dead)
    try:
        assert w.client.get("/healthz").status_code == 200  # the process is up all the same
        ready = w.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json["status"] == "unavailable"
        assert ready.json["checks"]["database"] == "ok"
        assert ready.json["checks"]["broker"].startswith("error: ")
    finally:
        w.close()


def test_readyz_is_503_when_the_database_is_gone(world: ApiWorld) -> None:
    rt = world.runtime
    broken = rt.engine.url.set(database="/nonexistent/dir/keyturn.db") if rt.engine.url.get_backend_name() == \
        "sqlite" else rt.engine.url.set(port=free_port())
    from service.store.db import make_engine

    original = rt.engine
    rt.engine = make_engine(broken.render_as_string(hide_password=False))
    try:
        ready = world.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json["checks"]["database"].startswith("error: ")
        assert ready.json["checks"]["broker"] == "ok"
    finally:
        rt.engine.dispose()
        rt.engine = original


# ---- metrics ------------------------------------------------------------------------------------------
def test_metrics_follow_the_database(world: ApiWorld) -> None:
    before = scrape(world)
    for name in ("keyturn_requests", "keyturn_grants"):
        assert (name, (("state", "pending"),)) in before or (name, (("state", "active"),)) in before
    assert before[("keyturn_active_grants", ())] == 0
    assert before[("keyturn_overdue_revocations", ())] == 0
    assert before[("keyturn_iam_writes_total", ())] == 0
    assert before[("keyturn_revocation_lag_seconds_count", ())] == 0
    assert ("keyturn_slack_errors_total", ()) in before and ("keyturn_aws_errors_total", ()) in before

    c = world.client
    pending = c.post("/api/v1/requests", json={"role_id": "prod-admin", "duration": "1h", "reason": "x"},
                     headers=bearer(ALICE))
    assert pending.status_code == 201
    _, grant_id = file_and_approve(world)
    after = scrape(world)
    assert after[("keyturn_requests", (("state", "pending"),))] == 1
    assert after[("keyturn_requests", (("state", "approved"),))] == 1
    assert after[("keyturn_grants", (("state", "provisioning"),))] == 1  # no worker here: not synced yet
    assert after[("keyturn_active_grants", ())] == 0

    # a grant whose expiry passed more than the grace period ago, still not removed, is overdue
    with world.runtime.ctx.store.begin() as session:
        session.get(Grant, grant_id).expires_at = datetime.now(UTC) - timedelta(minutes=5)
    assert scrape(world)[("keyturn_overdue_revocations", ())] == 1

    revoked = c.post(f"/api/v1/grants/{grant_id}/revoke", json={}, headers=bearer(ALICE))
    assert revoked.status_code == 202
    after_revoke = scrape(world)
    assert after_revoke[("keyturn_grants", (("state", "ending"),))] == 1
    assert after_revoke[("keyturn_grants", (("state", "provisioning"),))] == 0
    assert after_revoke[("keyturn_overdue_revocations", ())] == 1  # ending is not removed yet


# ---- logs ---------------------------------------------------------------------------------------------
def test_audit_lines_are_json_with_ids_and_no_secret(world: ApiWorld, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    response = world.client.post("/api/v1/requests", json={"role_id": "prod-admin", "duration": "1h",
                                                           "reason": "INC-9"}, headers=bearer(ALICE))
    assert response.status_code == 201
    http_request_id = response.headers["X-Request-Id"]
    assert http_request_id
    formatter = JsonFormatter(secrets=tuple(TOKENS))
    lines = [json.loads(formatter.format(r)) for r in caplog.records]
    [filed] = [line for line in lines if line["message"] == "request.filed"]
    assert filed["logger"] == "keyturn.audit" and filed["level"] == "info"
    assert filed["actor"] == ALICE and filed["access_request_id"] == response.json["id"]
    assert filed["request_id"] == http_request_id
    assert filed["time"].endswith("+00:00")  # UTC, timezone-aware
    text = "\n".join(formatter.format(r) for r in caplog.records)
    assert not any(token in text for token in TOKENS), "a bearer token reached the logs"


def test_a_rolled_back_transition_is_never_logged(world: ApiWorld, caplog: pytest.LogCaptureFixture) -> None:
    from service.store import repo
    from service.store.models import AuditEvent

    caplog.set_level(logging.INFO)
    factory = world.runtime.ctx.store
    with pytest.raises(RuntimeError), factory.begin() as session:
        repo.audit(session, at=datetime.now(UTC), actor="x", action="test.rolled_back")
        raise RuntimeError("abort the transaction")
    assert not [r for r in caplog.records if r.getMessage() == "test.rolled_back"]
    with factory() as session:
        assert session.query(AuditEvent).filter_by(action="test.rolled_back").count() == 0


@pytest.mark.parametrize("secret", [
    "xoxb-1234-5678-abcdefABCDEF", "Bearer alice-token-0123456789",
    "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "v0=" + "a" * 64,
])
def test_redaction_of_every_secret_shape(secret: str) -> None:
    record = logging.LogRecord("keyturn", logging.WARNING, __file__, 1, "calling with %s", (secret,), None)
    record.header = secret  # an `extra=` field too
    line = JsonFormatter().format(record)
    body = secret.split("=", 1)[-1].removeprefix("Bearer ")
    assert body not in line and "[redacted]" in line
    assert json.loads(line)["level"] == "warning"
    assert redact(f"token {secret} end") != f"token {secret} end"


def test_configured_secrets_are_redacted_even_without_a_known_shape() -> None:
    settings_secret = "plain-signing-secret-42"
    record = logging.LogRecord("keyturn", logging.INFO, __file__, 1, "got %s", (settings_secret,), None)
    assert settings_secret not in JsonFormatter(secrets=(settings_secret,)).format(record)


def test_settings_never_print_secrets() -> None:
    from service.settings import Settings

    settings = replace(Settings(), slack_bot_token="xoxb-never-shown", slack_signing_secret="also-never-shown")
    assert "never-shown" not in repr(settings)
