"""The steering API on a real socket (127.0.0.1 port 0), fed by a fake control server."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
import uvloop
from aiohttp import web

from edgefleet.tokens import Keyring, TokenError, new_key, verify
from steering.app import make_app
from steering.config import ListenConfig, SteeringConfig
from tests.steering.fakecontrol import SECRET, FakeControl
from tests.steering.fleetdocs import two_sites

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@dataclass
class Setup:
    """A running steering server and the fake control feeding it."""

    url: str
    control: FakeControl
    keyring: Keyring
    http: aiohttp.ClientSession

    async def post(self, doc: Any) -> tuple[int, Any]:
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        async with self.http.post(f"{self.url}/v1/steer", data=data) as resp:
            assert resp.content_type == "application/json"
            return resp.status, await resp.json()

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.http.get(f"{self.url}{path}") as resp:
            body = await resp.read()
            if resp.content_type == "application/json":
                return resp.status, json.loads(body)
            return resp.status, body.decode()

    async def ready(self) -> None:
        for _ in range(500):
            if (await self.get("/healthz"))[0] == 200:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("steering never loaded a snapshot")


def write_files(tmp_path: Path) -> tuple[Path, Path, Keyring]:
    ring = Keyring(keys={"k1": bytes.fromhex(new_key())}, current="k1")
    keyring = tmp_path / "keys.toml"
    keyring.write_text(ring.dumps())
    secret = tmp_path / "secret"
    secret.write_text(SECRET.hex())
    return keyring, secret, ring


@asynccontextmanager
async def serving(tmp_path: Path, control_url: str | None = None) -> AsyncIterator[Setup]:
    control = await FakeControl(two_sites(version=3)).start()
    keyring_path, secret_path, ring = write_files(tmp_path)
    conf = SteeringConfig(
        control_url=control_url or control.url,
        secret_file=str(secret_path),
        keyring=str(keyring_path),
        snapshot_interval_s=0.02,
        snapshot_timeout_s=2.0,
        max_ids_per_request=5,
        listen=ListenConfig(port=0),
    )
    runner = web.AppRunner(make_app(conf, ring, SECRET), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as http:
            yield Setup(f"http://127.0.0.1:{port}", control, ring, http)
    finally:
        await runner.cleanup()
        await control.stop()


def run(tmp_path: Path, test: Callable[[Setup], Awaitable[None]], loop: str = "asyncio") -> None:
    async def main() -> None:
        async with serving(tmp_path) as setup:
            await setup.ready()
            await test(setup)

    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(main())


def check_url(ring: Keyring, url: str, content_id: str, client_ip: str) -> None:
    parts = urlsplit(url)
    assert parts.path == f"/c/{content_id}"
    params = dict(parse_qsl(parts.query))
    assert verify(ring, content_id, params, client_ip, require_binding=True) is None
    assert verify(ring, content_id, params, "203.0.113.99") is TokenError.MISMATCH
    assert verify(ring, "other.mp4", params, client_ip) is TokenError.MISMATCH


@pytest.mark.parametrize("loop", LOOPS)
def test_post_steer_returns_ranked_signed_urls(tmp_path: Path, loop: str) -> None:
    async def test(s: Setup) -> None:
        status, doc = await s.post(
            {"client_ip": "198.51.100.7", "content_ids": ["both.mp4", "lon.mp4", "nope"]}
        )
        assert status == 200
        assert (doc["client_ip"], doc["client_site"], doc["snapshot_version"]) == (
            "198.51.100.7",
            "ams1",
            3,
        )
        both, lon, nope = doc["results"]
        assert both["class"] == "local"
        assert [u["site"] for u in both["urls"]] == ["ams1", "ams1", "lon1"]
        assert both["urls"][0]["url"].startswith(f"http://{both['urls'][0]['appliance']}.")
        for u in both["urls"]:
            check_url(s.keyring, u["url"], "both.mp4", "198.51.100.7")
        assert lon["class"] == "content_miss"
        assert [u["appliance"] for u in lon["urls"]] == ["lon1-a"]
        assert nope == {"content_id": "nope", "class": "unavailable", "urls": []}

    run(tmp_path, test, loop)


def test_get_steer_and_address_families(tmp_path: Path) -> None:
    async def test(s: Setup) -> None:
        status, doc = await s.get("/v1/steer/both.mp4?client_ip=2001:db8:1::7&max_urls=1")
        assert status == 200 and doc["client_site"] == "ams1"
        [result] = doc["results"]
        assert len(result["urls"]) == 1
        check_url(s.keyring, result["urls"][0]["url"], "both.mp4", "2001:db8:1::7")
        assert "&p=128" in result["urls"][0]["url"]
        status, doc = await s.get("/v1/steer/lon.mp4?client_ip=::ffff:198.51.100.9")
        assert doc["client_ip"] == "198.51.100.9" and doc["client_site"] == "ams1"
        check_url(s.keyring, doc["results"][0]["urls"][0]["url"], "lon.mp4", "198.51.100.9")
        status, doc = await s.get("/v1/steer/both.mp4?client_ip=100.64.0.1")
        assert doc["client_site"] is None and doc["results"][0]["class"] == "no_site"

    run(tmp_path, test)


BAD_POSTS: list[tuple[Any, int, str]] = [
    (b"{", 400, "$"),
    (b"\xff\xfe", 400, "$"),
    ([], 422, "$"),
    ({"content_ids": ["a"]}, 422, "client_ip"),
    ({"client_ip": "1.2.3", "content_ids": ["a"]}, 422, "client_ip"),
    ({"client_ip": 17, "content_ids": ["a"]}, 422, "client_ip"),
    ({"client_ip": "fe80::1%eth0", "content_ids": ["a"]}, 422, "client_ip"),
    ({"client_ip": "1.2.3.4"}, 422, "content_ids"),
    ({"client_ip": "1.2.3.4", "content_ids": "a"}, 422, "content_ids"),
    ({"client_ip": "1.2.3.4", "content_ids": []}, 422, "content_ids"),
    ({"client_ip": "1.2.3.4", "content_ids": ["a"] * 6}, 422, "content_ids"),
    ({"client_ip": "1.2.3.4", "content_ids": ["a", "../etc"]}, 422, "content_ids[1]"),
    ({"client_ip": "1.2.3.4", "content_ids": [3]}, 422, "content_ids[0]"),
    ({"client_ip": "1.2.3.4", "content_ids": ["a"], "max_urls": 0}, 422, "max_urls"),
    ({"client_ip": "1.2.3.4", "content_ids": ["a"], "max_urls": 21}, 422, "max_urls"),
    ({"client_ip": "1.2.3.4", "content_ids": ["a"], "max_urls": True}, 422, "max_urls"),
    ({"client_ip": "1.2.3.4", "content_ids": ["a"], "max_urls": 2.0}, 422, "max_urls"),
    ({"client_ip": "1.2.3.4", "content_ids": ["a"], "extra": 1}, 422, "extra"),
    (b"[" * 50000, 400, "$"),
    (b'{"client_ip": "1.2.3.4", "content_ids": ["' + b"a" * 70000 + b'"]}', 413, "$"),
]

BAD_GETS = [
    ("/v1/steer/a.mp4", "client_ip"),
    ("/v1/steer/a.mp4?client_ip=x", "client_ip"),
    ("/v1/steer/.hidden?client_ip=1.2.3.4", "content_id"),
    ("/v1/steer/a.mp4?client_ip=1.2.3.4&max_urls=-1", "max_urls"),
    ("/v1/steer/a.mp4?client_ip=1.2.3.4&max_urls=99", "max_urls"),
    ("/v1/steer/a.mp4?client_ip=1.2.3.4&max_urls=%C2%B2", "max_urls"),
]


def test_bad_input_is_a_4xx_naming_the_field(tmp_path: Path) -> None:
    async def test(s: Setup) -> None:
        for body, status, field in BAD_POSTS:
            got, doc = await s.post(body)
            assert (got, doc["field"]) == (status, field), body[:80]
            assert isinstance(doc["error"], str)
        for path, field in BAD_GETS:
            got, doc = await s.get(path)
            assert (got, doc["field"]) == (422, field), path

    run(tmp_path, test)


def test_keeps_answering_when_control_dies(tmp_path: Path) -> None:
    async def test(s: Setup) -> None:
        await s.control.stop()
        await asyncio.sleep(0.1)  # several poll intervals fail meanwhile
        status, doc = await s.post({"client_ip": "203.0.113.5", "content_ids": ["lon.mp4"]})
        assert status == 200 and doc["results"][0]["class"] == "local"
        status, health = await s.get("/healthz")
        assert status == 200 and health["snapshot_age_s"] >= 0.05
        _, metrics = await s.get("/metrics")
        failures = re.search(r"^edgefleet_steering_snapshot_failures_total (\S+)$", metrics, re.M)
        assert failures is not None and float(failures.group(1)) >= 1

    run(tmp_path, test)


def test_no_snapshot_yet_is_503(tmp_path: Path) -> None:
    async def main() -> None:
        # Port 1 on loopback: nothing listens there, so every poll fails at once.
        async with serving(tmp_path, control_url="http://127.0.0.1:1") as s:
            status, health = await s.get("/healthz")
            assert status == 503 and health["snapshot_age_s"] is None
            status, doc = await s.post({"client_ip": "1.2.3.4", "content_ids": ["a"]})
            assert status == 503 and doc["field"] is None

    asyncio.run(main())


def test_metrics_openapi_and_snapshot_updates(tmp_path: Path) -> None:
    async def test(s: Setup) -> None:
        await s.post({"client_ip": "198.51.100.7", "content_ids": ["both.mp4", "ams.mp4"]})
        status, text = await s.get("/metrics")
        assert status == 200
        assert 'edgefleet_steering_answers_total{class="local",site="ams1"} 2.0' in text
        assert "edgefleet_steering_snapshot_version 3.0" in text
        assert "edgefleet_steering_request_seconds_bucket" in text
        status, spec = await s.get("/openapi.json")
        assert status == 200 and spec["openapi"].startswith("3.")
        assert {"/v1/steer", "/v1/steer/{content_id}"} <= set(spec["paths"])
        # A new snapshot (ams1-a and ams1-b down) reaches the answers within a few polls.
        s.control.set(two_sites(version=4, states={"ams1-a": "down", "ams1-b": "draining"}))
        for _ in range(500):
            _, doc = await s.post({"client_ip": "198.51.100.7", "content_ids": ["both.mp4"]})
            if doc["snapshot_version"] == 4:
                break
            await asyncio.sleep(0.01)
        assert doc["results"][0]["class"] == "health_miss"
        assert [u["appliance"] for u in doc["results"][0]["urls"]] == ["lon1-a"]

    run(tmp_path, test)


READY = re.compile(r"edgefleet steering: serving on http://127\.0\.0\.1:(\d+)")


def test_cli_serve_and_check_config(tmp_path: Path) -> None:
    keyring, secret, _ = write_files(tmp_path)
    config = tmp_path / "steering.toml"
    config.write_text(
        'control_url = "http://127.0.0.1:1"\n'
        f'secret_file = "{secret.name}"\nkeyring = "{keyring.name}"\nuvloop = true\n'
    )
    cmd = [sys.executable, "-m", "edgefleet.cli", "steering"]
    done = subprocess.run(
        [*cmd, "check-config", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text() + "load_bound = 0.5\n")
    done = subprocess.run(
        [*cmd, "check-config", str(bad)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "load_bound" in done.stderr
    proc = subprocess.Popen(
        [*cmd, "serve", "-c", str(config), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        match = READY.search(proc.stdout.readline())
        assert match is not None
        port = int(match.group(1))

        async def probe() -> int:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/healthz") as resp,
            ):
                return resp.status

        assert asyncio.run(probe()) == 503
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
        if proc.stdout is not None:
            proc.stdout.close()


def test_sighup_rotates_the_signing_key(tmp_path: Path) -> None:
    """A rotation: the new key is made current in the keyring file, SIGHUP, and steering signs
    with it; a broken keyring on the next SIGHUP keeps the key in use."""
    keyring, secret, ring = write_files(tmp_path)

    async def main() -> None:
        control = await FakeControl(two_sites(version=3)).start()
        config = tmp_path / "steering.toml"
        config.write_text(
            f'control_url = "{control.url}"\nsnapshot_interval_s = 0.05\n'
            f'secret_file = "{secret.name}"\nkeyring = "{keyring.name}"\n'
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edgefleet.cli", "steering", "serve", "-c", str(config),
            "--port", "0", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
            match = READY.search(line)
            assert match is not None, line
            url = f"http://127.0.0.1:{match.group(1)}/v1/steer"
            body = {"client_ip": "198.51.100.7", "content_ids": ["both.mp4"]}

            async def signing_key(http: aiohttp.ClientSession) -> str:
                for _ in range(300):
                    async with http.post(url, json=body) as resp:
                        if resp.status == 200:
                            doc = await resp.json()
                            query = urlsplit(doc["results"][0]["urls"][0]["url"]).query
                            return dict(parse_qsl(query))["k"]
                    await asyncio.sleep(0.02)
                raise AssertionError("steering never answered")

            async def wait_key(http: aiohttp.ClientSession, key: str) -> None:
                for _ in range(250):
                    if await signing_key(http) == key:
                        return
                    await asyncio.sleep(0.02)
                raise AssertionError(f"steering never signed with {key}")

            async with aiohttp.ClientSession() as http:
                assert await signing_key(http) == "k1"
                rotated = Keyring(keys={**ring.keys, "k2": bytes.fromhex(new_key())}, current="k2")
                keyring.write_text(rotated.dumps())
                proc.send_signal(signal.SIGHUP)
                await wait_key(http, "k2")
                keyring.write_text("current = \n")
                proc.send_signal(signal.SIGHUP)
                seen = []  # the first reload's line comes first, then the refusal
                while not any("keyring NOT reloaded" in x for x in seen):
                    seen.append((await asyncio.wait_for(proc.stderr.readline(), 10)).decode())
                assert "still signing with key 'k2'" in seen[-1]
                assert await signing_key(http) == "k2"
        finally:
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), 30) == 0
            await control.stop()

    asyncio.run(main())
