"""Session cuts, pure: who gets which deny, and how they are placed on pages without ever moving."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from service.core.cuts import (
    PAGE_OVERHEAD,
    PersonCut,
    armed_sid,
    armed_statement,
    desired_cuts,
    pack_sid,
    pack_statement,
    place,
    size,
)
from service.core.policy import is_owned

NOW = datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def uid(name: str) -> str:
    return f"AROAEXAMPLEROLEID0001:{name}"


def test_live_access_is_armed_at_the_latest_expiry_and_wins_over_an_earlier_end() -> None:
    cuts = desired_cuts([
        ("alice", uid("alice"), NOW + HOUR, True),
        ("alice", uid("alice"), NOW + 2 * HOUR, True),  # overlapping grants: one lease, the later expiry
        ("alice", uid("alice"), NOW - HOUR / 2, False),  # an earlier grant that ended: her live access wins
        ("bob", uid("bob"), NOW - HOUR / 2, False),
        ("bob", uid("bob"), NOW - HOUR / 4, False),  # the later end is kept
        ("carol", uid("carol"), NOW - 2 * HOUR, False),  # ended longer ago than any session lasts: dropped
    ], NOW, HOUR)
    assert cuts == [PersonCut("alice", uid("alice"), NOW + 2 * HOUR, True),
                    PersonCut("bob", uid("bob"), NOW - HOUR / 4, False)]


def test_an_armed_cut_takes_the_second_of_the_expiry() -> None:
    s = armed_statement(PersonCut("alice", uid("alice"), NOW, True))
    assert is_owned(s) and s["Sid"] == armed_sid("alice")
    assert s["Condition"] == {"StringEquals": {"aws:userid": uid("alice")},
                              "DateGreaterThanEquals": {"aws:CurrentTime": "2026-12-02T10:00:00Z"},
                              "DateLessThan": {"aws:TokenIssueTime": "2026-12-02T10:00:00Z"}}


def test_a_pack_denies_sessions_issued_before_the_latest_end_of_its_members() -> None:
    s = pack_statement(2, [PersonCut("b", uid("b"), NOW - HOUR, False), PersonCut("a", uid("a"), NOW, False)])
    assert is_owned(s) and s["Sid"] == pack_sid(2)
    assert s["Condition"] == {"StringEquals": {"aws:userid": [uid("a"), uid("b")]},
                              "DateLessThan": {"aws:TokenIssueTime": "2026-12-02T10:00:00Z"}}


def _cuts(live: int, ended: int) -> list[PersonCut]:
    return [PersonCut(f"live{i}", uid(f"live{i}@example.com"), NOW + HOUR, True) for i in range(live)] + \
        [PersonCut(f"ended{i}", uid(f"ended{i}@example.com"), NOW - HOUR / 2, False) for i in range(ended)]


def test_cuts_stay_on_their_page_and_new_ones_fill_the_first_with_room() -> None:
    capacity = {0: 2000, 1: 2000}
    first = place(_cuts(5, 3), {}, capacity)
    assert not first.unplaced
    # Someone new arrives: nobody already placed moves.
    second = place(_cuts(6, 3), first.pages, capacity)
    for page, statements in first.pages.items():
        before = {s["Sid"] for s in statements if s["Sid"] != pack_sid(page)}
        after = {s["Sid"] for s in second.pages[page]}
        assert before <= after, page


def test_over_capacity_the_cut_is_reported_and_nothing_placed_is_pushed_out() -> None:
    one = size(armed_statement(PersonCut("x" * 5, uid("x" * 20), NOW, True)))
    capacity = {0: PAGE_OVERHEAD + 3 * one}
    placement = place(_cuts(5, 0), {}, capacity)
    assert len(placement.unplaced) == 2
    assert sum(len(s) for s in placement.pages.values()) == 3


def test_the_arithmetic_of_the_shipped_layout_holds_200_ended_and_40_live_with_room() -> None:
    """The README's numbers: the inline page (10,240 less nothing else) and four managed pages of 6,144."""
    capacity = {0: 10240, 1: 6144, 2: 6144, 3: 6144, 4: 6144}
    placement = place(_cuts(40, 200), {}, capacity)
    assert not placement.unplaced
    for page, statements in placement.pages.items():
        assert PAGE_OVERHEAD + sum(size(s) for s in statements) <= capacity[page]
    more = place(_cuts(60, 300), {}, capacity)  # the room to spare
    assert not more.unplaced


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.booleans(), st.integers(-50, 50)), max_size=40),
       st.lists(st.integers(200, 3000), min_size=1, max_size=4))
def test_every_cut_is_placed_once_or_reported_and_no_page_overflows(
    people: list[tuple[int, bool, int]], caps: list[int]
) -> None:
    capacity = dict(enumerate(caps))
    cuts = desired_cuts([(f"p{n}", uid(f"p{n}"), NOW + timedelta(minutes=m), live) for n, live, m in people],
                        NOW, HOUR)
    placement = place(cuts, {}, capacity)
    seen: list[str] = []
    for page, statements in placement.pages.items():
        assert PAGE_OVERHEAD + sum(size(s) for s in statements) <= capacity[page] or not statements
        for s in statements:
            ids = s["Condition"]["StringEquals"]["aws:userid"]
            seen += [ids] if isinstance(ids, str) else ids
    placed = sorted(seen)
    assert placed == sorted({c.user_id for c in cuts} - {c.user_id for c in placement.unplaced})


def test_cuts_are_keyed_by_the_person_not_the_name() -> None:
    """alice in one account ended; `alice` in another account still has live access. Keyed by name, the
    live one hid the cut of the ended one (the catalogue refuses such a pair; the cut never merges them)."""
    a, b = "arn:aws:iam::111111111111:user/alice", "arn:aws:iam::222222222222:user/alice"
    cuts = desired_cuts([(a, uid("alice"), NOW - HOUR / 4, False), (b, uid("alice"), NOW + HOUR, True)], NOW, HOUR)
    assert {(c.person, c.live) for c in cuts} == {(a, False), (b, True)}


def test_an_expiry_needs_no_write_while_there_is_room() -> None:
    """At an expiry the armed cut already denies from that second: it is left as it is."""
    capacity = {0: 3000}
    live = place([PersonCut("alice", uid("alice"), NOW, True)], {}, capacity)
    expired = place(desired_cuts([("alice", uid("alice"), NOW, False)], NOW, HOUR), live.pages, capacity)
    assert expired.pages == live.pages
    # "I'm done" before the expiry: the cut moves to the end, into a pack.
    done = place(desired_cuts([("alice", uid("alice"), NOW - HOUR / 2, False)], NOW, HOUR), live.pages, capacity)
    assert [s["Sid"] for s in done.pages[0]] == [pack_sid(0)]


def test_a_grant_never_in_iam_gets_no_cut_written() -> None:
    cuts = desired_cuts([("ghost", uid("ghost"), NOW - HOUR / 4, False, False)], NOW, HOUR)
    assert place(cuts, {}, {0: 3000}).pages == {0: []}


def test_group_access_is_cut_from_the_expiry_whatever_the_issue_time() -> None:
    [cut] = desired_cuts([("alice", uid("alice"), NOW, True, True, True)], NOW - HOUR, HOUR)
    assert cut.unbounded and "DateLessThan" not in armed_statement(cut)["Condition"]
