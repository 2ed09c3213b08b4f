"""HTTP-date (RFC 9110 §5.6.7): format IMF-fixdate, parse all three historic forms."""

from __future__ import annotations

import calendar
import email.utils
import re
import time

# The three forms of §5.6.7, matched whole before parsing: email.utils.parsedate_tz alone
# ignores trailing text, so a list of dates (which §13.1.3 says to ignore) would parse as its
# first member. The rfc850-date group captures the two-digit year.
_HTTP_DATE = re.compile(
    r"[a-z]{3}, \d\d [a-z]{3} \d{4} \d\d:\d\d:\d\d GMT"  # IMF-fixdate
    r"|[a-z]{6,9}, \d\d-[a-z]{3}-(?P<yy>\d\d) \d\d:\d\d:\d\d GMT"  # rfc850-date
    r"|[a-z]{3} [a-z]{3} [ \d]\d \d\d:\d\d:\d\d \d{4}",  # asctime-date
    re.IGNORECASE | re.ASCII,
)


def format_http_date(ts: float) -> str:
    """IMF-fixdate for unix time *ts*, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`."""
    return email.utils.formatdate(ts, usegmt=True)


def parse_http_date(value: str) -> int | None:
    """Unix seconds for an IMF-fixdate, RFC 850 or asctime date; None when it is not one.

    §13.1.3: a recipient MUST ignore If-Modified-Since with an invalid date, so callers treat
    None as "header absent".
    """
    if len(value) > 64:
        return None
    value = value.strip(" \t")
    form = _HTTP_DATE.fullmatch(value)
    if form is None:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    year = parsed[0]
    if form["yy"] is not None:
        # RFC 850 two-digit years: §5.6.7 says a year more than 50 years in the future is the
        # past. (parsedate_tz has already applied its own fixed 1969 pivot: redo it.)
        this_year = time.gmtime().tm_year
        year = this_year - this_year % 100 + int(form["yy"])
        if year > this_year + 50:
            year -= 100
        elif year <= this_year - 50:
            year += 100
    month, day, hour, minute, second = parsed[1:6]
    # An impossible date ("31 Feb", "25:00") is not a valid HTTP-date: the caller ignores it.
    if not (1 <= day <= calendar.monthrange(year, month)[1] and hour < 24 and minute < 60):
        return None
    if second > 60:  # 60: a leap second
        return None
    try:
        return calendar.timegm((year, *parsed[1:6], 0, 0, 0)) - (parsed[9] or 0)
    except (OverflowError, ValueError):
        return None
