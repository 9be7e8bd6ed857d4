"""tests/support/iam_eval: the evaluator can say no as well as yes, operator by operator, and over the
statements Keyturn's core really builds."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.core.cuts import PersonCut, armed_statement, pack_statement
from service.core.policy import Lease, assume_statement, iso_z, trust_statement
from tests.support.iam_eval import (
    Decision,
    Outcome,
    Request,
    UnknownOperator,
    conditions_hold,
    document,
    evaluate,
    may_assume,
    session_arn,
    session_calls,
    session_may,
    user_assumes,
)

T0 = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
ALICE = "arn:aws:iam::111111111111:user/alice"
BOB = "arn:aws:iam::111111111111:user/bob"
ROLE = "arn:aws:iam::222222222222:role/keyturn/Admin"
LOCAL_ROLE = "arn:aws:iam::111111111111:role/keyturn/Admin"
SSO_ROLE = "arn:aws:iam::111111111111:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_Dev_0123456789abcdef"
SSO_ID = "AROAEXAMPLESSOROLE01"
TARGET_ID = "AROAEXAMPLETARGET001"
MISSING = None


def allow(**extra: Any) -> dict[str, Any]:
    return {"Sid": "A", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", **extra}


def ctx_request(context: dict[str, Any], action: str = "s3:GetObject", resource: str = "*") -> Request:
    return Request(action, resource, ALICE, context)


# ---- condition operators -------------------------------------------------------------------------------
OPERATORS = [
    # operator, key, policy values, context value (None: key absent), expected
    ("StringEquals", "k", "a", "a", True),
    ("StringEquals", "k", "a", "A", False),
    ("StringEquals", "k", ["a", "b"], "b", True),  # values OR
    ("StringEquals", "k", "a", MISSING, False),  # a positive operator on a missing key is false
    ("StringNotEquals", "k", "a", "b", True),
    ("StringNotEquals", "k", ["a", "b"], "b", False),  # negated: NOR over the values
    ("StringNotEquals", "k", "a", MISSING, True),
    ("StringEqualsIgnoreCase", "k", "Alice", "aLICE", True),
    ("StringNotEqualsIgnoreCase", "k", "Alice", "aLICE", False),
    ("StringLike", "k", "ali*", "alice", True),
    ("StringLike", "k", "al?ce", "alice", True),
    ("StringLike", "k", "al?ce", "allice", False),
    ("StringLike", "k", "ALI*", "alice", False),  # case-sensitive
    ("StringNotLike", "k", "ali*", "bob", True),
    ("StringNotLike", "k", "ali*", "alice", False),
    ("StringEqualsIfExists", "k", "a", MISSING, True),
    ("StringEqualsIfExists", "k", "a", "b", False),
    ("DateLessThan", "aws:CurrentTime", "2026-11-23T10:00:00Z", "2026-11-23T09:59:59Z", True),
    ("DateLessThan", "aws:CurrentTime", "2026-11-23T10:00:00Z", "2026-11-23T10:00:00Z", False),  # at the second
    ("DateLessThanEquals", "aws:CurrentTime", "2026-11-23T10:00:00Z", "2026-11-23T10:00:00Z", True),
    ("DateGreaterThan", "aws:CurrentTime", "2026-11-23T10:00:00Z", "2026-11-23T10:00:00Z", False),
    ("DateGreaterThanEquals", "aws:CurrentTime", "2026-11-23T10:00:00Z", "2026-11-23T10:00:00Z", True),
    ("DateGreaterThanEquals", "aws:CurrentTime", "2026-11-23T10:00:00Z", "2026-11-23T09:59:59Z", False),
    ("DateEquals", "aws:CurrentTime", "2026-11-23T10:00:00Z", "2026-11-23T10:00:00+00:00", True),
    ("DateNotEquals", "aws:CurrentTime", "2026-11-23T10:00:00Z", "2026-11-23T10:00:01Z", True),
    ("DateLessThan", "aws:CurrentTime", "1795428000", "2026-11-23T09:59:59Z", True),  # epoch seconds
    ("DateLessThan", "aws:CurrentTime", "2026-11-23T10:00:00Z", "not a date", False),
    ("DateLessThan", "aws:TokenIssueTime", "2026-11-23T10:00:00Z", MISSING, False),
    ("NumericLessThan", "n", "10", "9.5", True),
    ("NumericLessThan", "n", "10", "10", False),
    ("NumericLessThanEquals", "n", "10", "10", True),
    ("NumericGreaterThan", "n", "10", "11", True),
    ("NumericGreaterThanEquals", "n", "10", "9", False),
    ("NumericEquals", "n", "10", "10.0", True),
    ("NumericNotEquals", "n", "10", "10", False),
    ("NumericEquals", "n", "10", "ten", False),
    ("Bool", "aws:MultiFactorAuthPresent", "true", "true", True),
    ("Bool", "aws:MultiFactorAuthPresent", "true", "false", False),
    ("Bool", "aws:MultiFactorAuthPresent", True, "TRUE", True),  # JSON true
    ("Bool", "aws:MultiFactorAuthPresent", "true", MISSING, False),  # long-term keys carry no MFA key
    ("BoolIfExists", "aws:MultiFactorAuthPresent", "true", MISSING, True),
    ("Null", "aws:TokenIssueTime", "true", MISSING, True),
    ("Null", "aws:TokenIssueTime", "true", "2026-11-23T10:00:00Z", False),
    ("Null", "aws:TokenIssueTime", "false", "2026-11-23T10:00:00Z", True),
    ("Null", "aws:TokenIssueTime", "false", MISSING, False),
    ("ArnEquals", "aws:PrincipalArn", "arn:aws:iam::111111111111:role/keyturn/*", LOCAL_ROLE, True),
    ("ArnLike", "aws:PrincipalArn", "arn:aws:iam::*:role/keyturn/Admin", LOCAL_ROLE, True),
    ("ArnLike", "aws:PrincipalArn", "arn:aws:iam::*:role/keyturn/Admin", ROLE.replace("Admin", "admin"), False),
    ("ArnLike", "aws:PrincipalArn", "arn:aws:iam::*", LOCAL_ROLE, False),  # "*" stays inside its segment
    ("ArnNotLike", "aws:PrincipalArn", "arn:aws:iam::*:role/keyturn/*", ALICE, True),
    ("ArnNotEquals", "aws:PrincipalArn", "arn:aws:iam::*:role/keyturn/*", LOCAL_ROLE, False),
    ("ArnNotLike", "aws:PrincipalArn", "arn:aws:iam::*:role/keyturn/*", MISSING, True),
    ("IpAddress", "aws:SourceIp", "203.0.113.0/24", "203.0.113.7", True),
    ("NotIpAddress", "aws:SourceIp", "203.0.113.0/24", "203.0.113.7", False),
    ("ForAnyValue:StringEquals", "aws:TagKeys", ["a", "b"], ["c", "b"], True),
    ("ForAnyValue:StringEquals", "aws:TagKeys", ["a", "b"], ["c", "d"], False),
    ("ForAnyValue:StringEquals", "aws:TagKeys", ["a"], MISSING, False),
    ("ForAllValues:StringEquals", "aws:TagKeys", ["a", "b"], ["a", "b"], True),
    ("ForAllValues:StringEquals", "aws:TagKeys", ["a", "b"], ["a", "c"], False),
    ("ForAllValues:StringEquals", "aws:TagKeys", ["a"], MISSING, True),  # vacuously true
    ("ForAllValues:StringNotLike", "aws:TagKeys", ["kt-*"], ["a", "b"], True),
    ("ForAllValues:StringNotLike", "aws:TagKeys", ["kt-*"], ["a", "kt-x"], False),
    ("ForAnyValue:StringNotEquals", "aws:TagKeys", ["a"], ["a", "b"], True),
    ("StringEquals", "aws:TagKeys", ["a"], ["b", "a"], True),  # single-valued operator: any context value
    ("StringNotEquals", "aws:TagKeys", ["a"], ["b", "a"], False),
]


@pytest.mark.parametrize(("op", "key", "values", "have", "expected"), OPERATORS)
def test_condition_operators(op: str, key: str, values: Any, have: Any, expected: bool) -> None:
    context = {} if have is None else {key: have}
    assert conditions_hold({op: {key: values}}, context) is expected
    # ... and the same through a whole statement: the Allow applies exactly when the condition holds
    decision = evaluate([document(allow(Condition={op: {key: values}}))], ctx_request(context))
    assert decision.outcome is (Outcome.ALLOW if expected else Outcome.IMPLICIT_DENY)


def test_several_keys_and_operators_all_must_hold() -> None:
    condition = {"StringEquals": {"a": "1", "b": "2"}, "DateLessThan": {"aws:CurrentTime": iso_z(T0)}}
    ok = {"a": "1", "b": "2", "aws:CurrentTime": iso_z(T0 - timedelta(seconds=1))}
    assert conditions_hold(condition, ok)
    for key, value in (("a", "x"), ("b", "x"), ("aws:CurrentTime", iso_z(T0))):
        assert not conditions_hold(condition, {**ok, key: value}), key
    assert not conditions_hold(condition, {k: v for k, v in ok.items() if k != "b"})


def test_condition_keys_are_case_insensitive_values_are_not() -> None:
    assert conditions_hold({"StringEquals": {"AWS:UserName": "alice"}}, {"aws:username": "alice"})
    assert not conditions_hold({"StringEquals": {"aws:username": "Alice"}}, {"aws:username": "alice"})


def test_an_unknown_operator_is_an_error_not_a_silent_yes_or_no() -> None:
    with pytest.raises(UnknownOperator):
        conditions_hold({"StringEqualz": {"k": "a"}}, {"k": "a"})
    with pytest.raises(UnknownOperator):
        conditions_hold({"ForSomeValues:StringEquals": {"k": "a"}}, {"k": "a"})


# ---- policy variables ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("template", "context", "resource", "expected"), [
    ("arn:aws:s3:::home/${aws:username}/*", {"aws:username": "alice"}, "arn:aws:s3:::home/alice/x", True),
    ("arn:aws:s3:::home/${aws:username}/*", {"aws:username": "alice"}, "arn:aws:s3:::home/bob/x", False),
    ("arn:aws:s3:::home/${aws:username}/*", {}, "arn:aws:s3:::home/alice/x", False),  # unresolved: no match
    ("arn:aws:s3:::home/${aws:username, 'guest'}/*", {}, "arn:aws:s3:::home/guest/x", True),
    ("arn:aws:s3:::a${*}b", {}, "arn:aws:s3:::a*b", True),  # ${*} is a literal star ...
    ("arn:aws:s3:::a${*}b", {}, "arn:aws:s3:::axb", False),  # ... not a wildcard
    ("arn:aws:s3:::home/${aws:username}", {"aws:username": "a*"}, "arn:aws:s3:::home/abc", False),
])
def test_policy_variables_in_resources(template: str, context: dict[str, str], resource: str,
                                       expected: bool) -> None:
    statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": template}
    assert evaluate([document(statement)], ctx_request(context, resource=resource)).allowed is expected


def test_policy_variables_in_conditions_and_only_in_2012_documents() -> None:
    condition = {"StringEquals": {"aws:PrincipalTag/owner": "${aws:username}"}}
    context = {"aws:username": "alice", "aws:PrincipalTag/owner": "alice"}
    assert evaluate([document(allow(Condition=condition))], ctx_request(context))
    assert not evaluate([document(allow(Condition=condition))], ctx_request({**context, "aws:username": "bob"}))
    old = {"Version": "2008-10-17", "Statement": [allow(Condition=condition)]}
    assert not evaluate([old], ctx_request(context))  # literal "${aws:username}" there
    assert evaluate([old], ctx_request({**context, "aws:PrincipalTag/owner": "${aws:username}"}))


# ---- actions, resources, decisions -----------------------------------------------------------------------
@pytest.mark.parametrize(("pattern", "action", "expected"), [
    ("iam:Put*", "iam:PutRolePolicy", True),
    ("IAM:putrolepolicy", "iam:PutRolePolicy", True),  # actions are case-insensitive
    ("iam:Put*", "iam:GetRole", False),
    ("iam:?etRole", "iam:GetRole", True),
    ("*", "sts:AssumeRole", True),
    ("iam:*", "sts:AssumeRole", False),
])
def test_action_wildcards(pattern: str, action: str, expected: bool) -> None:
    statement = {"Effect": "Allow", "Action": pattern, "Resource": "*"}
    assert evaluate([statement], Request(action, ROLE, ALICE)).allowed is expected


@pytest.mark.parametrize(("pattern", "resource", "expected"), [
    ("arn:aws:iam::*:role/keyturn/*", ROLE, True),
    ("arn:aws:iam::*:role/keyturn/*", "arn:aws:iam::222222222222:role/keyturn/sub/Admin", True),
    ("arn:aws:iam::*:role/keyturn/*", "arn:aws:iam::222222222222:role/Admin", False),
    ("arn:aws:iam::*:role/Keyturn/*", ROLE, False),  # resources are case-sensitive
    ("arn:aws:iam::22222222222?:role/keyturn/Admin", ROLE, True),
    ("arn:aws:iam::*", ROLE, False),
    ("*", ROLE, True),
])
def test_resource_wildcards(pattern: str, resource: str, expected: bool) -> None:
    statement = {"Effect": "Allow", "Action": "iam:GetRole", "Resource": pattern}
    assert evaluate([statement], Request("iam:GetRole", resource, ALICE)).allowed is expected


def test_deny_beats_allow_and_names_its_sid() -> None:
    statements = [{"Sid": "Everything", "Effect": "Allow", "Action": "*", "Resource": "*"},
                  {"Sid": "NotThat", "Effect": "Deny", "Action": "iam:PutRolePolicy", "Resource": ROLE}]
    denied = evaluate([document(*statements)], Request("iam:PutRolePolicy", ROLE, ALICE))
    assert denied.outcome is Outcome.EXPLICIT_DENY and denied.sid == "NotThat" and not denied
    allowed = evaluate([document(*statements)], Request("iam:GetRole", ROLE, ALICE))
    assert allowed.outcome is Outcome.ALLOW and allowed.sid == "Everything" and allowed
    # the deny lives in another policy of the same principal: still wins
    assert not evaluate([document(statements[0]), document(statements[1])], Request("iam:PutRolePolicy", ROLE, ALICE))
    nothing = evaluate([], Request("iam:GetRole", ROLE, ALICE))
    assert nothing.outcome is Outcome.IMPLICIT_DENY and nothing.sid is None
    assert "implicit deny" in str(nothing) and "by NotThat" in str(denied)


def test_not_action_and_not_resource() -> None:
    deny_all_but = {"Sid": "D", "Effect": "Deny", "NotAction": ["iam:Get*", "iam:List*"], "Resource": "*"}
    everything = {"Effect": "Allow", "Action": "*", "Resource": "*"}
    assert evaluate([document(everything, deny_all_but)], Request("iam:GetRole", ROLE, ALICE))
    assert not evaluate([document(everything, deny_all_but)], Request("iam:DeleteRole", ROLE, ALICE))
    only_others = {"Effect": "Allow", "Action": "sts:AssumeRole", "NotResource": ROLE}
    assert not evaluate([only_others], Request("sts:AssumeRole", ROLE, ALICE))
    assert evaluate([only_others], Request("sts:AssumeRole", LOCAL_ROLE, ALICE))


def test_a_policy_may_hold_one_statement_not_a_list() -> None:
    policy = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "iam:GetRole", "Resource": "*"}}
    assert evaluate([policy], Request("iam:GetRole", ROLE, ALICE))


# ---- principals and role assumption ----------------------------------------------------------------------
def trust(principal: Any, condition: dict[str, Any] | None = None, sid: str = "T") -> dict[str, Any]:
    statement = {"Sid": sid, "Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    return document({**statement, "Condition": condition} if condition else statement)


IDENTITY_ALLOWS = [document({"Sid": "MayAssume", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ROLE})]


@pytest.mark.parametrize(("principal", "caller", "identity", "expected"), [
    # cross-account (alice in 111..., the role in 222...): trust AND identity
    ({"AWS": ALICE}, ALICE, IDENTITY_ALLOWS, True),
    ({"AWS": ALICE}, ALICE, [], False),
    ({"AWS": [BOB, ALICE]}, ALICE, IDENTITY_ALLOWS, True),
    ({"AWS": ALICE}, BOB, IDENTITY_ALLOWS, False),
    ({"AWS": "arn:aws:iam::111111111111:root"}, ALICE, IDENTITY_ALLOWS, True),  # the account: any of its users
    ({"AWS": "111111111111"}, ALICE, IDENTITY_ALLOWS, True),
    ({"AWS": "arn:aws:iam::333333333333:root"}, ALICE, IDENTITY_ALLOWS, False),
    ({"AWS": "*"}, ALICE, IDENTITY_ALLOWS, True),
    ("*", ALICE, [], False),
    ({"Service": "ec2.amazonaws.com"}, ALICE, IDENTITY_ALLOWS, False),
])
def test_cross_account_principals(principal: Any, caller: str, identity: list[Any], expected: bool) -> None:
    request = user_assumes(caller, ROLE, at=T0)
    assert may_assume(trust(principal), identity, request).allowed is expected


def test_same_account_trust_naming_the_user_suffices_naming_the_account_does_not() -> None:
    request = user_assumes(ALICE, LOCAL_ROLE, at=T0)
    assert may_assume(trust({"AWS": ALICE}), [], request).allowed
    by_account = may_assume(trust({"AWS": "arn:aws:iam::111111111111:root"}), [], request)
    assert by_account.outcome is Outcome.IMPLICIT_DENY and "account" in by_account.reason
    identity = [document({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": LOCAL_ROLE})]
    assert may_assume(trust({"AWS": "arn:aws:iam::111111111111:root"}), identity, request).allowed
    # an explicit deny in the caller's own policies beats even a trust naming them
    deny = [document({"Sid": "No", "Effect": "Deny", "Action": "sts:AssumeRole", "Resource": "*"})]
    refused = may_assume(trust({"AWS": ALICE}), deny, request)
    assert refused.outcome is Outcome.EXPLICIT_DENY and refused.sid == "No"


def test_a_role_arn_admits_its_sessions_and_a_session_arn_only_itself() -> None:
    carol = session_calls(SSO_ROLE, SSO_ID, "carol@example.com", issued_at=T0, at=T0,
                          action="sts:AssumeRole", resource=ROLE)
    dave = session_calls(SSO_ROLE, SSO_ID, "dave@example.com", issued_at=T0, at=T0,
                         action="sts:AssumeRole", resource=ROLE)
    assert carol.principal_arn == ("arn:aws:sts::111111111111:assumed-role/"
                                   "AWSReservedSSO_Dev_0123456789abcdef/carol@example.com")
    assert may_assume(trust({"AWS": SSO_ROLE}), IDENTITY_ALLOWS, carol)
    assert may_assume(trust({"AWS": SSO_ROLE}), IDENTITY_ALLOWS, dave)  # the role admits everyone using it
    only_carol = trust({"AWS": session_arn(SSO_ROLE, "carol@example.com")})
    assert may_assume(only_carol, IDENTITY_ALLOWS, carol)
    assert not may_assume(only_carol, IDENTITY_ALLOWS, dave)


def test_not_principal() -> None:
    deny_others = {"Sid": "OnlyAlice", "Effect": "Deny", "NotPrincipal": {"AWS": ALICE}, "Action": "sts:AssumeRole"}
    policy = document(trust({"AWS": "*"})["Statement"][0], deny_others)
    assert may_assume(policy, IDENTITY_ALLOWS, user_assumes(ALICE, ROLE, at=T0))
    assert may_assume(policy, IDENTITY_ALLOWS, user_assumes(BOB, ROLE, at=T0)).sid == "OnlyAlice"


def test_session_may_wants_a_session() -> None:
    with pytest.raises(ValueError, match="session"):
        session_may([], user_assumes(ALICE, ROLE, at=T0))


def test_decision_is_truthy_only_when_allowed() -> None:
    assert Decision(Outcome.ALLOW) and not Decision(Outcome.EXPLICIT_DENY) and not Decision(Outcome.IMPLICIT_DENY)


# ---- the statements Keyturn's core builds ----------------------------------------------------------------
EXPIRY = T0 + timedelta(hours=1)
HAS_PIN = "pin" in {f.name for f in fields(Lease)}


def alice_trust() -> dict[str, Any]:
    return document(trust_statement(Lease(key=ALICE, expires_at=EXPIRY, session_name="alice")))


@pytest.mark.parametrize(("caller", "session", "at", "expected"), [
    (ALICE, "alice", EXPIRY - timedelta(seconds=1), True),
    (ALICE, "alice", EXPIRY, False),  # DateLessThan: refused at the expiry second
    (ALICE, "alice", EXPIRY + timedelta(days=1), False),
    (ALICE, "other", EXPIRY - timedelta(seconds=1), False),
    (ALICE, None, EXPIRY - timedelta(seconds=1), False),  # no session name, no entry
    (BOB, "alice", EXPIRY - timedelta(seconds=1), False),  # bob calling himself alice
])
def test_trust_statement_admits_alice_until_expiry(caller: str, session: str | None, at: datetime,
                                                   expected: bool) -> None:
    decision = may_assume(alice_trust(), IDENTITY_ALLOWS, user_assumes(caller, ROLE, at=at, session_name=session))
    assert decision.allowed is expected, str(decision)


def test_trust_statement_with_mfa_wants_mfa() -> None:
    policy = document(trust_statement(Lease(key=ALICE, expires_at=EXPIRY, session_name="alice", require_mfa=True)))
    before = EXPIRY - timedelta(minutes=1)
    assert may_assume(policy, IDENTITY_ALLOWS, user_assumes(ALICE, ROLE, at=before, session_name="alice", mfa=True))
    assert not may_assume(policy, IDENTITY_ALLOWS,
                          user_assumes(ALICE, ROLE, at=before, session_name="alice", mfa=False))
    assert not may_assume(policy, IDENTITY_ALLOWS, user_assumes(ALICE, ROLE, at=before, session_name="alice"))


@pytest.mark.skipif(not HAS_PIN, reason="Lease has no pin in this tree")
def test_sso_trust_statement_admits_only_carols_session_of_the_permission_set_role() -> None:
    from service.core.identity import Pin

    pin = Pin(principals=(SSO_ROLE,), session_name="carol@example.com", user_ids=(f"{SSO_ID}:carol@example.com",))
    pinned: dict[str, Any] = {"pin": pin}  # a keyword only newer trees' Lease has
    lease = Lease(key="sso_user:carol@example.com", expires_at=EXPIRY, **pinned)
    policy = document(trust_statement(lease))
    before = EXPIRY - timedelta(seconds=1)

    def attempt(session: str, new_name: str | None = None, at: datetime = before, role_id: str = SSO_ID) -> Decision:
        from tests.support.iam_eval import session_assumes

        request = session_assumes(SSO_ROLE, role_id, session, ROLE, at=at, session_name=new_name)
        return may_assume(policy, IDENTITY_ALLOWS, request)

    assert attempt("carol@example.com")
    assert not attempt("carol@example.com", at=EXPIRY)
    assert not attempt("dave@example.com")  # same permission-set role, another person
    assert not attempt("dave@example.com", new_name="carol@example.com")  # naming the new session carol
    assert not attempt("carol@example.com", new_name="other")
    assert not attempt("carol@example.com", role_id="AROAANOTHERROLE00001")  # a recreated role: new unique id


def test_assume_statement_on_a_users_policy() -> None:
    policy = document(assume_statement(Lease(key=ROLE, expires_at=EXPIRY)))
    assert evaluate([policy], user_assumes(ALICE, ROLE, at=EXPIRY - timedelta(seconds=1))).allowed
    assert not evaluate([policy], user_assumes(ALICE, ROLE, at=EXPIRY)).allowed
    assert not evaluate([policy], user_assumes(ALICE, ROLE.replace("Admin", "Other"), at=T0)).allowed
    # the trust policy naming the account, the user's policy carries the grant
    role_trust = trust({"AWS": "arn:aws:iam::111111111111:root"})
    assert may_assume(role_trust, [policy], user_assumes(ALICE, ROLE, at=T0))
    assert not may_assume(role_trust, [policy], user_assumes(ALICE, ROLE, at=EXPIRY))


def test_session_deny_cuts_alices_old_sessions_only() -> None:
    cut_at = T0 + timedelta(minutes=30)
    permissions = document({"Sid": "Work", "Effect": "Allow", "Action": "*", "Resource": "*"},
                           pack_statement(0, [PersonCut("alice", f"{TARGET_ID}:alice", cut_at, False)]))

    def call(session: str, issued_at: datetime) -> Decision:
        request = session_calls(ROLE, TARGET_ID, session, issued_at=issued_at, at=cut_at + timedelta(minutes=5))
        return session_may([permissions], request)

    old = call("alice", cut_at - timedelta(seconds=1))
    assert old.outcome is Outcome.EXPLICIT_DENY and old.sid and old.sid.startswith("KeyturnRevoke")
    assert call("alice", cut_at).allowed  # issued at the cut second: a new grant's session
    assert call("bob", cut_at - timedelta(minutes=10)).allowed
    assert call("alice2", cut_at - timedelta(minutes=10)).allowed


def test_an_armed_cut_takes_the_expiry_second_and_spares_later_sessions() -> None:
    expiry = T0 + timedelta(minutes=30)
    permissions = document({"Sid": "Work", "Effect": "Allow", "Action": "*", "Resource": "*"},
                           armed_statement(PersonCut("alice", f"{TARGET_ID}:alice", expiry, True)))

    def call(session: str, issued_at: datetime, at: datetime) -> Decision:
        return session_may([permissions], session_calls(ROLE, TARGET_ID, session, issued_at=issued_at, at=at))

    assert call("alice", T0, expiry - timedelta(seconds=1)).allowed
    assert call("alice", T0, expiry).outcome is Outcome.EXPLICIT_DENY
    assert call("alice", expiry, expiry + timedelta(seconds=5)).allowed  # a later grant's session
    assert call("bob", T0, expiry).allowed
