"""A control service on a real socket (127.0.0.1, port 0) for the route tests, under asyncio
and uvloop: the `run` fixture, `running(tmp_path)` and its `Fleet` client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from control import config as control_config
from control.app import make_app
from control.service import Control
from control.store import Store
from control.topology import load_topology
from tests.control.controlproc import ControlFiles, heartbeat_doc

Runner = Callable[[Coroutine[Any, Any, None]], None]


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Iterator[Runner]:
    """Runs a test coroutine on the stock loop or on uvloop."""
    factory = None
    if request.param == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop

    def runner(coro: Coroutine[Any, Any, None]) -> None:
        with asyncio.Runner(loop_factory=factory) as r:
            r.run(coro)

    yield runner


@dataclass
class Fleet:
    """A running control and a client to it."""

    client: TestClient[Any, Any]
    control: Control
    files: ControlFiles

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.files.token(role)}"}

    async def post(self, path: str, role: str | None, body: Any) -> ClientResponse:
        headers = self.auth(role) if role else {}
        return await self.client.post(path, json=body, headers=headers)

    async def heartbeat(self, name: str, **kwargs: Any) -> dict[str, Any]:
        doc = heartbeat_doc(**kwargs)
        resp = await self.post(f"/v1/appliances/{name}/heartbeat", f"appliance:{name}", doc)
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        return body

    async def snapshot(self, etag: str | None = None) -> ClientResponse:
        headers = self.auth("steering")
        if etag is not None:
            headers["If-None-Match"] = etag
        return await self.client.get("/v1/snapshot", headers=headers)


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, interval_s: float = 2.0, warm: bool = True, **overrides: Any
) -> AsyncIterator[Fleet]:
    files = ControlFiles(tmp_path, interval_s)
    conf = control_config.load(files.config_path, overrides)
    with Store(conf.store) as store:
        ctl = Control(conf, load_topology(conf.topology), files.secret, store)
        if warm:  # as if started long ago: past the warm-up after a restart
            ctl.started -= 3600.0
        async with TestClient(TestServer(make_app(ctl))) as client:
            yield Fleet(client, ctl, files)
