"""`keyturn doctor`, the people who sign in through a role (`sso_user`, `iam_role`) and the trust of targets.

* `sign-in-role`: each person's sign-in role exists in its account: by ARN, or the AWSReservedSSO_<set>_<hash>
  role IAM Identity Center makes for account + permission set (resolved exactly as sync resolves it).
* `identity-store-user`: an `sso_user` exists in the identity store (when settings.identity_center is set).
* `trust-broad`: a trust_policy role does not trust a sign-in role outside Keyturn's pinned statements (that
  admits everyone who signs in with it, not one person).
* `trust-keyturn`: no trust statement of a target role names Keyturn's own role (Keyturn can write trust
  policies; a role that also trusts Keyturn could be assumed by whoever holds Keyturn's credentials).
* `permission-set`: an identity_center role's permission set exists in the instance.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from service.aws.clients import AwsClients
from service.aws.errors import TargetGone, error_code
from service.aws.identities import IdentityUnresolved, resolve_pin
from service.aws.identity_center import AccountAssignments, UserNotFound
from service.catalog.model import Role, Strategy
from service.core.identity import Identity, IdentityKind, Pin, SignInRole
from service.core.policy import is_owned
from service.doctor.checks import ASSUME, CheckResult, Env, Status, as_list, caller_arn, describe, statements

IDENTITIES = "(identities)"  # role_id of the rows about catalogue identities
ROLE_BASED = (IdentityKind.SSO_USER, IdentityKind.IAM_ROLE)


def role_based(env: Env) -> list[Identity]:
    return [i for _, i in sorted(env.catalog.identities.items()) if i.kind in ROLE_BASED]


def resolved_sign_in_roles(env: Env) -> dict[str, tuple[str, list[str]]]:
    """Sign-in role ARN -> (its unique id, the people who sign in with it), read from IAM once per run."""
    if env.sign_in_roles is None:
        env.sign_in_roles = {}
        for identity in role_based(env):
            for role in identity.roles:
                try:
                    pin = _resolve(env, identity, role)
                except IdentityUnresolved:
                    continue  # sign-in-role reports it
                arn, user_id = pin.principals[0], pin.user_ids[0].split(":", 1)[0]
                env.sign_in_roles.setdefault(arn, (user_id, []))[1].append(identity.label)
    return env.sign_in_roles


def _resolve(env: Env, identity: Identity, role: SignInRole) -> Pin:
    """One sign-in role of a person, resolved in IAM exactly as sync resolves it."""
    return resolve_pin(cast(AwsClients, env.clients), dataclasses.replace(identity, roles=(role,)))


def check_identities(env: Env) -> list[CheckResult]:
    out: list[CheckResult] = []
    for identity in role_based(env):
        for role in identity.roles:
            out.append(_sign_in_role(env, identity, role))
        if identity.kind is IdentityKind.SSO_USER:
            out.append(_store_user(env, identity))
        else:
            out.append(_session_name_bound(env, identity))
    return out


SAML = "sts:AssumeRoleWithSAML"


def _session_name_bound(env: Env, identity: Identity) -> CheckResult:
    """An iam_role person is pinned by their session name, so nobody else may choose it: every way into the
    sign-in role must set the session name for the caller (SAML: the IdP's RoleSessionName attribute) or
    bind it with a condition on sts:RoleSessionName to the caller's own name (a policy variable)."""
    role = identity.roles[0]
    who = f"{identity.label} (for {identity.slack_id})"
    if not env.managed(role.account):
        return CheckResult(IDENTITIES, "sign-in-session-name", Status.WARN,
                           f"{who}: account {role.account} not managed, cannot check", "")
    try:
        found = env.iam(role.account).get_role(RoleName=str(role.arn).rsplit("/", 1)[-1])["Role"]
    except Exception as exc:
        return CheckResult(IDENTITIES, "sign-in-session-name", Status.WARN, f"{who}: {error_code(exc)}", "")
    trust = found["AssumeRolePolicyDocument"]
    loose = []
    for stmt in statements(trust):
        if stmt.get("Effect") != "Allow":
            continue
        actions = {a.lower() for a in as_list(stmt.get("Action"))}
        if actions <= {SAML.lower(), "sts:tagsession", "sts:setsourceidentity"}:
            continue  # SAML: the IdP's assertion names the session, not the caller
        bound = any("rolesessionname" in str(k).lower() and "${" in "".join(as_list(v))
                    for block in (stmt.get("Condition") or {}).values() if isinstance(block, dict)
                    for k, v in block.items())
        if not bound:
            loose.append(str(stmt.get("Sid") or "a statement without Sid"))
    if loose:
        return CheckResult(IDENTITIES, "sign-in-session-name", Status.FAIL,
                           f"{who}: the caller chooses the session name of {role.arn} ({'; '.join(loose)}): "
                           f"anyone who can assume it could call their session {identity.session_name!r}",
                           "let people in only through SAML, or bind sts:RoleSessionName to the caller "
                           "(e.g. StringEquals sts:RoleSessionName ${aws:username}, or the OIDC sub claim)")
    return CheckResult(IDENTITIES, "sign-in-session-name", Status.OK,
                       f"{who}: {role.arn} sets or binds the session name")


def _sign_in_role(env: Env, identity: Identity, role: SignInRole) -> CheckResult:
    who = f"{identity.label} (for {identity.slack_id}), sign-in role {role.label}"
    if not env.managed(role.account):
        return CheckResult(IDENTITIES, "sign-in-role", Status.WARN, f"{who}: account {role.account} not managed, "
                           "cannot check", f"add account {role.account} to accounts to have it checked")
    try:
        pin = _resolve(env, identity, role)
    except IdentityUnresolved as exc:
        fix = (f"assign permission set {role.permission_set} to {identity.user_name} in account {role.account} "
               "(IAM Identity Center makes the role on the first assignment), or correct the catalogue"
               if role.permission_set else "create the role, or correct the ARN in the catalogue")
        return CheckResult(IDENTITIES, "sign-in-role", Status.FAIL,
                           f"{who}: {exc}; nothing can pin this person, their grants fail", fix)
    return CheckResult(IDENTITIES, "sign-in-role", Status.OK,
                       f"{who}: {pin.principals[0]} (pinned as {pin.user_ids[0]})")


def _store_user(env: Env, identity: Identity) -> CheckResult:
    who = f"{identity.label} (for {identity.slack_id})"
    center = env.catalog.identity_center
    if center is None:
        return CheckResult(IDENTITIES, "identity-store-user", Status.WARN,
                           f"{who}: settings.identity_center is not set, the identity store is not checked",
                           "set settings.identity_center (instance_arn, identity_store_id)")
    store = env.clients.identitystore(center.region)
    lookup = AccountAssignments(None, store, center, account="", permission_set="")
    try:
        user_id = lookup.user_id(str(identity.user_name))
    except UserNotFound as exc:
        return CheckResult(IDENTITIES, "identity-store-user", Status.FAIL, f"{who}: {exc}",
                           "create the user in IAM Identity Center, or correct user_name in the catalogue")
    return CheckResult(IDENTITIES, "identity-store-user", Status.OK,
                       f"{who}: user id {user_id} in {center.identity_store_id}")


# ---- the target's trust ----------------------------------------------------------------------------
def _names(stmt: Any) -> list[str]:
    who = stmt.get("Principal")
    return ["*"] if who == "*" else as_list(who.get("AWS")) if isinstance(who, dict) else []


def _allows_assume(stmt: Any) -> bool:
    actions = [a.lower() for a in as_list(stmt.get("Action"))]
    return str(stmt.get("Effect", "")).lower() == "allow" and \
        any(a in (ASSUME.lower(), "sts:*", "*") for a in actions)


def _pins_a_person(stmt: Any) -> bool:
    condition = stmt.get("Condition") or {}
    # Only an exact match pins one person: StringLike "*" (or a pattern) on aws:userid admits many.
    block = condition.get("StringEquals") or {}
    return isinstance(block, dict) and any(str(k).lower() == "aws:userid" for k in block)


def check_trust_broad(env: Env, role: Role, trust: dict[str, Any]) -> list[CheckResult]:
    """trust_policy: no statement but Keyturn's pinned ones names a sign-in role of a role-based person."""
    if role.strategy is not Strategy.TRUST_POLICY:
        return []
    signing_in = resolved_sign_in_roles(env)
    if not signing_in:
        return []
    broad = []
    for i, stmt in enumerate(statements(trust), start=1):
        if is_owned(stmt) or not _allows_assume(stmt) or _pins_a_person(stmt):
            continue
        for arn, (unique_id, people) in signing_in.items():
            if arn in _names(stmt) or unique_id in _names(stmt):
                broad.append(f"{stmt.get('Sid') or f'#{i}'} trusts {arn} (signed in with by {', '.join(people)})")
    if broad:
        return [CheckResult(role.id, "trust-broad", Status.FAIL,
                            "the trust policy lets in every session of a sign-in role, not one person: "
                            + "; ".join(broad),
                            "remove those statements: Keyturn writes one statement per approved person, pinned "
                            "to their aws:userid")]
    return [CheckResult(role.id, "trust-broad", Status.OK,
                        f"no statement outside Keyturn's trusts the {len(signing_in)} sign-in role(s) broadly")]


def keyturn_roles(env: Env, account: str) -> set[str]:
    """The ARNs Keyturn acts as: its own credentials' role, and every manager role of the catalogue."""
    out = {a.manager_role_arn for a in env.catalog.accounts.values() if a.manager_role_arn}
    own = caller_arn(env, account)
    return out | ({own} if own else set())


def check_trust_keyturn(env: Env, role: Role, trust: dict[str, Any]) -> list[CheckResult]:
    mine = keyturn_roles(env, role.account)
    naming = [f"{stmt.get('Sid') or f'#{i}'} ({', '.join(sorted(mine.intersection(_names(stmt))))})"
              for i, stmt in enumerate(statements(trust), start=1)
              if str(stmt.get("Effect", "")).lower() == "allow" and mine.intersection(_names(stmt))]
    if naming:
        return [CheckResult(role.id, "trust-keyturn", Status.FAIL,
                            "the trust policy names Keyturn's own role in " + "; ".join(naming)
                            + ": whoever holds Keyturn's credentials can assume it without any approval",
                            "remove those statements: Keyturn needs to write the trust policy, never to be in it")]
    return [CheckResult(role.id, "trust-keyturn", Status.OK, "no trust statement names Keyturn's own role")]


def check_permission_set(env: Env, role: Role) -> list[CheckResult]:
    center = env.catalog.identity_center
    if center is None:
        return [CheckResult(role.id, "permission-set", Status.FAIL, "settings.identity_center is not set",
                            "set settings.identity_center (instance_arn, identity_store_id)")]
    sso = env.clients.sso_admin(center.region)
    assignments = AccountAssignments(sso, None, center, account=role.account, permission_set=str(role.permission_set))
    try:
        arn = assignments.permission_set_arn(fresh=True)
    except TargetGone as exc:
        return [CheckResult(role.id, "permission-set", Status.FAIL, str(exc),
                            f"create permission set {role.permission_set} in IAM Identity Center, or correct "
                            "permission_set in the catalogue")]
    except Exception as exc:
        if error_code(exc) in ("ResourceNotFoundException", "ValidationException"):
            return [CheckResult(role.id, "permission-set", Status.FAIL,
                                f"instance {center.instance_arn}: {describe(exc)}",
                                "correct settings.identity_center.instance_arn (keyturn doctor lists none)")]
        raise
    return [CheckResult(role.id, "permission-set", Status.OK, f"permission set {role.permission_set}: {arn}")]
