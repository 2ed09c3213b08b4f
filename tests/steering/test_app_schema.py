"""schemathesis against a live steering server: no 5xx, every answer as /openapi.json says."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import aiohttp
import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings

from steering.app import make_app
from steering.config import ListenConfig, SteeringConfig
from tests.steering.fakecontrol import SECRET, FakeControl
from tests.steering.fleetdocs import two_sites
from tests.steering.test_app import write_files

SPEC = json.loads(resources.files("steering").joinpath("openapi.json").read_text())
schema = schemathesis.openapi.from_dict(SPEC)


class LiveSteering:
    """A steering server and its fake control on an event loop in a background thread."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="live-steering")
        self.control: FakeControl | None = None
        self.runner: web.AppRunner | None = None

    async def _start(self) -> str:
        self.control = await FakeControl(two_sites(version=1)).start()
        keyring, secret, ring = write_files(self.tmp)
        conf = SteeringConfig(
            control_url=self.control.url,
            secret_file=str(secret),
            keyring=str(keyring),
            snapshot_interval_s=0.05,
            listen=ListenConfig(port=0),
        )
        self.runner = web.AppRunner(make_app(conf, ring, SECRET), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as http:
            for _ in range(500):
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return url
                await asyncio.sleep(0.01)
        raise AssertionError("steering never loaded the snapshot")

    async def _stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        if self.control is not None:
            await self.control.stop()

    def start(self) -> str:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    live = LiveSteering(tmp_path_factory.mktemp("schema"))
    try:
        yield live.start()
    finally:
        live.stop()


@schema.parametrize()
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
def test_steering_conforms_to_its_openapi(case: schemathesis.Case, live_url: str) -> None:
    case.call_and_validate(base_url=live_url)
