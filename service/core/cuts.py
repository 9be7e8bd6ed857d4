"""Session cuts: the denies on a target role that end people's role sessions at the second their access
ends, written while the access is still live, so IAM itself refuses open sessions then with no worker.

Two kinds of deny, both on `aws:userid` = `<target role unique id>:<session name>`, which STS stamps on
every session of the role opened under that name:

* **armed** (a person with live access, lease expiry E): deny sessions issued before E, from E on
  (`DateGreaterThanEquals aws:CurrentTime E` and `DateLessThan aws:TokenIssueTime E`). At the second the
  trust statement's `DateLessThan aws:CurrentTime E` stops new sessions, this stops the open ones.
  A session issued after E (a later grant) is never caught. An extension moves E before the old E passes;
  if that write cannot be made in time, the old E holds: access ends at the older time, never later.
* **ended** (people whose access ended less than the role's MaxSessionDuration ago): packed, many people
  in one statement, denying every session issued before the latest end in the pack. A packed person has
  no live access, so any session of theirs predates their own latest end, which is at most the pack's.

The statements are spread over pages (the role's inline policy and Keyturn's managed policies attached to
it), each with its size quota. A statement stays on the page it is on (so no cut ever moves between
two writes and is missing in between); new ones go to the first page with room; a cut that fits nowhere
is reported, and the grant it belongs to is refused before it is given any access.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.core.policy import REVOKE_SID_PREFIX, Statement, iso_z

# What a page's document costs besides its statements: {"Version":"2012-10-17","Statement":[…]} and commas.
PAGE_OVERHEAD = 40


@dataclass(frozen=True)
class PersonCut:
    person: str  # the identity key: one cut per person
    user_id: str  # "<target role unique id>:<session name>"
    at: datetime  # armed: the lease's expiry; ended: when the access ended
    live: bool
    # Ended: whether IAM ever held the access. One that never got there (expired before any sync) needs no
    # cut written; it keeps one already in IAM (armed before a write whose outcome was lost).
    confirmed: bool = True
    # Access through a group membership: the operator's group policy does not expire, so with every worker
    # down a new AssumeRole still succeeds after the expiry. The armed cut then denies all of the person's
    # sessions from the expiry, not only those issued before it (a later grant re-arms it before it starts).
    unbounded: bool = False


def size(statement: Statement) -> int:
    return len(json.dumps(statement, separators=(",", ":"))) + 1  # and its comma


def armed_sid(person: str) -> str:
    return REVOKE_SID_PREFIX + hashlib.sha256(person.encode()).hexdigest()[:20].upper()


def pack_sid(page: int) -> str:
    return REVOKE_SID_PREFIX + hashlib.sha256(f"ended-pack:{page}".encode()).hexdigest()[:20].upper()


def armed_statement(cut: PersonCut) -> Statement:
    moment = iso_z(cut.at)
    condition: dict[str, Any] = {"StringEquals": {"aws:userid": cut.user_id},
                                 "DateGreaterThanEquals": {"aws:CurrentTime": moment}}
    if not cut.unbounded:
        condition["DateLessThan"] = {"aws:TokenIssueTime": moment}
    return {"Sid": armed_sid(cut.person), "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": condition}


def pack_statement(page: int, members: Sequence[PersonCut]) -> Statement:
    ids = sorted({m.user_id for m in members})
    return {
        "Sid": pack_sid(page), "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {"StringEquals": {"aws:userid": ids[0] if len(ids) == 1 else ids},
                      "DateLessThan": {"aws:TokenIssueTime": iso_z(max(m.at for m in members))}},
    }


def _user_ids(statement: Statement) -> list[str]:
    value = (statement.get("Condition") or {}).get("StringEquals", {}).get("aws:userid", [])
    return [value] if isinstance(value, str) else list(value)


def desired_cuts(ends: Iterable[tuple[Any, ...]], now: datetime, max_session: timedelta) -> list[PersonCut]:
    """One cut per person from their grants on the role: (person, user id, expiry or end, live[, confirmed[,
    unbounded]]).

    Live access wins (an armed cut at the latest live expiry: overlapping grants are one lease); with none
    live, the latest end, kept while a session issued before it could still be open."""
    live: dict[str, PersonCut] = {}
    ended: dict[str, PersonCut] = {}
    for person, user_id, at, is_live, *rest in ends:
        confirmed = bool(rest[0]) if rest else True
        unbounded = bool(rest[1]) if len(rest) > 1 else False
        book = live if is_live else ended
        have = book.get(person)
        confirmed = confirmed or bool(have and have.confirmed)
        unbounded = unbounded or bool(have and have.unbounded)
        latest = at if have is None or at > have.at else have.at
        book[person] = PersonCut(person, user_id, latest, is_live, confirmed, unbounded)
    out = list(live.values())
    out += [c for p, c in ended.items() if p not in live and c.at + max_session > now]
    return sorted(out, key=lambda c: (not c.live, c.person))


@dataclass
class Placement:
    pages: dict[int, list[Statement]] = field(default_factory=dict)
    unplaced: list[PersonCut] = field(default_factory=list)  # over capacity: their grants must be refused


def place(cuts: Sequence[PersonCut], current: Mapping[int, Sequence[Statement]],
          capacity: Mapping[int, int]) -> Placement:
    """Put every cut on a page: where it already is if it is still there, else on the first page with room.

    `current` is what each page holds now (Keyturn's statements only), `capacity` how many characters each
    page may hold (white space not counted). Pages are tried in their numeric order.

    A person whose access simply expired already has the right deny: their armed cut at that expiry. It is
    left as it is (no write at expiry) unless its room is needed, when it is folded into a pack."""
    placed = _place(cuts, current, capacity, keep_expired_armed=True)
    if placed.unplaced:
        placed = _place(cuts, current, capacity, keep_expired_armed=False)
    return placed


def _place(cuts: Sequence[PersonCut], current: Mapping[int, Sequence[Statement]], capacity: Mapping[int, int],
           *, keep_expired_armed: bool) -> Placement:
    where_armed: dict[str, int] = {}
    where_packed: dict[str, int] = {}
    armed_now: set[str] = set()  # canonical armed statements as they are
    for page, statements in current.items():
        for s in statements:
            sid = str(s.get("Sid"))
            if sid == pack_sid(page):
                for uid in _user_ids(s):
                    where_packed[uid] = page
            else:
                where_armed[sid] = page
                armed_now.add(json.dumps(s, sort_keys=True))
    armed: dict[int, list[PersonCut]] = {p: [] for p in capacity}  # shown as armed statements
    packed: dict[int, list[PersonCut]] = {p: [] for p in capacity}
    new: list[PersonCut] = []
    for cut in cuts:
        as_armed = PersonCut(cut.person, cut.user_id, cut.at, True, cut.confirmed, cut.unbounded)
        dormant = not cut.live and keep_expired_armed and \
            json.dumps(armed_statement(as_armed), sort_keys=True) in armed_now
        if cut.live or dormant:
            at = where_armed.get(armed_sid(cut.person))
            book = armed
        else:
            at = where_packed.get(cut.user_id)
            book = packed
        if at is not None and at in capacity:
            book[at].append(as_armed if dormant else cut)
        else:
            new.append(cut)

    def used(page: int, extra_armed: Sequence[PersonCut] = (), extra_packed: Sequence[PersonCut] = ()) -> int:
        members = packed[page] + list(extra_packed)
        total = PAGE_OVERHEAD + sum(size(armed_statement(c)) for c in armed[page] + list(extra_armed))
        return total + (size(pack_statement(page, members)) if members else 0)

    out = Placement()
    for cut in new:
        if not cut.live and not cut.confirmed:
            continue  # never in IAM, and no cut of theirs is there: nothing to cut
        for page in sorted(capacity):
            fits = used(page, [cut], []) if cut.live else used(page, [], [cut])
            if fits <= capacity[page]:
                (armed if cut.live else packed)[page].append(cut)
                break
        else:
            out.unplaced.append(cut)
    for page in sorted(capacity):
        statements = [armed_statement(c) for c in sorted(armed[page], key=lambda c: c.person)]
        if packed[page]:
            statements.append(pack_statement(page, packed[page]))
        out.pages[page] = statements
    return out
