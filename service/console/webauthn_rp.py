"""Keyturn as a WebAuthn relying party (py_webauthn): registering security keys, and verifying the assertion
that confirms an approval.

The relying party id and origin are KEYTURN_CONSOLE_URL's host and origin; user verification is required on
registration and on every assertion. A challenge is issued to one signed-in person for one purpose (registering,
or confirming one request), kept in the database, deleted when used (good once, even with an old session
cookie replayed) and refused after CHALLENGE_TTL. An assertion must come from a credential registered by the
same person in the same workspace, its sign count must go up (a cloned key or a replay is refused), and the new
count is written compare-and-set, so two copies of one assertion cannot both pass.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import webauthn
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from service.operations.context import Context
from service.store import repo
from service.store.models import SecurityKey, SecurityKeyChallenge

log = logging.getLogger(__name__)
CHALLENGE_TTL = timedelta(minutes=3)
CREDENTIAL_MAX = 16_384  # characters of the browser's JSON answer: a real one is well under 4 KB
CREDENTIAL_ID_MAX = 1023  # bytes: WebAuthn's limit (stored base64url, at most 1364 characters)
KEYS_PER_PERSON = 10
CHALLENGES_PER_PERSON = 20  # open at once (each lives CHALLENGE_TTL): a bound on what one person can store
REGISTER = "register"


class KeyRefused(Exception):
    """A registration or assertion Keyturn does not accept; the message is fit to show the person."""


@dataclass(frozen=True)
class RelyingParty:
    rp_id: str
    origin: str
    name: str = "Keyturn"

    @classmethod
    def of(cls, console_url: str) -> RelyingParty:
        parts = urlsplit(console_url)
        if not parts.hostname:
            raise ValueError(f"KEYTURN_CONSOLE_URL {console_url!r} names no host")
        # The origin as a browser serialises it (lower-case host, no default port), or no ceremony would match.
        default = {"https": 443, "http": 80}.get(parts.scheme)
        port = f":{parts.port}" if parts.port and parts.port != default else ""
        return cls(rp_id=parts.hostname, origin=f"{parts.scheme}://{parts.hostname}{port}")


def confirm_purpose(request_id: int) -> str:
    return f"confirm:{request_id}"


def keys_of(ctx: Context, user: str, team: str) -> list[SecurityKey]:
    with ctx.store() as session:
        return list(session.scalars(select(SecurityKey).where(
            SecurityKey.user_id == user, SecurityKey.team_id == team).order_by(SecurityKey.id)))


def _issue(ctx: Context, user: str, purpose: str) -> bytes:
    challenge = webauthn.helpers.generate_challenge()
    now = ctx.now()
    with ctx.store.begin() as session:
        session.execute(delete(SecurityKeyChallenge).where(SecurityKeyChallenge.created_at < now - CHALLENGE_TTL))
        live = session.scalar(select(func.count()).select_from(SecurityKeyChallenge).where(
            SecurityKeyChallenge.user_id == user))
        if (live or 0) >= CHALLENGES_PER_PERSON:
            raise KeyRefused("Too many security-key prompts are open for you: wait a few minutes and try again.")
        session.add(SecurityKeyChallenge(challenge=bytes_to_base64url(challenge), user_id=user, purpose=purpose,
                                         created_at=now))
    return challenge


def _take(ctx: Context, user: str, purpose: str, challenge: str) -> bytes:
    """Use up the challenge the answer signed: it must be this person's, for this purpose, and still young."""
    with ctx.store.begin() as session:
        taken = session.execute(delete(SecurityKeyChallenge).where(
            SecurityKeyChallenge.challenge == challenge[:128], SecurityKeyChallenge.user_id == user,
            SecurityKeyChallenge.purpose == purpose,
            SecurityKeyChallenge.created_at >= ctx.now() - CHALLENGE_TTL)).rowcount  # type: ignore[attr-defined]
    if taken != 1:
        raise KeyRefused("This security-key answer is not for this page, is for someone else, has been used "
                         "already or is too old: try again.")
    return base64url_to_bytes(challenge)


def _parse(credential: str) -> tuple[dict[str, Any], str]:
    """The browser's answer and the challenge its client data names (checked again by py_webauthn)."""
    if not credential or len(credential) > CREDENTIAL_MAX:
        raise KeyRefused("No security-key answer came with the form: try again.")
    try:
        answer = json.loads(credential)
        client_data = json.loads(base64url_to_bytes(answer["response"]["clientDataJSON"]))
        challenge = client_data["challenge"]
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyRefused("The security-key answer could not be read: try again.") from exc
    if not isinstance(answer, dict) or not isinstance(challenge, str):
        raise KeyRefused("The security-key answer could not be read: try again.")
    return answer, challenge


def registration_options(ctx: Context, rp: RelyingParty, *, user: str, team: str, name: str) -> str:
    existing = keys_of(ctx, user, team)
    if len(existing) >= KEYS_PER_PERSON:
        raise KeyRefused(f"You have {KEYS_PER_PERSON} security keys already: remove one first.")
    options = webauthn.generate_registration_options(
        rp_id=rp.rp_id, rp_name=rp.name, user_id=f"{team}:{user}".encode(), user_name=user,
        user_display_name=name, challenge=_issue(ctx, user, REGISTER), timeout=120_000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.DISCOURAGED, user_verification=UserVerificationRequirement.REQUIRED),
        exclude_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(k.credential_id))
                             for k in existing])
    return webauthn.options_to_json(options)


def register(ctx: Context, rp: RelyingParty, *, user: str, team: str, label: str, credential: str) -> SecurityKey:
    answer, challenge = _parse(credential)
    expected = _take(ctx, user, REGISTER, challenge)
    try:
        verified = webauthn.verify_registration_response(
            credential=answer, expected_challenge=expected, expected_rp_id=rp.rp_id, expected_origin=rp.origin,
            require_user_verification=True)
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        log.warning("security key registration refused: %s", exc, extra={"user": user})
        raise KeyRefused("The security key's answer did not verify (user verification, this site's address "
                         "and a fresh challenge are required): try again.") from exc
    if len(verified.credential_id) > CREDENTIAL_ID_MAX:
        raise KeyRefused(f"This security key's id is longer than WebAuthn allows ({CREDENTIAL_ID_MAX} bytes).")
    transports = answer["response"].get("transports") if isinstance(answer.get("response"), dict) else None
    known = {t.value for t in AuthenticatorTransport}
    now = ctx.now()
    key = SecurityKey(
        user_id=user, team_id=team, credential_id=bytes_to_base64url(verified.credential_id),
        public_key=verified.credential_public_key, sign_count=verified.sign_count, label=label[:64],
        transports=",".join(t for t in transports if isinstance(t, str) and t in known)[:128]
        if isinstance(transports, list) else None,
        created_at=now)
    try:
        with ctx.store.begin() as session:
            session.add(key)
            session.flush()
            repo.audit(session, at=now, actor=user, action="security_key.registered", team=team,
                       credential_id=key.credential_id, label=key.label)
    except IntegrityError as exc:
        raise KeyRefused("This security key is registered already.") from exc
    return key


def remove(ctx: Context, *, user: str, team: str, key_id: int) -> SecurityKey | None:
    """Remove one of the person's own keys; None when there is no such key of theirs."""
    with ctx.store.begin() as session:
        key = session.execute(select(SecurityKey).where(
            SecurityKey.id == key_id, SecurityKey.user_id == user, SecurityKey.team_id == team)).scalar_one_or_none()
        if key is None:
            return None
        session.delete(key)
        repo.audit(session, at=ctx.now(), actor=user, action="security_key.removed", team=team,
                   credential_id=key.credential_id, label=key.label)
    return key


def assertion_options(ctx: Context, rp: RelyingParty, *, user: str, team: str, request_id: int) -> str:
    keys = keys_of(ctx, user, team)
    if not keys:
        raise KeyRefused("You have no security key registered: add one on the Security keys page first.")
    options = webauthn.generate_authentication_options(
        rp_id=rp.rp_id, challenge=_issue(ctx, user, confirm_purpose(request_id)), timeout=120_000,
        user_verification=UserVerificationRequirement.REQUIRED,
        allow_credentials=[PublicKeyCredentialDescriptor(id=base64url_to_bytes(k.credential_id)) for k in keys])
    return webauthn.options_to_json(options)


def verify_assertion(ctx: Context, rp: RelyingParty, *, user: str, team: str, request_id: int,
                     credential: str) -> str:
    """The id of the person's own credential whose assertion, for this request's challenge, verified."""
    answer, challenge = _parse(credential)
    expected = _take(ctx, user, confirm_purpose(request_id), challenge)
    sent = answer.get("id")
    credential_id = sent[:1400] if isinstance(sent, str) else ""
    with ctx.store() as session:
        key = session.execute(select(SecurityKey).where(
            SecurityKey.credential_id == credential_id, SecurityKey.user_id == user,
            SecurityKey.team_id == team)).scalar_one_or_none()
    if key is None:
        log.warning("security key assertion refused: not a key of this person's", extra={"user": user})
        raise KeyRefused("That security key is not one you registered in Keyturn.")
    try:
        verified = webauthn.verify_authentication_response(
            credential=answer, expected_challenge=expected, expected_rp_id=rp.rp_id, expected_origin=rp.origin,
            credential_public_key=key.public_key, credential_current_sign_count=key.sign_count,
            require_user_verification=True)
    except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
        log.warning("security key assertion refused: %s", exc, extra={"user": user})
        raise KeyRefused("The security key's answer did not verify (user verification, this site's address, a "
                         "fresh challenge and a rising signature counter are required).") from exc
    with ctx.store.begin() as session:
        moved = session.execute(update(SecurityKey).where(
            SecurityKey.id == key.id, SecurityKey.sign_count == key.sign_count).values(
            sign_count=verified.new_sign_count, last_used_at=ctx.now())).rowcount  # type: ignore[attr-defined]
    if moved != 1:
        raise KeyRefused("That security key was used at the same moment elsewhere: try again.")
    return key.credential_id
