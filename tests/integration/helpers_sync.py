"""Shared helpers for the in-process sync and concurrency tests: one `World` wires a migrated database,
a catalogue, moto-backed IAM (seeded from the catalogue), a movable clock and a recorder of every
IAM call Keyturn itself makes. No worker: the tests call the use cases and `sync_target` directly.
"""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import yaml
from sqlalchemy import select

from service.aws.clients import AwsClients
from service.aws.gateway import AwsGateway
from service.catalog import Catalog, parse_catalog
from service.core.policy import is_owned, size_without_whitespace
from service.core.rules import Vote
from service.demo.local import seed_iam
from service.locks import LocalLocks, Locks
from service.operations.context import Context, RecordingDispatcher
from service.operations.decide_request import decide_request
from service.operations.granting import target_of
from service.operations.request_access import request_access
from service.operations.revoke_grant import revoke_grant
from service.operations.sweep import SweepReport, sweep
from service.store.db import make_engine, make_session_factory, migrate
from service.store.models import AuditEvent, Grant, OwnedMembership
from service.sync.target import SyncReport, sync_target

CATALOGS = Path(__file__).resolve().parents[1] / "catalogs"
ACCOUNT = "123456789012"  # moto's one account
WRITE_OPS = frozenset({"UpdateAssumeRolePolicy", "PutUserPolicy", "DeleteUserPolicy", "PutGroupPolicy",
                       "DeleteGroupPolicy", "AddUserToGroup", "RemoveUserFromGroup"})


def raw_catalog(name: str = "sync.yaml", **settings: Any) -> dict[str, Any]:
    raw = yaml.safe_load((CATALOGS / name).read_text())
    raw.setdefault("settings", {}).update(settings)
    return copy.deepcopy(raw)


class Clock:
    """Real time plus an offset the test can push forward: `ctx.now` for jumping past expiries."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


@dataclass
class IamCall:
    op: str
    params: dict[str, Any]


class IamRecorder:
    """Every IAM call made through one boto3 client (botocore's before-parameter-build event)."""

    def __init__(self, client: Any) -> None:
        self.calls: list[IamCall] = []
        self._lock = threading.Lock()
        client.meta.events.register("before-parameter-build.iam", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        with self._lock:
            self.calls.append(IamCall(model.name, copy.deepcopy(params)))

    def writes(self, *ops: str) -> list[IamCall]:
        wanted = set(ops) or WRITE_OPS
        with self._lock:
            return [c for c in self.calls if c.op in wanted]


def owned(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [s for s in (doc or {}).get("Statement", []) if is_owned(s)]


def foreign(doc: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [s for s in (doc or {}).get("Statement", []) if not is_owned(s)]


@dataclass
class World:
    url: str
    catalog: Catalog
    ctx: Context
    gw: AwsGateway
    locks: Locks
    clock: Clock
    iam: Any  # an inspection client: its calls are not recorded
    recorder: IamRecorder
    engine: Any
    dispatch: RecordingDispatcher = field(default_factory=RecordingDispatcher)

    # ---- use cases ----------------------------------------------------------------------------
    def request(self, user: str, role_id: str, duration: timedelta = timedelta(hours=1)) -> int:
        return request_access(self.ctx, requester=user, role_id=role_id, duration=duration,
                              reason="integration test").request_id

    def grant(self, user: str, role_id: str, duration: timedelta = timedelta(hours=1),
              approver: str | None = None) -> int:
        """File and approve; the grant id (state provisioning until a sync)."""
        request_id = self.request(user, role_id, duration)
        approver = approver or sorted(self.catalog.roles[role_id].approvers)[0]
        decided = decide_request(self.ctx, request_id=request_id, approver=approver, vote=Vote.APPROVE)
        assert decided.grant_id is not None, decided
        return decided.grant_id

    def revoke(self, grant_id: int, actor: str | None = None) -> str:
        return revoke_grant(self.ctx, grant_id=grant_id, actor_id=actor or self.row(grant_id).requester)

    def sweep(self) -> SweepReport:
        return sweep(self.ctx)

    def sync(self, role_id: str | None = None, *, target_key: str | None = None,
             user: str = "U0ALICE01") -> SyncReport:
        key = target_key or self.target(role_id or "ops-admin", user)
        return sync_target(self.ctx, aws=self.gw, locks=self.locks, target_key=key, verify_attempts=3)

    # ---- reading state ------------------------------------------------------------------------
    def target(self, role_id: str, user: str = "U0ALICE01") -> str:
        ref, _ = target_of(self.catalog.roles[role_id], self.catalog.identities[user])
        return ref.key

    def arn(self, user: str) -> str:
        return self.catalog.principals[user]

    def row(self, grant_id: int) -> Grant:
        with self.ctx.store() as session:
            grant = session.get(Grant, grant_id)
            assert grant is not None
            return grant

    def state(self, grant_id: int) -> str:
        return self.row(grant_id).state

    def audits(self, action: str | None = None, **where: Any) -> list[AuditEvent]:
        with self.ctx.store() as session:
            query = select(AuditEvent).order_by(AuditEvent.id)
            if action:
                query = query.where(AuditEvent.action == action)
            for name, value in where.items():
                query = query.where(getattr(AuditEvent, name) == value)
            return list(session.execute(query).scalars())

    def owned_members(self, target_key: str) -> set[str]:
        with self.ctx.store() as session:
            return set(session.execute(
                select(OwnedMembership.member).where(OwnedMembership.target_key == target_key)).scalars())

    def trust(self, role_id: str = "ops-admin") -> dict[str, Any]:
        doc = self.iam.get_role(RoleName=self.catalog.roles[role_id].role_name)["Role"]["AssumeRolePolicyDocument"]
        return dict(doc)

    def set_trust(self, role_id: str, doc: dict[str, Any]) -> None:
        self.iam.update_assume_role_policy(RoleName=self.catalog.roles[role_id].role_name,
                                           PolicyDocument=json.dumps(doc))

    def role_policies(self, name: str) -> list[dict[str, Any]]:
        """Every permission policy on the role as IAM holds it: inline ones and attached managed ones (the
        session cuts live in both), for the IAM evaluator to judge an open session by."""
        docs = []
        for policy in self.iam.list_role_policies(RoleName=name)["PolicyNames"]:
            doc = self.iam.get_role_policy(RoleName=name, PolicyName=policy)["PolicyDocument"]
            docs.append(json.loads(doc) if isinstance(doc, str) else dict(doc))
        for attached in self.iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            arn = attached["PolicyArn"]
            version = self.iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
            doc = self.iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
            docs.append(json.loads(doc) if isinstance(doc, str) else dict(doc))
        return docs

    def cuts(self, name: str) -> list[dict[str, Any]]:
        """Keyturn's session-cut statements on the role, on every page."""
        return [s for doc in self.role_policies(name) for s in owned(doc)]

    def delete_role(self, name: str) -> None:
        """Delete a role as an operator must in IAM: its policies (the session cuts among them) first."""
        for policy in self.iam.list_role_policies(RoleName=name)["PolicyNames"]:
            self.iam.delete_role_policy(RoleName=name, PolicyName=policy)
        for attached in self.iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
            self.iam.detach_role_policy(RoleName=name, PolicyArn=attached["PolicyArn"])
        self.iam.delete_role(RoleName=name)

    def group_members(self, group: str) -> set[str]:
        return {u["UserName"] for u in self.iam.get_group(GroupName=group)["Users"]}

    def close(self) -> None:
        self.engine.dispose()


def make_world(db_url: str, raw: dict[str, Any] | None = None, *, locks: Locks | None = None) -> World:
    """Migrate `db_url`, seed moto's IAM from the catalogue, build the context. Needs moto_reset."""
    migrate(db_url)
    catalog = parse_catalog(raw if raw is not None else raw_catalog())
    engine = make_engine(db_url)
    clock = Clock()
    dispatch = RecordingDispatcher()
    ctx = Context(store=make_session_factory(engine), catalog=catalog, dispatch=dispatch, now=clock)
    gw = AwsGateway(AwsClients(), trust_policy_max_chars=catalog.trust_policy_max_chars,
                    session_cut_pages=catalog.session_cut_pages)
    recorder = IamRecorder(gw.clients.iam(ACCOUNT))
    iam = boto3.client("iam")
    seed_iam(iam, catalog)
    return World(url=db_url, catalog=catalog, ctx=ctx, gw=gw, locks=locks or LocalLocks(), clock=clock, iam=iam,
                 recorder=recorder, engine=engine, dispatch=dispatch)


def pad_trust_to(world: World, role_id: str, size: int) -> dict[str, Any]:
    """Add a foreign padding statement so the trust policy is exactly `size` characters (white space free)."""
    doc = world.trust(role_id)
    pad = {"Sid": "Padding", "Effect": "Deny", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
           "Action": "sts:AssumeRole", "Condition": {"StringEquals": {"aws:PrincipalTag/pad": ""}}}
    kept = [s for s in foreign(doc) if s.get("Sid") != "Padding"]
    doc = {**doc, "Statement": [*kept, pad, *owned(doc)]}
    missing = size - size_without_whitespace(doc)
    assert missing >= 0, f"the trust policy is already {size_without_whitespace(doc)} characters"
    pad["Condition"]["StringEquals"]["aws:PrincipalTag/pad"] = "x" * missing
    assert size_without_whitespace(doc) == size
    world.set_trust(role_id, doc)
    return doc
