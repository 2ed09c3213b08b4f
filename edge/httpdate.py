"""HTTP-date (RFC 9110 §5.6.7): format IMF-fixdate, parse all three historic forms."""

from __future__ import annotations

import calendar
import email.utils
import time


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
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    year = parsed[0]
    # RFC 850 two-digit years: §5.6.7 says a year more than 50 years in the future is the past.
    if year < 100:
        this_year = time.gmtime().tm_year
        year += 1900 + 100 * ((this_year - 1900) // 100)
        if year > this_year + 50:
            year -= 100
    try:
        return calendar.timegm((year, *parsed[1:6], 0, 0, 0)) - (parsed[9] or 0)
    except (OverflowError, ValueError):
        return None
