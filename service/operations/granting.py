"""Turning an approved request into a grant row (shared by approval and auto-approval)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from service.catalog import Catalog
from service.catalog.model import Role, Strategy
from service.core.identity import Identity
from service.core.states import GrantState
from service.core.targets import TargetError, TargetRef, sessions_target, target_for
from service.store import repo
from service.store.models import AccessRequest, Grant


def target_of(role: Role, identity: Identity) -> tuple[TargetRef, str]:
    """Where this person's access to the role lives, and its lease key (raises TargetError)."""
    return target_for(strategy=role.strategy.value, role_account=role.account, role_name=role.role_name,
                      role_arn=role.arn, group=role.group, identity=identity, permission_set=role.permission_set)


SSO_ROLE_PATH = "/aws-reserved/sso.amazonaws.com/"


def cut_key_of(role: Role) -> str | None:
    """The role_sessions target that cuts this role's sessions (none for identity_center: no role of ours)."""
    if role.strategy is Strategy.IDENTITY_CENTER:
        return None
    return sessions_target(role.account, role.role_name).key


def still_granted(catalog: Catalog, grant: Grant, identity: Identity | None) -> str | None:
    """Why a live grant may no longer stand under the catalogue as it is now, or None if it may: its
    person is no longer mapped to the same identity, its role is gone, or the role now puts it elsewhere."""
    if identity is None:
        return repo.UNMAPPED
    role = catalog.role(grant.role_id)
    if role is None:
        return f"role {grant.role_id} is no longer in the catalogue"
    try:
        target, lease_key = target_of(role, identity)
    except TargetError as exc:
        return f"the catalogue no longer gives this access this way: {exc}"
    if (target.key, lease_key) != (grant.target_key, grant.lease_key):
        return f"the catalogue now puts {role.id} in {target.key}"
    return None


def principal_of(identity: Identity) -> str:
    """The ARN a person signs in as, for display: the IAM user, or their (first) sign-in role."""
    if identity.arn:
        return identity.arn
    role = identity.roles[0]
    return role.arn or f"arn:aws:iam::{role.account}:role{SSO_ROLE_PATH}AWSReservedSSO_{role.permission_set}"


def create_grant(
    session: Session, catalog: Catalog, request: AccessRequest, identity: Identity, now: datetime, actor: str
) -> Grant:
    """Insert the grant for an approved request and mark its target dirty. Caller commits, then syncs.

    `identity` is the catalogue's identity for the requester now, already checked to be the one filed."""
    role = catalog.roles[request.role_id]
    target, lease_key = target_of(role, identity)
    starts = now
    expires = now + timedelta(seconds=request.duration_seconds)
    if request.extends_grant_id is not None:
        # An extension is a new lease that starts where the old one ends, so access never blinks.
        old = session.get(Grant, request.extends_grant_id)
        if old is not None and old.expires_at > now:
            expires = old.expires_at + timedelta(seconds=request.duration_seconds)
            expires = min(expires, now + role.max_duration)
    grant = Grant(
        request_id=request.id, role_id=role.id, requester=request.requester, principal_arn=request.principal_arn,
        identity_key=identity.key, target_key=target.key, lease_key=lease_key, require_mfa=role.require_mfa,
        cut_key=cut_key_of(role),
        session_name=identity.session_name,
        starts_at=starts, expires_at=expires, state=GrantState.PROVISIONING.value,
    )
    session.add(grant)
    session.flush()
    repo.mark_dirty(session, target.key, now)
    repo.audit(
        session, at=now, actor=actor, action="grant.created", request_id=request.id, grant_id=grant.id,
        target_key=target.key, expires_at=expires.isoformat(), principal=request.principal_arn,
        identity=identity.key,
    )
    return grant
