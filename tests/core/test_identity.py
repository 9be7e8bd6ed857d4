"""The pin of each kind of identity: what an owned statement needs to admit one person."""

from __future__ import annotations

import pytest

from service.core.identity import SESSION_NAME, Identity, IdentityKind, ResolvedRole, SignInRole, pin_for

PS = ResolvedRole("arn:aws:iam::111111111111:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Admin_0a", "AROAPS")
RO = ResolvedRole("arn:aws:iam::111111111111:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Read_0b", "AROARO")


def test_iam_user_pin_is_the_user_and_its_name() -> None:
    alice = Identity("U0ALICE01", IdentityKind.IAM_USER, "alice", arn="arn:aws:iam::111111111111:user/team/alice")
    pin = pin_for(alice)
    assert pin.principals == ("arn:aws:iam::111111111111:user/team/alice",)
    assert (pin.session_name, pin.user_name, pin.user_ids) == ("alice", "alice", ())
    assert alice.key == "arn:aws:iam::111111111111:user/team/alice"


def test_sso_user_pin_names_every_sign_in_role_and_their_session_of_each() -> None:
    carol = Identity("U0CAROL01", IdentityKind.SSO_USER, "carol@example.com", user_name="carol@example.com",
                     roles=(SignInRole("111111111111", permission_set="Read"),
                            SignInRole("111111111111", permission_set="Admin")))
    pin = pin_for(carol, (RO, PS))
    assert pin.principals == (PS.arn, RO.arn)
    assert pin.user_ids == ("AROAPS:carol@example.com", "AROARO:carol@example.com")
    assert carol.key == "sso_user:carol@example.com"
    with pytest.raises(ValueError):
        pin_for(carol)  # nothing resolved: nothing may be written for her


@pytest.mark.parametrize(("name", "ok"), [
    ("alice", True), ("al", True), ("a", False), ("x" * 64, True), ("x" * 65, False), ("ålice", False),
    ("alice\n", False), ("carol@example.com", True), ("a b", False), ("a/b", False),
])
def test_session_names_are_iams_set(name: str, ok: bool) -> None:
    assert (SESSION_NAME.fullmatch(name) is not None) is ok
