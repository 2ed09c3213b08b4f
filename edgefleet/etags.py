"""Entity-tag lists (RFC 9110 §8.8.3, §13.1.1-2): the one parser edge and control share.

    entity-tag = [ weak ] opaque-tag        weak = %s"W/"
    opaque-tag = DQUOTE *etagc DQUOTE        etagc = %x21 / %x23-7E / obs-text

An opaque-tag may hold a comma, so an If-Match / If-None-Match list is not split on commas:
it is scanned tag by tag (§5.6.1 list syntax: empty elements and OWS around commas are
allowed). A member that is not an entity-tag is ignored up to the next comma; it can match
nothing. "*" alone is "any current representation".

Imported by the edge's request path (edge.conditional): it needs nothing but `re`, and a
header holding one tag (the usual case) costs one regular-expression match.
"""

from __future__ import annotations

import re

# One entity-tag, W/ included: etagc is every character but controls, SP, DQUOTE and DEL.
# obs-text is %x80-FF in bytes; a decoder may have turned it into any code point above
# U+007F, so all of those count. (A negated class also compiles in well under a millisecond,
# where a range up to U+10FFFF takes ~20 ms of the edge workers' start-up.)
_TAG = r'(?:W/)?"[^\x00-\x20"\x7f]*"'
_ONE_TAG = re.compile(_TAG)
# A list member that is an entity-tag, with its OWS and the comma (or end) after it.
_MEMBER = re.compile(rf"[ \t]*({_TAG})[ \t]*(?:,|\Z)")
# An empty list element (§5.6.1: recipients accept and ignore them).
_EMPTY = re.compile(r"[ \t]*,")


def entity_tags(header: str) -> list[str] | None:
    """The entity-tags of an If-Match / If-None-Match value, W/ kept; None for "*"."""
    value = header.strip(" \t")
    if value == "*":
        return None
    if "," not in value:  # one tag: the usual case on the request path
        return [value] if _ONE_TAG.fullmatch(value) else []
    tags = []
    pos, end = 0, len(value)
    while pos < end:
        empty = _EMPTY.match(value, pos)
        if empty is not None:
            pos = empty.end()
            continue
        member = _MEMBER.match(value, pos)
        if member is not None:
            tags.append(member.group(1))
            pos = member.end()
            continue
        comma = value.find(",", pos)  # not an entity-tag: skip the member
        if comma < 0:
            break
        pos = comma + 1
    return tags


def strong_match(tag: str, etag: str) -> bool:
    """§8.8.3.2 strong comparison: both strong and identical."""
    return not tag.startswith("W/") and tag == etag


def weak_match(tag: str, etag: str) -> bool:
    """§8.8.3.2 weak comparison: opaque-tags identical, W/ prefixes ignored."""
    return tag.removeprefix("W/") == etag.removeprefix("W/")


def none_match(if_none_match: str, etag: str) -> bool:
    """§13.1.2: True when an If-None-Match value matches *etag* ("*" or a weak match),
    i.e. a GET is answered 304."""
    tags = entity_tags(if_none_match)
    return tags is None or any(weak_match(t, etag) for t in tags)
