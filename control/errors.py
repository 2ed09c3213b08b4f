"""Control's error answers and request bodies: ApiError, JSON decoding, size limits.

Errors are JSON, one line: `{"error": "...", "field": "..."}`. Bad input is 400 (not JSON),
422 (a field is wrong), 413 (too large), 401/403 (token), 404 (unknown appliance) — never
a 500. Handlers raise ApiError; the middleware in control.app answers it.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from edgefleet.errors import error_body
from edgefleet.fleet import FieldError


class ApiError(Exception):
    """A request refused with a JSON error; raised by handlers, answered by the middleware."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or {}

    def response(self) -> web.Response:
        """The error as an HTTP response."""
        return web.Response(
            body=error_body(self.message, self.field),
            status=self.status,
            headers=self.headers,
            content_type="application/json",
            charset="utf-8",
        )


def invalid(exc: FieldError) -> ApiError:
    """A document's FieldError as the 422 naming the field."""
    return ApiError(422, str(exc), exc.field)


def unknown_appliance(name: str) -> ApiError:
    """The 404 for a name that is not an appliance of the topology."""
    return ApiError(404, f"unknown appliance '{name[:80]}'", "name")


def decode_json(raw: bytes) -> Any:
    """The JSON document in *raw*; 400 naming `$` when it is not JSON."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, f"malformed JSON: {exc}", "$") from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply", "$") from None


async def read_json(request: web.Request, *, empty_ok: bool = False) -> Any:
    """The request's JSON body (within the app's `client_max_size`); `{}` for an empty body
    when *empty_ok*."""
    raw = await request.read()
    if not raw.strip() and empty_ok:
        return {}
    return decode_json(raw)


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The body, refused with 413 past *limit* bytes (this route's own limit, not the app's)."""
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(413, f"body over {limit} bytes", "$")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 20):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"body over {limit} bytes", "$")
        chunks.append(chunk)
    return b"".join(chunks)
