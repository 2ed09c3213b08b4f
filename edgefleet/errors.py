"""The JSON error body every edgefleet service answers with, built and read in one place.

`{"error": "<one line>", "field": "<the request field at fault>" | null}`: `$` names the
whole body (not JSON, too large), null names no field (a bad token, an unknown route).
docs/fleet-api.md and steering's openapi.json (`Error`) document it; control and steering
build it with `error_body`, and the edge's reporter and the command-line tools read it back
with `parse_error_body`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """A refused request's reason and the field at fault (None: no field)."""

    error: str
    field: str | None = None


def error_body(message: str, field: str | None) -> bytes:
    """The error document's bytes."""
    return json.dumps({"error": message, "field": field}).encode()


def parse_error_body(raw: bytes) -> ErrorBody | None:
    """The error in a service's answer, or None when *raw* is not an error document (a proxy's
    HTML page, a truncated body): callers then show the raw text instead."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), str):
        return None
    field = doc.get("field")
    return ErrorBody(doc["error"], field if isinstance(field, str) else None)
