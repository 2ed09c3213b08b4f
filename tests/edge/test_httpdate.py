"""HTTP-date (RFC 9110 §5.6.7): one format out, three formats in, garbage ignored."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.httpdate import format_http_date, parse_http_date

EXAMPLE = 784_111_777  # the RFC's example instant


def test_format_is_imf_fixdate() -> None:
    assert format_http_date(EXAMPLE) == "Sun, 06 Nov 1994 08:49:37 GMT"
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert format_http_date(EXAMPLE + 0.9) == "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850 format
        "Sun Nov  6 08:49:37 1994",  # ANSI C's asctime() format
        "Sun Nov 06 08:49:37 1994",
        " Sun, 06 Nov 1994 08:49:37 GMT\t",
    ],
)
def test_the_three_formats_of_the_rfc(value: str) -> None:
    assert parse_http_date(value) == EXAMPLE


def _rfc850(year: int) -> str:
    return f"Sunday, 06-Nov-{year % 100:02d} 08:49:37 GMT"


def test_rfc_850_two_digit_year_within_50_years_ahead_is_in_the_future() -> None:
    # §5.6.7: a two-digit year MUST be read as the most recent past year with those digits
    # only when it "appears to be more than 50 years in the future".
    this_year = time.gmtime().tm_year
    for ahead in (0, 1, 25, 49):
        parsed = parse_http_date(_rfc850(this_year + ahead))
        assert parsed is not None
        assert time.gmtime(parsed).tm_year == this_year + ahead


def test_rfc_850_two_digit_year_more_than_50_years_ahead_is_in_the_past() -> None:
    this_year = time.gmtime().tm_year
    for ahead in (51, 60, 99):
        parsed = parse_http_date(_rfc850(this_year + ahead))
        assert parsed is not None
        assert time.gmtime(parsed).tm_year == this_year + ahead - 100


@pytest.mark.parametrize(
    "value",
    [
        "",
        "0",
        "yesterday",
        "784111777",
        "Sun, 06 Foo 1994 08:49:37 GMT",  # no such month
        "Sun, 32 Nov 1994 08:49:37 GMT",  # no such day
        "Tue, 29 Feb 2022 08:49:37 GMT",  # not a leap year
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 08:49 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT, Mon, 07 Nov 1994 08:49:37 GMT",  # a list of dates
        "Sun, 06 Nov 1994 08:49:37 GMT garbage",
        "Sun, 06 Nov 1994 08:49:37 GMT" + " " * 60,
        "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT",  # Arabic-Indic digits
        "\x00",
        "Sun, 06 Nov 1994 08:49:37 GMT\r\nX-Injected: 1",
    ],
)
def test_garbage_is_not_a_date(value: str) -> None:
    assert parse_http_date(value) is None


def test_leap_day_and_leap_second() -> None:
    assert parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT") == 1_709_164_800
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT") == 1_483_228_800


@given(st.integers(0, 253_402_300_799))  # up to 9999-12-31T23:59:59Z
def test_round_trip(ts: int) -> None:
    assert parse_http_date(format_http_date(ts)) == ts


@given(st.integers(0, 253_402_300_799))
def test_asctime_round_trip(ts: int) -> None:
    assert parse_http_date(time.asctime(time.gmtime(ts))) == ts


@given(st.text(max_size=80))
def test_any_text_is_a_date_or_none(value: str) -> None:
    parsed = parse_http_date(value)
    assert parsed is None or isinstance(parsed, int)
    if parsed is not None:
        assert parse_http_date(format_http_date(parsed)) == parsed
