"""Conditional requests (RFC 9110 §13) for GET and HEAD of an immutable stored file.

Pure logic: `evaluate` takes the request's precondition headers and the file's validators and
returns the status to send before any range processing (200 meaning "go on"), and whether a
Range header may be honoured (If-Range, §13.1.5).

Order of evaluation is §13.2.2:
1. If-Match → 412 when no entity-tag matches (strong comparison);
2. otherwise If-Unmodified-Since → 412 when modified after the date;
3. If-None-Match → 304 when any entity-tag matches (weak comparison);
4. otherwise If-Modified-Since → 304 when not modified since the date;
5. If-Range → the Range header is ignored unless the validator matches (strong comparison,
   or a date equal to Last-Modified).
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.httpdate import parse_http_date

# The entity-tag list parser is shared with control (edgefleet.etags): quoted tags may hold
# commas (§8.8.3), so a list is never split on ",".
from edgefleet.etags import entity_tags, none_match, strong_match


@dataclass(frozen=True, slots=True)
class Preconditions:
    """The precondition headers of a request, raw; None when absent."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_unmodified_since: str | None = None
    if_range: str | None = None


NONE = Preconditions()


def evaluate(pre: Preconditions, etag: str, last_modified: int) -> tuple[int, bool]:
    """(status, honour_range): 412, 304 or 200, and whether If-Range lets Range apply.

    *etag* is the file's strong entity-tag with quotes; *last_modified* unix seconds.
    """
    if pre is NONE:
        return 200, True
    if pre.if_match is not None:
        tags = entity_tags(pre.if_match)
        if tags is not None and not any(strong_match(t, etag) for t in tags):
            return 412, False
    elif pre.if_unmodified_since is not None:
        date = parse_http_date(pre.if_unmodified_since)
        if date is not None and last_modified > date:
            return 412, False
    if pre.if_none_match is not None:
        if none_match(pre.if_none_match, etag):
            return 304, False
    elif pre.if_modified_since is not None:
        date = parse_http_date(pre.if_modified_since)
        if date is not None and last_modified <= date:
            return 304, False
    return 200, if_range_allows(pre.if_range, etag, last_modified)


def if_range_allows(if_range: str | None, etag: str, last_modified: int) -> bool:
    """§13.1.5: True when the Range header may be honoured."""
    if if_range is None:
        return True
    value = if_range.strip(" \t")
    if value.startswith('"') or value.startswith("W/"):
        return strong_match(value, etag)
    date = parse_http_date(value)
    # A date validator must match Last-Modified exactly; an unparsable one means "ignore Range".
    return date is not None and date == last_modified
