"""The fault-injecting proxy in front of moto, proven with real boto3 IAM clients.

Error faults are checked with botocore retries off (total_max_attempts=1) so the raw fault is seen; the
recovery cases use standard retries, as Keyturn's own clients do.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from tests.support.fault_proxy import FaultProxy

ROLE = "ProxyProbe"
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})  # max_attempts counts retries
STANDARD = Config(retries={"mode": "standard", "max_attempts": 3})


def trust(sid: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": sid, "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": "sts:AssumeRole"}]})


@pytest.fixture
def proxy(moto_reset: str) -> Iterator[FaultProxy]:
    with FaultProxy(moto_reset) as p:
        yield p


@pytest.fixture
def direct(moto_reset: str) -> Any:
    """A client straight to moto (not through the proxy), with the probe role created."""
    iam = boto3.client("iam", endpoint_url=moto_reset, region_name="us-east-1")
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=trust("Seed"))
    return iam


def via(proxy: FaultProxy, config: Config = NO_RETRIES) -> Any:
    return boto3.client("iam", endpoint_url=proxy.url, region_name="us-east-1", config=config)


def sids(iam: Any) -> list[str]:
    return [s["Sid"] for s in iam.get_role(RoleName=ROLE)["Role"]["AssumeRolePolicyDocument"]["Statement"]]


def code_and_status(exc: ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_forwards_counts_and_records_bodies(proxy: FaultProxy, direct: Any) -> None:
    iam = via(proxy)
    assert iam.get_role(RoleName=ROLE)["Role"]["RoleName"] == ROLE
    iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=trust("ViaProxy"))
    assert sids(direct) == ["ViaProxy"]
    assert proxy.count("GetRole") == 1 and proxy.count("UpdateAssumeRolePolicy") == 1
    assert proxy.count("CreateRole") == 0  # the seed went straight to moto
    [body] = proxy.bodies("UpdateAssumeRolePolicy")
    assert body["RoleName"] == [ROLE] and "ViaProxy" in body["PolicyDocument"][0]


def test_throttling_is_answered_without_forwarding(proxy: FaultProxy, direct: Any) -> None:
    proxy.throttle("UpdateAssumeRolePolicy")
    with pytest.raises(ClientError) as err:
        via(proxy).update_assume_role_policy(RoleName=ROLE, PolicyDocument=trust("Throttled"))
    assert code_and_status(err.value) == ("Throttling", 400)
    assert err.value.response["Error"]["Message"] == "Rate exceeded"
    assert sids(direct) == ["Seed"]  # moto never saw it
    assert proxy.count("UpdateAssumeRolePolicy", "throttled") == 1


def test_one_throttle_then_success_with_standard_retries(proxy: FaultProxy, direct: Any) -> None:
    proxy.throttle("UpdateAssumeRolePolicy", times=1)
    via(proxy, STANDARD).update_assume_role_policy(RoleName=ROLE, PolicyDocument=trust("Retried"))
    assert sids(direct) == ["Retried"]
    assert [s.outcome for s in proxy.seen("UpdateAssumeRolePolicy")] == ["throttled", "forwarded"]


@pytest.mark.parametrize(("status", "code"), [(500, "InternalFailure"), (503, "ServiceUnavailable")])
def test_server_errors_are_answered_without_forwarding(proxy: FaultProxy, direct: Any, status: int,
                                                       code: str) -> None:
    proxy.fail("UpdateAssumeRolePolicy", status=status, times=2)
    iam = via(proxy)
    for _ in range(2):
        with pytest.raises(ClientError) as err:
            iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=trust("Failed"))
        assert code_and_status(err.value) == (code, status)
    assert sids(direct) == ["Seed"]
    iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=trust("Third"))  # the fault is used up
    assert sids(direct) == ["Third"]
    assert proxy.count("UpdateAssumeRolePolicy") == 3


def test_hold_delays_before_forwarding(proxy: FaultProxy, direct: Any) -> None:
    proxy.hold("UpdateAssumeRolePolicy", seconds=60)
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(via(proxy).update_assume_role_policy, RoleName=ROLE, PolicyDocument=trust("Held"))
        proxy.wait_for("UpdateAssumeRolePolicy", timeout=10)
        assert not call.done() and sids(direct) == ["Seed"]  # received, not yet forwarded
        proxy.release()
        call.result(timeout=10)
    assert sids(direct) == ["Held"]


def test_hold_for_seconds_then_forward(proxy: FaultProxy, direct: Any) -> None:
    proxy.hold("GetRole", seconds=0.5)
    started = time.monotonic()
    via(proxy).get_role(RoleName=ROLE)
    assert time.monotonic() - started >= 0.5
    via(proxy).get_role(RoleName=ROLE)  # only once
    assert [s.outcome for s in proxy.seen("GetRole")] == ["held+forwarded", "forwarded"]


def test_dropped_response_after_a_successful_write(proxy: FaultProxy, direct: Any) -> None:
    proxy.drop_response("UpdateAssumeRolePolicy")
    with pytest.raises(ConnectionClosedError):
        via(proxy).update_assume_role_policy(RoleName=ROLE, PolicyDocument=trust("Lost"))
    assert sids(direct) == ["Lost"]  # the write happened; only its answer was lost


def test_dropped_response_is_retried_by_standard_mode(proxy: FaultProxy, direct: Any) -> None:
    proxy.drop_response("UpdateAssumeRolePolicy")
    via(proxy, STANDARD).update_assume_role_policy(RoleName=ROLE, PolicyDocument=trust("Again"))
    assert sids(direct) == ["Again"]
    assert [s.outcome for s in proxy.seen("UpdateAssumeRolePolicy")] == ["dropped", "forwarded"]


def test_rate_limit_throttles_beyond_n_per_second(proxy: FaultProxy, direct: Any) -> None:
    proxy.rate_limit("GetRole", 2)
    iam = via(proxy)
    outcomes = []
    for _ in range(4):
        try:
            iam.get_role(RoleName=ROLE)
            outcomes.append("ok")
        except ClientError as exc:
            outcomes.append(code_and_status(exc)[0])
    assert outcomes[:2] == ["ok", "ok"] and "Throttling" in outcomes[2:]
    assert proxy.count("GetRole", "rate-limited") == outcomes.count("Throttling")
    iam.list_roles()  # other actions are not limited
    proxy.clear()
    iam.get_role(RoleName=ROLE)


def test_counts_are_thread_safe(proxy: FaultProxy, direct: Any) -> None:
    clients = [via(proxy) for _ in range(8)]
    barrier = threading.Barrier(len(clients))

    def hammer(iam: Any) -> None:
        barrier.wait()
        for _ in range(5):
            iam.get_role(RoleName=ROLE)

    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(hammer, clients))
    assert proxy.count("GetRole") == 40
    assert len(proxy.seen()) == 40


def test_hold_response_forwards_at_once_then_holds_the_answer(proxy: FaultProxy, direct: Any) -> None:
    proxy.hold_response("UpdateAssumeRolePolicy", seconds=60)
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(via(proxy).update_assume_role_policy, RoleName=ROLE, PolicyDocument=trust("Applied"))
        proxy.wait_for("UpdateAssumeRolePolicy", timeout=10)  # recorded once moto has answered
        assert sids(direct) == ["Applied"]  # IAM did the write…
        assert not call.done()  # …and the caller has not heard back
        proxy.release()
        call.result(timeout=10)
    assert [s.outcome for s in proxy.seen("UpdateAssumeRolePolicy")] == ["forwarded+held"]
    via(proxy).update_assume_role_policy(RoleName=ROLE, PolicyDocument=trust("Next"))  # only once
    assert [s.outcome for s in proxy.seen("UpdateAssumeRolePolicy")] == ["forwarded+held", "forwarded"]


def test_stale_read_serves_the_pre_write_document_after_a_write(proxy: FaultProxy, direct: Any) -> None:
    iam = via(proxy)
    proxy.stale_read("UpdateAssumeRolePolicy", "GetRole", times=2)
    assert sids(iam) == ["Seed"]  # a read before the write: what a stale read will show
    assert sids(iam) == ["Seed"]  # armed, but nothing is stale before a write goes through
    iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=trust("Written"))
    assert sids(direct) == ["Written"]  # IAM has it
    assert sids(iam) == ["Seed"] and sids(iam) == ["Seed"]  # two reads through the proxy lag behind
    assert sids(iam) == ["Written"]  # then the truth
    assert [s.outcome for s in proxy.seen("GetRole")] == ["forwarded"] * 2 + ["stale"] * 2 + ["forwarded"]
    iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=trust("Again"))  # armed once only
    assert sids(iam) == ["Again"]


def test_stale_read_is_per_resource(proxy: FaultProxy, direct: Any) -> None:
    direct.create_role(RoleName="Other", AssumeRolePolicyDocument=trust("OtherSeed"))
    iam = via(proxy)
    iam.get_role(RoleName=ROLE)
    iam.get_role(RoleName="Other")
    proxy.stale_read("UpdateAssumeRolePolicy", "GetRole")
    iam.update_assume_role_policy(RoleName=ROLE, PolicyDocument=trust("Written"))
    other = iam.get_role(RoleName="Other")["Role"]["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Sid"] for s in other] == ["OtherSeed"]  # another role's read is not the stale one
    assert sids(iam) == ["Seed"]  # this role's next read is
    assert proxy.count("GetRole", "stale") == 1
