"""People found by email (settings.email_lookup, opt-in), over the fake Slack Web API and moto server's
identitystore: exactly one Identity Store user with the Slack profile email becomes an sso_user pinned like
any other; ambiguity, absence, deactivated or bot users, another workspace and a lookup past max_age that
cannot be repeated are refused, never guessed. Grants through a trust_policy role on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from slack_sdk import WebClient

from service.aws.clients import AwsClients
from service.catalog import Catalog, parse_catalog
from service.core.identity import IdentityKind
from service.core.rules import Reason
from service.core.states import GrantState
from service.operations.context import Context, RecordingDispatcher, Refused
from service.operations.granting import target_of
from service.people import EmailResolver, people_for
from service.settings import Settings
from tests.conftest import SLACK_BOT_TOKEN
from tests.integration.helpers_sync import World, make_world, owned, raw_catalog
from tests.support import iam_eval
from tests.support.slack_fake import FakeSlack

STORE = "d-0123456789"  # moto makes an identity store on first use
FRANK, GRACE, HEIDI, CAT = "U0FRANK01", "U0GRACE01", "U0HEIDI01", "U0CATSSO1"
MAX_AGE = timedelta(minutes=10)


def _raw(*, lookup: bool = True, max_entries: int = 10_000) -> dict[str, Any]:
    raw = raw_catalog(identity_center={"instance_arn": boto3.client("sso-admin").list_instances()["Instances"][0][
        "InstanceArn"], "identity_store_id": STORE, "region": "us-east-1"})
    # A catalogue sso_user with the same permission set: the role exists in IAM (seeded) and her session must
    # stay shut out of frank's statement.
    raw["identities"] = [{"slack": CAT, "kind": "sso_user", "user_name": "cat@example.com",
                          "permission_sets": [{"account": "moto", "permission_set": "Admin"}]}]
    if lookup:
        raw["settings"]["email_lookup"] = {"permission_sets": [{"account": "moto", "permission_set": "Admin"}],
                                           "max_age": "10m", "max_entries": max_entries}
    return raw


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def store(moto_reset: str) -> Any:
    return boto3.client("identitystore")


def add_user(store: Any, user_name: str, *emails: str) -> str:
    return str(store.create_user(
        IdentityStoreId=STORE, UserName=user_name, DisplayName=user_name, Name={"GivenName": "G", "FamilyName": "F"},
        Emails=[{"Value": e, "Type": "work", "Primary": i == 0} for i, e in enumerate(emails)])["UserId"])


@pytest.fixture
def slack(slack_fake: FakeSlack) -> FakeSlack:
    for user, name in ((FRANK, "frank"), (GRACE, "grace"), (HEIDI, "heidi")):
        slack_fake.users[user] = {"name": name}  # profile.email: <name>@example.com
    return slack_fake


def resolver(catalog: Catalog, slack: FakeSlack, clock: Clock | None = None,
             team_ids: tuple[str, ...] = ()) -> EmailResolver:
    client = WebClient(token=SLACK_BOT_TOKEN, base_url=slack.base_url, timeout=5)
    kwargs: dict[str, Any] = {"now": clock} if clock else {}
    return EmailResolver(catalog=lambda: catalog, slack=client, identity_store=AwsClients().identitystore,
                         team_ids=team_ids, **kwargs)


def lookups(slack: FakeSlack, user: str | None = None) -> int:
    return len([c for c in slack.calls("users.info") if user is None or c.params.get("user") == user])


# ---- resolving ----------------------------------------------------------------------------------------
def test_one_user_with_the_email_is_an_sso_user_with_the_configured_permission_sets(store: Any,
                                                                                  slack: FakeSlack) -> None:
    add_user(store, "frank.sso", "Frank@Example.COM")  # matched case-insensitively
    add_user(store, "someone-else", "other@example.com")
    catalog = parse_catalog(_raw())
    identity = resolver(catalog, slack)(FRANK)
    assert identity is not None
    assert (identity.kind, identity.user_name, identity.session_name) == (IdentityKind.SSO_USER, "frank.sso",
                                                                          "frank.sso")
    assert identity.slack_id == FRANK
    assert catalog.email_lookup is not None and identity.roles == catalog.email_lookup.roles
    assert slack.calls("users.info")[0].token == SLACK_BOT_TOKEN


def test_two_users_with_one_email_are_refused(store: Any, slack: FakeSlack) -> None:
    add_user(store, "frank.a", "frank@example.com")
    add_user(store, "frank.b", "backup@example.com", "FRANK@example.com")
    assert resolver(parse_catalog(_raw()), slack)(FRANK) is None


def test_no_user_with_the_email_is_refused(store: Any, slack: FakeSlack) -> None:
    add_user(store, "grace.sso", "grace@example.com")
    assert resolver(parse_catalog(_raw()), slack)(FRANK) is None


def test_the_catalogue_wins_and_is_asked_first(store: Any, slack: FakeSlack) -> None:
    add_user(store, "impostor", "user-u0catsso1@example.com")  # cat's Slack profile email
    catalog = parse_catalog(_raw())
    identity = resolver(catalog, slack)(CAT)
    assert identity == catalog.identities[CAT]
    assert lookups(slack) == 0


def test_a_user_name_that_is_a_catalogue_persons_session_name_is_refused(store: Any, slack: FakeSlack) -> None:
    add_user(store, "Cat@example.com", "frank@example.com")  # same session name as cat, case aside
    assert resolver(parse_catalog(_raw()), slack)(FRANK) is None


def test_a_user_name_that_cannot_be_a_session_name_is_refused(store: Any, slack: FakeSlack) -> None:
    add_user(store, "frank smith", "frank@example.com")
    assert resolver(parse_catalog(_raw()), slack)(FRANK) is None


@pytest.mark.parametrize("profile", [{"deleted": True}, {"is_bot": True}, {"is_app_user": True},
                                     {"profile": {"real_name": "Frank"}}, {"team_id": "T0OTHER01"}])
def test_deactivated_bot_emailless_or_foreign_slack_users_are_refused(store: Any, slack: FakeSlack,
                                                                     profile: dict[str, Any]) -> None:
    add_user(store, "frank.sso", "frank@example.com")
    slack.users[FRANK] = {"name": "frank", **profile}
    assert resolver(parse_catalog(_raw()), slack, team_ids=("T0TEAM001",))(FRANK) is None
    assert lookups(slack, FRANK) == 1


def test_the_served_team_is_accepted(store: Any, slack: FakeSlack) -> None:
    add_user(store, "frank.sso", "frank@example.com")
    assert resolver(parse_catalog(_raw()), slack, team_ids=("T0TEAM001",))(FRANK) is not None


def test_an_unknown_slack_user_is_refused(store: Any, slack: FakeSlack) -> None:
    slack.on("users.info", {"ok": False, "error": "user_not_found"})
    assert resolver(parse_catalog(_raw()), slack)(FRANK) is None


def test_setting_off_leaves_an_unmapped_user_unmapped_without_asking_slack(store: Any, slack: FakeSlack) -> None:
    add_user(store, "frank.sso", "frank@example.com")
    catalog = parse_catalog(_raw(lookup=False))
    assert resolver(catalog, slack)(FRANK) is None
    ctx = Context(store=None, catalog=catalog, dispatch=RecordingDispatcher())  # type: ignore[arg-type]
    assert people_for(ctx, settings=Settings(), clients=AwsClients()) is None
    assert ctx.identity_of(FRANK) is None
    assert lookups(slack) == 0


def test_the_composition_root_plugs_the_resolver_in_when_on(store: Any, slack: FakeSlack) -> None:
    add_user(store, "frank.sso", "frank@example.com")
    ctx = Context(store=None, catalog=parse_catalog(_raw()), dispatch=RecordingDispatcher())  # type: ignore[arg-type]
    ctx.people = people_for(ctx, settings=Settings(slack_bot_token=SLACK_BOT_TOKEN, slack_api_url=slack.base_url),
                            clients=AwsClients())
    identity = ctx.identity_of(FRANK)
    assert identity is not None and identity.user_name == "frank.sso"
    assert ctx.roles_for(FRANK)  # a person found by email may ask for roles
    assert ctx.identity_of(GRACE) is None  # no such Identity Store user


# ---- the cache ----------------------------------------------------------------------------------------
def test_within_max_age_no_slack_call_past_it_looked_up_again(store: Any, slack: FakeSlack) -> None:
    add_user(store, "frank.sso", "frank@example.com")
    clock = Clock()
    people = resolver(parse_catalog(_raw()), slack, clock)
    assert people(FRANK) is not None and people(GRACE) is None  # a refusal is remembered too
    clock.at += MAX_AGE - timedelta(seconds=1)
    assert people(FRANK) is not None and people(GRACE) is None
    assert lookups(slack, FRANK) == lookups(slack, GRACE) == 1
    clock.at += timedelta(seconds=1)
    add_user(store, "grace.sso", "grace@example.com")  # she has joined since: seen once max_age is over
    assert people(FRANK) is not None and people(GRACE) is not None
    assert lookups(slack, FRANK) == lookups(slack, GRACE) == 2


@pytest.mark.parametrize("fault", [{"status": 500}, {"error": "fatal_error"}, {"error": "missing_scope"}])
def test_a_slack_error_past_max_age_refuses_even_with_a_remembered_person(store: Any, slack: FakeSlack,
                                                                         fault: dict[str, Any]) -> None:
    add_user(store, "frank.sso", "frank@example.com")
    clock = Clock()
    people = resolver(parse_catalog(_raw()), slack, clock)
    assert people(FRANK) is not None
    clock.at += MAX_AGE
    slack.fail_next("users.info", **fault)
    assert people(FRANK) is None  # never the stale answer
    assert people(FRANK) is not None  # an error is not remembered: asked again, and Slack answers
    assert lookups(slack, FRANK) == 3


def test_an_identity_store_error_refuses(store: Any, slack: FakeSlack) -> None:
    add_user(store, "frank.sso", "frank@example.com")
    raw = _raw()
    raw["settings"]["identity_center"]["identity_store_id"] = "d-9999999999"  # moto: no such store
    assert resolver(parse_catalog(raw), slack)(FRANK) is None


def test_a_clock_that_goes_back_does_not_stretch_a_lookup(store: Any, slack: FakeSlack) -> None:
    add_user(store, "frank.sso", "frank@example.com")
    clock = Clock()
    people = resolver(parse_catalog(_raw()), slack, clock)
    assert people(FRANK) is not None
    clock.at -= timedelta(hours=1)
    assert people(FRANK) is not None
    assert lookups(slack, FRANK) == 2


def test_the_cache_is_bounded_least_recently_used_first(store: Any, slack: FakeSlack) -> None:
    people = resolver(parse_catalog(_raw(max_entries=2)), slack, Clock())
    for user in (FRANK, GRACE, FRANK, HEIDI):  # grace is the least recently used when heidi comes
        people(user)
    assert people.remembered == 2
    people(FRANK)
    people(GRACE)
    assert lookups(slack, FRANK) == 1 and lookups(slack, GRACE) == 2


def test_concurrent_callers_all_get_the_one_person(store: Any, slack: FakeSlack) -> None:
    add_user(store, "frank.sso", "frank@example.com")
    people = resolver(parse_catalog(_raw()), slack)
    seen: list[Any] = []
    threads = [threading.Thread(target=lambda: seen.append(people(FRANK))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(seen) == 8 and {s.user_name if s else None for s in seen} == {"frank.sso"}
    assert people.remembered == 1


# ---- filing, approving and syncing (SQLite and PostgreSQL) --------------------------------------------
@pytest.fixture
def world(db_url: str, store: Any, slack: FakeSlack) -> Iterator[tuple[World, EmailResolver, Clock]]:
    w = make_world(db_url, _raw())
    clock = Clock()
    clock.at = w.clock()
    people = resolver(w.catalog, slack, clock)
    w.ctx.people = people
    yield w, people, clock
    w.close()


def _frank_active(w: World, people: EmailResolver, store: Any) -> tuple[int, str]:
    """frank, found by email, files for ops-admin, is approved and synced: (grant id, target key)."""
    add_user(store, "frank.sso", "frank@example.com")
    identity = people(FRANK)
    assert identity is not None
    grant_id = w.grant(FRANK, "ops-admin")
    key = target_of(w.catalog.roles["ops-admin"], identity)[0].key
    w.sync(target_key=key)
    assert w.state(grant_id) == GrantState.ACTIVE.value
    return grant_id, key


def test_found_by_email_files_and_is_pinned_like_any_sso_user(world: tuple[World, EmailResolver, Clock],
                                                              store: Any) -> None:
    w, people, _ = world
    grant_id, _ = _frank_active(w, people, store)
    trust = w.trust("ops-admin")
    [statement] = owned(trust)
    [ps] = [r for r in w.iam.list_roles(PathPrefix="/aws-reserved/sso.amazonaws.com/")["Roles"]
            if r["RoleName"].startswith("AWSReservedSSO_Admin_")]
    assert statement["Principal"] == {"AWS": ps["Arn"]}
    assert statement["Condition"]["StringEquals"] == {"sts:RoleSessionName": "frank.sso",
                                                      "aws:userid": f"{ps['RoleId']}:frank.sso"}
    target = w.iam.get_role(RoleName=w.catalog.roles["ops-admin"].role_name)["Role"]["Arn"]
    at = w.row(grant_id).expires_at - timedelta(seconds=1)

    def may(session: str) -> bool:
        request = iam_eval.session_assumes(ps["Arn"], ps["RoleId"], session, target, at=at)
        return iam_eval.may_assume(trust, [], request).allowed

    assert may("frank.sso")
    assert not may("cat@example.com")  # the catalogue's sso_user signs in with the same permission set


def test_unresolvable_people_cannot_file(world: tuple[World, EmailResolver, Clock], store: Any) -> None:
    w, _, _ = world
    add_user(store, "frank.a", "frank@example.com")
    add_user(store, "frank.b", "frank@example.com")
    for user in (FRANK, GRACE):  # ambiguous, then nobody
        with pytest.raises(Refused) as info:
            w.request(user, "ops-admin")
        assert info.value.reason is Reason.NO_PRINCIPAL


def test_a_failed_lookup_past_max_age_ends_the_live_grant(world: tuple[World, EmailResolver, Clock], store: Any,
                                                          slack: FakeSlack) -> None:
    """Fail closed: when the person can no longer be confirmed, the next sync ends their access."""
    w, people, clock = world
    grant_id, key = _frank_active(w, people, store)
    clock.at += MAX_AGE
    slack.fail_next("users.info", error="fatal_error", times=5)
    w.sync(target_key=key)
    assert w.state(grant_id) != GrantState.ACTIVE.value
    assert owned(w.trust("ops-admin")) == []
