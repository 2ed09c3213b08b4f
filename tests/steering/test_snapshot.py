"""The snapshot puller against a fake control on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from edgefleet.fleet import role_token
from edgefleet.tasks import spawn
from steering.snapshot import SnapshotError, SnapshotPuller, decode
from tests.steering.fakecontrol import SECRET, FakeControl
from tests.steering.fleetdocs import two_sites

TOKEN = role_token(SECRET, "steering")


def run(test: Callable[[FakeControl, aiohttp.ClientSession], Awaitable[None]]) -> None:
    async def main() -> None:
        control = await FakeControl(two_sites(version=1)).start()
        try:
            async with aiohttp.ClientSession() as session:
                await test(control, session)
        finally:
            await control.stop()

    asyncio.run(main())


def test_first_poll_installs_the_index_then_304s() -> None:
    async def test(control: FakeControl, session: aiohttp.ClientSession) -> None:
        puller = SnapshotPuller(session, control.url, TOKEN)
        assert puller.age_s() is None
        assert await puller.poll_once()
        assert puller.index is not None and puller.index.version == 1
        assert puller.ready.is_set()
        assert not await puller.poll_once()
        assert control.not_modified == 1
        control.set(two_sites(version=2))
        assert await puller.poll_once()
        assert puller.index.version == 2
        age = puller.age_s()
        assert age is not None and 0 <= age < 5

    run(test)


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, b"{not json", "not JSON"),
        (200, b'{"version": "x"}', "invalid snapshot: version"),
        (200, b"[" * 100000 + b"]" * 100000, "snapshot"),
        (500, b"boom", "control answered 500"),
    ],
)
def test_garbage_keeps_the_last_good_index(status: int, body: bytes, reason: str) -> None:
    async def test(control: FakeControl, session: aiohttp.ClientSession) -> None:
        puller = SnapshotPuller(session, control.url, TOKEN)
        await puller.poll_once()
        good = puller.index
        if status == 200:
            control.set(body)
        else:
            control.broken = (status, body)
        with pytest.raises(SnapshotError, match=reason):
            await puller.poll_once()
        assert puller.index is good

    run(test)


def test_wrong_token_is_an_error() -> None:
    async def test(control: FakeControl, session: aiohttp.ClientSession) -> None:
        puller = SnapshotPuller(session, control.url, role_token(SECRET, "admin"))
        with pytest.raises(SnapshotError, match="403"):
            await puller.poll_once()
        assert puller.index is None

    run(test)


def test_run_survives_control_dying_and_reports_age() -> None:
    now = [100.0]

    async def test(control: FakeControl, session: aiohttp.ClientSession) -> None:
        puller = SnapshotPuller(
            session, control.url, TOKEN, interval_s=0.01, timeout_s=2.0, clock=lambda: now[0]
        )
        task = spawn(puller.run(), name="test-puller")
        try:
            await asyncio.wait_for(puller.ready.wait(), 10)
            await control.stop()
            for _ in range(1000):
                if puller.failures >= 2:
                    break
                await asyncio.sleep(0.01)
            now[0] += 30.0
            assert puller.age_s() == pytest.approx(30.0)
            assert puller.index is not None and puller.index.version == 1
            assert puller.last_error is not None and "unreachable" in puller.last_error
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    run(test)


def test_decode_names_the_bad_field() -> None:
    with pytest.raises(SnapshotError, match="appliances"):
        decode(b'{"version": 1, "appliances": 3}')
