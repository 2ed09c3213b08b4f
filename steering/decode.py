"""Decode a snapshot body without one long json.loads: the contents are read entry by entry.

A 1,000,000-id snapshot is some 30 MiB of JSON, nearly all of it `contents`. `json.loads` would
hold the interpreter lock for a second or more in one C call (steering decodes in a worker
thread, but a request waiting on the event loop would wait that long), build a million lists
and several million int objects only to convert them, and leave the content-id strings
scattered over memory the rest of the document no longer uses.

So the top-level object is walked with `JSONDecoder.raw_decode`, one member at a time, and
`contents` entry by entry: an entry in the compact form control writes (`"id":[0,3]`) is
matched by one regular expression, any other form (whitespace, escapes, wrong types) goes
through `raw_decode` and is checked the same way. The loop runs in Python, so the event loop
gets the interpreter at every switch interval (5 ms). Content ids come out as UTF-8 bytes and
holder lists as tuples of ints, equal lists sharing one tuple (steering.index.ParsedContents).
Any syntax error raises ValueError (as json.loads would); a holder list that is not a list of
non-negative integers raises FieldError naming the content id.
"""

from __future__ import annotations

import gc
import json
import re
import time
from collections.abc import Iterable
from typing import Any

from edgefleet.fleet import FieldError
from steering.index import ParsedContents

_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")
_WS_CHARS = " \t\n\r"
# "id":[0,3], with no whitespace and no escapes in the id: control's compact encoding. The
# comma, when there is one, is consumed too (the next entry must then match or be parsed).
_ENTRY = re.compile(
    r'"([^"\\\x00-\x1f]*)":\[((?:0|[1-9][0-9]{0,8})(?:,(?:0|[1-9][0-9]{0,8}))*)?\](,?)'
)
# Appliance indexes below this share preallocated int objects.
_CANONICAL = list(range(1 << 16))
# Entries between two young-generation collections (see _contents).
_COLLECT_EVERY = 1 << 14


def release(table: dict[Any, Any], chunk: int = 5000) -> None:
    """Empty a large dict a chunk at a time, offering the interpreter to other threads between.

    Freeing a million-entry dict at once is one C call that holds the interpreter lock for a
    tenth of a second or more; run from a worker thread, this lets the event loop answer
    requests meanwhile.
    """
    pop = table.popitem
    while table:
        for _ in range(min(chunk, len(table))):
            pop()
        time.sleep(0)


def _skip_ws(text: str, pos: int) -> int:
    if pos < len(text) and text[pos] in _WS_CHARS:
        end = _WS.match(text, pos)
        assert end is not None  # the pattern matches the empty string
        return end.end()
    return pos


def _expect(text: str, pos: int, char: str) -> int:
    if not text.startswith(char, pos):
        raise ValueError(f"expected {char!r} at char {pos}")
    return _skip_ws(text, pos + 1)


def _key(text: str, pos: int) -> tuple[str, int]:
    if not text.startswith('"', pos):
        raise ValueError(f"expected a member name at char {pos}")
    key, pos = _DECODER.raw_decode(text, pos)
    return key, _expect(text, _skip_ws(text, pos), ":")


def _holders(parts: Iterable[int]) -> tuple[int, ...]:
    parts = tuple(parts)
    try:
        return tuple(map(_CANONICAL.__getitem__, parts))
    except IndexError:
        return parts


def _contents(text: str, pos: int) -> tuple[ParsedContents, int]:
    """Parse the contents object starting at text[pos] == "{"."""
    pos = _expect(text, pos, "{")
    out: dict[bytes, tuple[int, ...]] = {}
    shared: dict[str, tuple[int, ...]] = {}
    high = -1
    match, known = _ENTRY.match, shared.get
    if text.startswith("}", pos):
        return ParsedContents(out, high), pos + 1
    countdown = _COLLECT_EVERY
    while True:
        countdown -= 1
        if not countdown:
            # The caller pauses the collector (steering.snapshot.gc_paused); collecting the
            # young generation now and then untracks the new int-only tuples a few thousand
            # at a time. Left to the first automatic collection after the pause, the million
            # of them would be examined in one go, holding the interpreter for 0.2 s.
            gc.collect(0)
            countdown = _COLLECT_EVERY
        found = match(text, pos)
        if found is not None:
            key, raw, comma = found.groups()
            holders = known(raw)
            if holders is None:
                holders = shared[raw] = _holders(map(int, raw.split(","))) if raw else ()
                if holders:
                    high = max(high, *holders)
            out[key.encode()] = holders  # no lone surrogates: text came from strict UTF-8
            pos = found.end()
            if comma:
                continue
        else:
            key, pos = _key(text, pos)
            value, pos = _DECODER.raw_decode(text, pos)
            if not isinstance(value, list) or not all(type(i) is int and i >= 0 for i in value):
                raise FieldError(
                    f"contents.{key[:140]}", "must be a list of non-negative appliance indexes"
                )
            holders = _holders(value)
            holders = shared.setdefault(",".join(map(str, holders)), holders)
            if holders:
                high = max(high, *holders)
            out[key.encode("utf-8", "surrogatepass")] = holders
        pos = _skip_ws(text, pos)
        if text.startswith(",", pos):
            pos = _skip_ws(text, pos + 1)
        elif text.startswith("}", pos):
            release(shared)
            return ParsedContents(out, high), pos + 1
        else:
            raise ValueError(f"expected ',' or '}}' at char {pos}")


def decode_snapshot(body: bytes) -> dict[str, Any]:
    """The snapshot document, its `contents` (if an object) as ParsedContents.

    Raises ValueError when the body is not JSON, FieldError for a bad holder list.
    """
    text = body.decode("utf-8")
    pos = _skip_ws(text, 0)
    if not text.startswith("{", pos):
        _DECODER.raw_decode(text, pos)  # raises for invalid JSON; other values are refused:
        raise FieldError("$", "must be a JSON object")
    pos = _skip_ws(text, pos + 1)
    doc: dict[str, Any] = {}
    if text.startswith("}", pos):
        pos += 1
    else:
        while True:
            key, pos = _key(text, pos)
            if key == "contents" and text.startswith("{", pos):
                doc[key], pos = _contents(text, pos)
            else:
                doc[key], pos = _DECODER.raw_decode(text, pos)
            pos = _skip_ws(text, pos)
            if text.startswith(",", pos):
                pos = _skip_ws(text, pos + 1)
            elif text.startswith("}", pos):
                pos += 1
                break
            else:
                raise ValueError(f"expected ',' or '}}' at char {pos}")
    if _skip_ws(text, pos) != len(text):
        raise ValueError(f"extra data at char {pos}")
    return doc
