"""The floor: one IAM write plus its read-back on the same moto, as Keyturn's workers reach it.

Every IAM latency in the report is shown beside this floor, measured in the same run, and as a ratio
(latency / floor p50), so reports from hosts of different speeds compare: the same code is ~2x slower on
one host here than on another, and the floor moves with it.

One sample: `UpdateAssumeRolePolicy` on a scratch role (through the IAM proxy, with a boto3 client built
like the workers' own), then `GetRole` until the new document reads back. The scratch role is created for
the measurement and deleted after it, so no benchmark's documents or counters are disturbed (the proxy's
counters are reset by the next `stack.reset()` anyway).
"""

from __future__ import annotations

import json
import time
from typing import Any

from bench.catalogue import ACCOUNT
from bench.measure import summary

SCRATCH_ROLE = "BenchFloorScratch"


def _client(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench",
                        config=Config(retries={"mode": "standard", "max_attempts": 3}))


def _trust(k: int) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": f"Floor{k}", "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}}]})


def measure(endpoint: str, samples: int = 30) -> dict[str, float]:
    """p50/p99/... seconds of one IAM write plus its verified read-back, over `samples` writes."""
    iam = _client(endpoint)
    try:
        iam.create_role(RoleName=SCRATCH_ROLE, AssumeRolePolicyDocument=_trust(0), Path="/bench-floor/")
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    times = []
    try:
        for k in range(1, samples + 1):
            started = time.perf_counter()
            iam.update_assume_role_policy(RoleName=SCRATCH_ROLE, PolicyDocument=_trust(k))
            role = iam.get_role(RoleName=SCRATCH_ROLE)["Role"]
            while f"Floor{k}" not in json.dumps(role["AssumeRolePolicyDocument"]):
                role = iam.get_role(RoleName=SCRATCH_ROLE)["Role"]
            times.append(time.perf_counter() - started)
    finally:
        iam.delete_role(RoleName=SCRATCH_ROLE)
    return summary(times)


def ratio(latency_s: float, floor: dict[str, Any] | None) -> str:
    """"12.3x" the floor's p50, or "—" without a floor."""
    if not floor or not floor.get("p50"):
        return "—"
    return f"{latency_s / floor['p50']:.1f}x"


def line(floor: dict[str, Any] | None) -> str:
    if not floor:
        return "floor not measured"
    return (f"floor (one IAM write + its read-back on this moto, {floor['n']} samples): "
            f"p50 {1000 * floor['p50']:.1f} ms, p99 {1000 * floor['p99']:.1f} ms")
