"""Turning an approved request into a grant row (shared by approval and auto-approval)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from service.catalog import Catalog
from service.core.states import GrantState
from service.core.targets import target_for
from service.store import repo
from service.store.models import AccessRequest, Grant


def session_name_for(principal_arn: str) -> str:
    """The requester's IAM name: what the console uses as the role session name."""
    return principal_arn.rsplit("/", 1)[-1][:64]


def create_grant(session: Session, catalog: Catalog, request: AccessRequest, now: datetime, actor: str) -> Grant:
    """Insert the grant for an approved request and mark its target dirty. Caller commits, then syncs."""
    role = catalog.roles[request.role_id]
    target, lease_key = target_for(
        strategy=role.strategy.value, role_account=role.account, role_name=role.role_name, role_arn=role.arn,
        group=role.group, principal_arn=request.principal_arn,
    )
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
        target_key=target.key, lease_key=lease_key, require_mfa=role.require_mfa,
        session_name=session_name_for(request.principal_arn) if ":user/" in request.principal_arn else None,
        starts_at=starts, expires_at=expires, state=GrantState.PROVISIONING.value,
    )
    session.add(grant)
    session.flush()
    repo.mark_dirty(session, target.key, now)
    repo.audit(
        session, at=now, actor=actor, action="grant.created", request_id=request.id, grant_id=grant.id,
        target_key=target.key, expires_at=expires.isoformat(), principal=request.principal_arn,
    )
    return grant
