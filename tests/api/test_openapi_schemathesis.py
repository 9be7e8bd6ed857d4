"""Schemathesis over the served OpenAPI document: every operation, generated inputs, a valid bearer token.

Stateless checks (`case.call_and_validate`): no 5xx, documented status codes and content types,
responses and headers that match the document, invalid input rejected with a 4xx. Runs on SQLite and
PostgreSQL (one seeded database each), 25 positive and 15 negative examples per operation.

The cases are drawn with `APIOperation.as_strategy` under `@given` rather than `@schema.parametrize()`
with `schemathesis.pytest.from_fixture`: the latter reads `request.node._nodeid`, which pytest 9 no
longer has (schemathesis 4.32).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.api import ADMIN, ALICE, BOB, CAROL, EVE, ApiWorld, bearer, make_api

OPERATIONS = [
    ("GET", "/api/v1/requests"), ("POST", "/api/v1/requests"), ("GET", "/api/v1/requests/{request_id}"),
    ("POST", "/api/v1/requests/{request_id}/approve"), ("POST", "/api/v1/requests/{request_id}/deny"),
    ("POST", "/api/v1/requests/{request_id}/cancel"), ("GET", "/api/v1/grants"),
    ("GET", "/api/v1/grants/{grant_id}"), ("POST", "/api/v1/grants/{grant_id}/revoke"), ("GET", "/api/v1/audit"),
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiWorld]:
    """One app and database per module and engine (db_url is per test; twenty migrations would be slow)."""
    tmp = tmp_path_factory.mktemp("api")
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    url = server.create_database() if server else f"sqlite:///{tmp}/keyturn.db"
    world = make_api(url, tmp)
    c = world.client
    # A few rows so that small ids exist, in several states.
    for _ in range(3):
        c.post("/api/v1/requests", json={"role_id": "prod-admin", "duration": "1h", "reason": "seed"},
               headers=bearer(ALICE))
    c.post("/api/v1/requests/1/approve", json={"note": "seed"}, headers=bearer(BOB))
    c.post("/api/v1/requests/2/deny", json={"reason": "seed"}, headers=bearer(CAROL))
    c.post("/api/v1/requests", json={"role_id": "read-only"}, headers=bearer(BOB))
    yield world
    world.close()
    if server:
        server.drop_database(url)


@pytest.fixture(scope="module")
def api_schema(api_world: ApiWorld) -> Any:
    return schemathesis.openapi.from_wsgi("/api/openapi.json", api_world.app)


def test_the_list_below_is_every_operation(api_schema: Any) -> None:
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == set(OPERATIONS)


def test_the_success_responses_conform_too(api_schema: Any) -> None:
    """Generated ids and role ids rarely exist, so walk one lifecycle with known data through the same checks."""

    def call(method: str, path: str, user: str, status: int, **kwargs: Any) -> Any:
        response = api_schema[path][method].Case(headers=bearer(user), **kwargs).call_and_validate()
        assert response.status_code == status, response.text
        return response.json()

    new = {"role_id": "prod-admin", "duration": "30m", "reason": "conformance", "ticket": "T-1"}
    rid = call("POST", "/api/v1/requests", ALICE, 201, body=new)["id"]
    call("GET", "/api/v1/requests/{request_id}", ALICE, 200, path_parameters={"request_id": rid})
    decided = call("POST", "/api/v1/requests/{request_id}/approve", BOB, 200, path_parameters={"request_id": rid},
                   body={"note": "ok"})
    gid = decided["grant_id"]
    call("GET", "/api/v1/grants/{grant_id}", ALICE, 200, path_parameters={"grant_id": gid})
    call("POST", "/api/v1/grants/{grant_id}/revoke", ALICE, 202, path_parameters={"grant_id": gid}, body={})
    rid = call("POST", "/api/v1/requests", ALICE, 201, body=new)["id"]
    call("POST", "/api/v1/requests/{request_id}/deny", CAROL, 200, path_parameters={"request_id": rid},
         body={"reason": "no"})
    rid = call("POST", "/api/v1/requests", ALICE, 201, body=new)["id"]
    call("POST", "/api/v1/requests/{request_id}/cancel", ALICE, 200, path_parameters={"request_id": rid})
    for path in ("/api/v1/requests", "/api/v1/grants", "/api/v1/audit"):
        assert call("GET", path, ADMIN, 200, query={"page_size": 200})
    call("GET", "/api/v1/audit", EVE, 403)  # the audit log is for admins only, as documented


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation_conforms_to_the_spec(api_schema: Any, method: str, path: str, mode: GenerationMode) -> None:
    operation = api_schema[path][method]
    statuses: list[int] = []

    examples = 25 if mode is GenerationMode.POSITIVE else 15

    # The token is a fixed header of every case, so negative cases never "break" it only to have it put back.
    @given(case=operation.as_strategy(generation_mode=mode, headers=bearer(BOB)))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call_and_validate()
        statuses.append(response.status_code)

    check()
    assert statuses and max(statuses) < 500
    assert 401 not in statuses  # every case carried the token: the operation itself was exercised
    print(method, path, mode.value, sorted(Counter(statuses).items()))
