"""Durations as people type them: table-driven parsing and round-trip properties."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("30m", timedelta(minutes=30), id="minutes"),
        pytest.param("2h", timedelta(hours=2), id="hours"),
        pytest.param("1d", timedelta(days=1), id="day"),
        pytest.param("1h30m", timedelta(hours=1, minutes=30), id="compound"),
        pytest.param("90s", timedelta(seconds=90), id="seconds"),
        pytest.param("1w", timedelta(weeks=1), id="week"),
        pytest.param("2H", timedelta(hours=2), id="upper-case-unit"),
        pytest.param(" 1h 30m ", timedelta(minutes=90), id="spaces-between-parts"),
        pytest.param("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4), id="all-units"),
        pytest.param("0h30m", timedelta(minutes=30), id="zero-part-with-positive-total"),
    ],
)
def test_parse_duration_accepts(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("0m", id="zero"),
        pytest.param("0h0m", id="all-zero-parts"),
        pytest.param("2x", id="unknown-unit"),
        pytest.param("h", id="unit-without-number"),
        pytest.param("30", id="number-without-unit"),
        pytest.param("-1h", id="negative"),
        pytest.param("1.5h", id="fraction"),
        pytest.param("1h-", id="trailing-junk"),
        pytest.param("m30", id="unit-first"),
        pytest.param("2 hours", id="spelled-out"),
        pytest.param(30, id="not-a-string"),
    ],
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_duration_error_is_a_value_error_and_quotes_the_input() -> None:
    with pytest.raises(ValueError, match="'2x'"):
        parse_duration("2x")
    with pytest.raises(DurationError, match="longer than zero"):
        parse_duration("0m")


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        pytest.param("30m", "30m", id="already-canonical"),
        pytest.param("1h30m", "1h30m", id="compound-canonical"),
        pytest.param("90s", "1m30s", id="seconds-carry-into-minutes"),
        pytest.param("60m", "1h", id="minutes-carry-into-hours"),
        pytest.param("3600s", "1h", id="seconds-carry-into-hours"),
        pytest.param("24h", "1d", id="hours-carry-into-days"),
        pytest.param("1w", "7d", id="weeks-written-as-days"),
        pytest.param("2H", "2h", id="unit-lower-cased"),
        pytest.param("1d 2h", "1d2h", id="spaces-dropped"),
        pytest.param("0h45m", "45m", id="zero-part-dropped"),
    ],
)
def test_format_of_parse_is_canonical(text: str, canonical: str) -> None:
    assert format_duration(parse_duration(text)) == canonical


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(timedelta(0), "0s", id="zero"),
        pytest.param(timedelta(seconds=-5), "0s", id="negative"),
        pytest.param(timedelta(days=1, seconds=1), "1d1s", id="gap-units-omitted"),
    ],
)
def test_format_duration_edges(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.integers(min_value=1, max_value=10**9))
def test_parse_inverts_format_for_whole_seconds(seconds: int) -> None:
    value = timedelta(seconds=seconds)
    assert parse_duration(format_duration(value)) == value


_parts = st.lists(
    st.tuples(st.integers(min_value=0, max_value=500), st.sampled_from("smhdwSMHDW")), min_size=1, max_size=5
).filter(lambda ps: any(n for n, _ in ps))


@given(_parts)
def test_format_is_a_fixed_point_for_any_valid_spelling(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{u}" for n, u in parts)
    canonical = format_duration(parse_duration(text))
    # the canonical spelling means the same and is its own canonical form
    assert parse_duration(canonical) == parse_duration(text)
    assert format_duration(parse_duration(canonical)) == canonical
    # and it is the shortest-unit-first-free form: units strictly descending, no zero parts
    units = [c for c in canonical if c.isalpha()]
    assert units == sorted(units, key="dhms".index)
    assert len(units) == len(set(units))
    assert "w" not in units


@pytest.mark.parametrize("text", ["99999999999d", "99999999999999w", "20001d", "2858w", "20000d1s"])
def test_a_huge_duration_is_a_clear_error_not_an_overflow(text: str) -> None:
    from service.core.durations import MAX_DURATION, DurationTooLong

    with pytest.raises(DurationTooLong, match="longer than Keyturn ever grants"):
        parse_duration(text)
    assert parse_duration("20000d") == MAX_DURATION
    assert MAX_DURATION.total_seconds() < 2**31  # fits the databases' INTEGER seconds


def test_overlong_text_is_refused_before_it_is_read() -> None:
    # Python refuses int() of more than 4300 digits (a ValueError, not a DurationError) and long text is
    # never a duration someone typed: refused by length first, and quoted shortened.
    with pytest.raises(DurationError, match="is not a duration") as caught:
        parse_duration("9" * 5000 + "d")
    assert len(str(caught.value)) < 100
    with pytest.raises(DurationError):
        parse_duration("1h " * 11)
