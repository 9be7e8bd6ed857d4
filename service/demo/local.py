"""Local stand-ins for a demo: Redis, moto server as AWS seeded from the catalogue, worker and beat."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from service.aws.identities import SSO_ROLE_PATH
from service.catalog import Catalog, Strategy
from service.core.targets import parse_principal


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def start_redis(workdir: Path) -> tuple[str, subprocess.Popen[bytes] | None]:
    """The local Redis if one listens on 6379, else a private redis-server on a free port."""
    if redis_answers("redis://127.0.0.1:6379/13"):
        return "redis://127.0.0.1:6379/13", None
    binary = shutil.which("redis-server")
    if not binary:
        raise RuntimeError("no Redis on 127.0.0.1:6379 and no redis-server to start (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return f"redis://127.0.0.1:{port}/0", proc


def start_moto() -> tuple[str, Any]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per AWS call otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    wait_port(port)
    return f"http://127.0.0.1:{port}", server


def sso_role_name(permission_set: str) -> str:
    """The name IAM Identity Center gives a permission set's role: AWSReservedSSO_<set>_<16 hex>."""
    return f"AWSReservedSSO_{permission_set}_{hashlib.sha256(permission_set.encode()).hexdigest()[:16]}"


def _sign_in_roles(catalog: Catalog) -> set[tuple[str, str]]:
    """(path, name) of every role the catalogue's people sign in with."""
    out: set[tuple[str, str]] = set()
    for identity in catalog.identities.values():
        for r in identity.roles:
            if r.arn:
                resource = r.arn.split(":", 5)[5]  # role/path/Name
                path, _, name = resource[len("role"):].rpartition("/")
                out.add((f"{path}/", name))
            else:
                out.add((f"{SSO_ROLE_PATH}{SSO_REGION}/", sso_role_name(str(r.permission_set))))
    return out


SSO_REGION = "eu-west-1"


def seed_iam(iam: Any, catalog: Catalog) -> None:
    """Create what the catalogue names: roles (each with a foreign statement), groups, users, and the roles
    people sign in with (IAM Identity Center's permission-set roles, federation roles)."""
    for arn in catalog.principals.values():
        p = parse_principal(arn)
        if p.kind == "user":
            try:
                iam.create_user(UserName=p.name)
            except iam.exceptions.EntityAlreadyExistsException:
                pass
    for path, name in sorted(_sign_in_roles(catalog)):
        trust = {"Version": "2012-10-17", "Statement": [{
            "Sid": "SignIn", "Effect": "Allow", "Principal": {"Federated": "arn:aws:iam::123456789012:saml-provider/x"},
            "Action": "sts:AssumeRoleWithSAML"}]}
        try:
            iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(trust))
        except iam.exceptions.EntityAlreadyExistsException:
            pass
    for role in catalog.roles.values():
        if role.strategy is Strategy.IDENTITY_CENTER:
            continue  # Identity Center makes that role itself
        trust = {"Version": "2012-10-17", "Statement": [{
            "Sid": "BreakGlassTeam", "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{role.account}:root"}, "Action": "sts:AssumeRole",
        }]}
        try:
            iam.create_role(RoleName=role.role_name, Path=role.path, AssumeRolePolicyDocument=json.dumps(trust),
                            MaxSessionDuration=3600)
        except iam.exceptions.EntityAlreadyExistsException:
            pass
        if role.strategy is Strategy.GROUP_MEMBERSHIP and role.group:
            try:
                iam.create_group(GroupName=role.group)
            except iam.exceptions.EntityAlreadyExistsException:
                pass


def start_celery(kind: str, env: dict[str, str], workdir: Path) -> subprocess.Popen[bytes]:
    """A real worker (solo pool) or beat process on the demo's environment."""
    argv = [sys.executable, "-m", "celery", "-A", "workers.main:celery_app", kind, "--loglevel", "WARNING"]
    if kind == "worker":
        argv += ["--pool", "solo", "--without-gossip", "--without-mingle", "--hostname", f"demo-{os.getpid()}@%h"]
    else:
        argv += ["--schedule", str(workdir / "beat-schedule")]
    log = open(workdir / f"{kind}.log", "wb")
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
