"""The control service's background work: silent appliances marked down, topology reload."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.control.appfleet import Runner, run, running
from tests.control.controlproc import topology_text

__all__ = ["run"]  # the fixture, imported for pytest


def test_marked_down_after_missed_heartbeats(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path, interval_s=0.2) as f:
            # Taken before the heartbeat: control's last_seen is later, so the 0.6 s lower
            # bound holds however long the answer takes to come back on a loaded machine.
            last = time.monotonic()
            await f.heartbeat("ams1-b")
            snap = await (await f.snapshot()).json()
            assert snap["appliances"][1]["state"] == "up"
            etag = f'"{snap["version"]}"'
            deadline = last + 10
            while time.monotonic() < deadline:
                resp = await f.snapshot(etag)
                if resp.status == 200:
                    break
                await asyncio.sleep(0.02)
            elapsed = time.monotonic() - last
            assert (await resp.json())["appliances"][1]["state"] == "down"
            # 3 missed intervals (0.6 s) plus at most one tick (0.05 s), with slack for CI.
            assert 0.6 <= elapsed < 2.0, elapsed

    run(scenario())


def test_topology_reload(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as f:
            await f.heartbeat("ams1-a")
            extra = (
                '[[appliances]]\nname = "nyc1-b"\nsite = "nyc1"\n'
                'base_url = "http://127.0.0.1:9005"\n'
            )
            f.files.topology_path.write_text(topology_text(2.0, extra))
            assert await f.control.reload()
            assert (await f.heartbeat("nyc1-b"))["resync"] is True
            f.files.topology_path.write_text(topology_text(2.0, "[[appliances]]\nname = 1\n"))
            assert not await f.control.reload()
            snap = await (await f.snapshot()).json()
            assert [a["state"] for a in snap["appliances"]] == ["up", "down", "down", "down", "up"]

    run(scenario())
