"""A tiny stand-in for control's GET /v1/snapshot, on 127.0.0.1 port 0, for steering tests.

It checks the steering role's bearer token, answers 304 to If-None-Match with the current
ETag, and can be told to answer garbage or an error status.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from edgefleet.fleet import bearer, role_token

SECRET = bytes(range(32))


class FakeControl:
    """Serves one snapshot document; `set()` replaces it, `broken` makes it misbehave."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.requests = 0
        self.not_modified = 0
        self.broken: tuple[int, bytes] | None = None  # (status, body) to answer instead
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.set(doc)

    def set(self, doc: dict[str, Any] | bytes) -> None:
        """Serve *doc* (a document, or raw bytes) from now on, with a new ETag."""
        self.body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        version = doc.get("version", 0) if isinstance(doc, dict) else "raw"
        self.etag = f'"{version}-{len(self.body)}"'

    async def _snapshot(self, request: web.Request) -> web.Response:
        self.requests += 1
        token = bearer(request.headers)
        if token is None:
            return web.json_response({"error": "missing token"}, status=401)
        if token != role_token(SECRET, "steering"):
            return web.json_response({"error": "wrong role"}, status=403)
        if self.broken is not None:
            return web.Response(status=self.broken[0], body=self.broken[1])
        if request.headers.get("If-None-Match") == self.etag:
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": self.etag})
        return web.Response(
            body=self.body, content_type="application/json", headers={"ETag": self.etag}
        )

    async def start(self) -> FakeControl:
        app = web.Application()
        app.router.add_get("/v1/snapshot", self._snapshot)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
