"""Conditional requests against RFC 9110 §13.1-13.2.2."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.conditional import NONE, Preconditions, evaluate, if_range_allows
from edge.httpdate import format_http_date

ETAG = '"0123456789abcdef0123456789abcdef"'
OTHER = '"ffffffffffffffffffffffffffffffff"'
LM = 784_111_777  # Sun, 06 Nov 1994 08:49:37 GMT
AT_LM = format_http_date(LM)
BEFORE = format_http_date(LM - 1)
AFTER = format_http_date(LM + 1)
GARBAGE_DATES = ["yesterday", "", "Sun, 32 Nov 1994 08:49:37 GMT", f"{AT_LM}, {AFTER}"]


def check(**headers: str) -> tuple[int, bool]:
    return evaluate(Preconditions(**headers), ETAG, LM)


def test_no_preconditions() -> None:
    assert evaluate(NONE, ETAG, LM) == (200, True)
    assert check() == (200, True)


# -- If-Match (§13.1.1): strong comparison ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (ETAG, 200),
        (OTHER, 412),
        (f"W/{ETAG}", 412),  # a weak tag never matches strongly
        ("*", 200),
        (f"{OTHER}, {ETAG}", 200),
        (f"{OTHER},{ETAG}", 200),
        (f"{OTHER} ,\t{ETAG}", 200),
        (f"{OTHER}, W/{ETAG}", 412),
        (ETAG[1:-1], 412),  # unquoted: not the same entity-tag
        (ETAG.upper(), 412),  # opaque-tags compare case-sensitively
    ],
)
def test_if_match(value: str, status: int) -> None:
    assert check(if_match=value)[0] == status


# -- If-Unmodified-Since (§13.1.4) ------------------------------------------------------------


@pytest.mark.parametrize(("value", "status"), [(BEFORE, 412), (AT_LM, 200), (AFTER, 200)])
def test_if_unmodified_since(value: str, status: int) -> None:
    assert check(if_unmodified_since=value)[0] == status


@pytest.mark.parametrize("value", GARBAGE_DATES)
def test_if_unmodified_since_with_invalid_date_is_ignored(value: str) -> None:
    assert check(if_unmodified_since=value) == (200, True)


def test_if_unmodified_since_is_ignored_when_if_match_is_present() -> None:
    # §13.2.2 step 2 applies only "when If-Match is not present".
    assert check(if_match=ETAG, if_unmodified_since=BEFORE) == (200, True)


# -- If-None-Match (§13.1.2): weak comparison ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (ETAG, 304),
        (f"W/{ETAG}", 304),  # weak comparison ignores W/
        (OTHER, 200),
        (f"W/{OTHER}", 200),
        ("*", 304),
        (f"{OTHER}, {ETAG}", 304),
        (f" {OTHER} , , W/{ETAG} ", 304),
        (f"{OTHER}, W/{OTHER}", 200),
    ],
)
def test_if_none_match(value: str, status: int) -> None:
    assert check(if_none_match=value)[0] == status


# -- If-Modified-Since (§13.1.3) ---------------------------------------------------------------


@pytest.mark.parametrize(("value", "status"), [(BEFORE, 200), (AT_LM, 304), (AFTER, 304)])
def test_if_modified_since(value: str, status: int) -> None:
    assert check(if_modified_since=value)[0] == status


@pytest.mark.parametrize("value", GARBAGE_DATES)
def test_if_modified_since_with_invalid_date_is_ignored(value: str) -> None:
    # §13.1.3: "A recipient MUST ignore If-Modified-Since if the received field value is not
    # a valid HTTP-date, [or] the field value has more than one member".
    assert check(if_modified_since=value) == (200, True)


def test_if_modified_since_is_ignored_when_if_none_match_is_present() -> None:
    # §13.2.2 step 4 applies only "when If-None-Match is not present".
    assert check(if_none_match=OTHER, if_modified_since=AFTER) == (200, True)
    assert check(if_none_match=ETAG, if_modified_since=BEFORE) == (304, False)


# -- precedence (§13.2.2) ------------------------------------------------------------------------


def test_failed_if_match_wins_over_matching_if_none_match() -> None:
    assert check(if_match=OTHER, if_none_match=ETAG) == (412, False)


def test_failed_if_unmodified_since_wins_over_if_modified_since() -> None:
    assert check(if_unmodified_since=BEFORE, if_modified_since=AFTER) == (412, False)


def test_passed_if_match_then_if_none_match_decides() -> None:
    assert check(if_match=ETAG, if_none_match=ETAG) == (304, False)
    assert check(if_match="*", if_none_match=OTHER) == (200, True)


def test_304_and_412_never_honour_range() -> None:
    assert check(if_none_match=ETAG, if_range=ETAG) == (304, False)
    assert check(if_match=OTHER, if_range=ETAG) == (412, False)


# -- If-Range (§13.1.5) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "honour"),
    [
        (ETAG, True),
        (f" {ETAG}\t", True),
        (OTHER, False),
        (f"W/{ETAG}", False),  # "the condition is true if ... matches using strong comparison"
        (AT_LM, True),
        (BEFORE, False),
        (AFTER, False),  # a date validator must match exactly, not merely be later
        ("Sunday, 06-Nov-94 08:49:37 GMT", True),
        ("Sun Nov  6 08:49:37 1994", True),
        ("garbage", False),
        ("", False),
        (ETAG[1:-1], False),
        ("Sun, 31 Nov 1994 08:49:37 GMT", False),
    ],
)
def test_if_range(value: str, honour: bool) -> None:
    assert if_range_allows(value, ETAG, LM) is honour
    assert check(if_range=value) == (200, honour)


def test_absent_if_range_honours_range() -> None:
    assert if_range_allows(None, ETAG, LM) is True


# -- properties --------------------------------------------------------------------------------------

tags = st.sampled_from([ETAG, OTHER, f"W/{ETAG}", f"W/{OTHER}", '"x"'])
# "*" stands alone: If-Match = "*" / #entity-tag
tag_lists = st.just("*") | st.lists(tags, min_size=1, max_size=3).map(", ".join)
dates = st.sampled_from([BEFORE, AT_LM, AFTER, "nonsense"])


@given(
    st.none() | tag_lists,
    st.none() | tag_lists,
    st.none() | dates,
    st.none() | dates,
    st.none() | tags | dates,
)
def test_outcome_follows_the_precedence_of_section_13_2_2(
    if_match: str | None,
    if_none_match: str | None,
    if_modified_since: str | None,
    if_unmodified_since: str | None,
    if_range: str | None,
) -> None:
    pre = Preconditions(if_match, if_none_match, if_modified_since, if_unmodified_since, if_range)
    status, honour = evaluate(pre, ETAG, LM)
    if if_match is not None:
        failed = if_match != "*" and ETAG not in if_match.split(", ")
    else:
        failed = if_unmodified_since == BEFORE
    if failed:
        assert (status, honour) == (412, False)
    elif if_none_match is not None:
        matched = if_none_match == "*" or ETAG in if_none_match  # W/ is ignored
        assert status == (304 if matched else 200)
    elif if_modified_since in (AT_LM, AFTER):
        assert status == 304
    else:
        assert status == 200
    if status != 200:
        assert honour is False
    else:
        assert honour is (if_range is None or if_range in (ETAG, AT_LM))
