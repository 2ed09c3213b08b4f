"""The control HTTP API on a real socket (127.0.0.1, port 0), under asyncio and uvloop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from control import config as control_config
from control.app import make_app
from control.service import Control
from control.store import Store
from control.topology import load_topology
from tests.control.controlproc import ControlFiles, heartbeat_doc, topology_text

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


def test_auth(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as f:
            path = "/v1/appliances/ams1-a/heartbeat"
            resp = await f.post(path, None, heartbeat_doc())
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert await resp.json() == {"error": "missing bearer token"}
            resp = await f.client.post(path, json={}, headers={"Authorization": "Bearer 00ff"})
            assert resp.status == 401
            for role in ("appliance:ams1-b", "admin", "steering"):
                assert (await f.post(path, role, heartbeat_doc())).status == 403
            resp = await f.client.get("/v1/appliances", headers=f.auth("steering"))
            assert resp.status == 403
            resp = await f.client.get("/v1/snapshot", headers=f.auth("appliance:ams1-a"))
            assert resp.status == 403
            resp = await f.post("/v1/appliances/ams1-a/drain", "appliance:ams1-a", {"drain": True})
            assert resp.status == 403
            resp = await f.client.get("/v1/snapshot", headers=f.auth("admin"))
            assert resp.status == 200

    run(scenario())


BAD_HEARTBEATS = [
    ({"state": "sleeping"}, "state"),
    ({"state": ["serving"]}, "state"),
    ({"health": []}, "health"),
    ({"health": {"cpu": "high"}}, "health.cpu"),
    ({"health": {"disks": [1]}}, "health.disks[0]"),
    ({"health": {"disks": [{"free_bytes": None}]}}, "health.disks[0].free_bytes"),
    ({"prefixes": ["10.0.0.0/33"]}, "prefixes[0]"),
    ({"prefixes": [5]}, "prefixes[0]"),
    ({"prefixes": "10.0.0.0/8"}, "prefixes"),
    ({"inventory": []}, "inventory"),
    ({"inventory": {"version": "1"}}, "inventory.version"),
    ({"inventory": {"version": 1, "full": ["../etc"]}}, "inventory.full"),
    ({"inventory": {"version": 2, "added": ["a"]}}, "inventory.base"),
    ([1, 2], "$"),
]


def test_bad_input_is_4xx_naming_the_field(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path, max_request_bytes=4096) as f:
            role = "appliance:ams1-a"
            path = "/v1/appliances/ams1-a/heartbeat"
            for doc, field in BAD_HEARTBEATS:
                resp = await f.post(path, role, doc)
                assert resp.status == 422, (doc, await resp.text())
                assert (await resp.json())["field"] == field, doc
            for raw in (b"{", b"\xff\xfe", b"[" * 2000 + b"]" * 2000, b""):
                resp = await f.client.post(path, data=raw, headers=f.auth(role))
                assert resp.status in (400, 413), raw[:10]
            resp = await f.client.post(path, data=b"{nope", headers=f.auth(role))
            assert resp.status == 400
            assert (await resp.json())["field"] == "$"
            resp = await f.post(path, role, {"inventory": {"version": 1, "full": ["a"] * 2000}})
            assert resp.status == 413
            resp = await f.post("/v1/appliances/ams1-a/register", role, {"software": 5})
            assert resp.status == 422 and (await resp.json())["field"] == "software"
            resp = await f.post("/v1/appliances/ams1-a/drain", "admin", {"drain": "yes"})
            assert resp.status == 422 and (await resp.json())["field"] == "drain"
            resp = await f.post("/v1/appliances/zz9/heartbeat", "appliance:zz9", heartbeat_doc())
            assert resp.status == 404 and (await resp.json())["field"] == "name"
            resp = await f.post("/v1/appliances/zz9/drain", "admin", {"drain": True})
            assert resp.status == 404
            resp = await f.client.get("/v2/nothing")
            assert resp.status == 404 and "error" in await resp.json()
            resp = await f.client.get(path)
            assert resp.status == 405 and "POST" in resp.headers["Allow"]
            # None of that changed what steering sees: ams1-a never became a live appliance.
            assert f.control.registry.snapshot(0.0)["appliances"][0]["state"] == "down"

    run(scenario())


def test_register_heartbeat_snapshot(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as f:
            resp = await f.post(
                "/v1/appliances/ams1-a/register",
                "appliance:ams1-a",
                {"software": "0.1.0", "boot_id": "b-1"},
            )
            assert await resp.json() == {"heartbeat_interval_s": 2.0, "inventory_version": 0}
            reply = await f.heartbeat(
                "ams1-a", inventory={"version": 4, "full": ["a.mp4", "b.mp4"]}
            )
            assert reply == {"heartbeat_interval_s": 2.0, "resync": False, "drain": False}
            await f.heartbeat("nyc1-a", inventory={"version": 1, "full": ["b.mp4"]})
            resp = await f.snapshot()
            assert resp.status == 200 and resp.content_type == "application/json"
            snap = await resp.json()
            etag = resp.headers["ETag"]
            assert etag == f'"{snap["version"]}"'
            assert [a["state"] for a in snap["appliances"]] == ["up", "down", "down", "up"]
            assert snap["contents"] == {"a.mp4": [0], "b.mp4": [0, 3]}
            assert abs(snap["generated_at"] - time.time()) < 60
            for tag in (etag, f"W/{etag}", f'"1", {etag}', "*"):
                resp = await f.snapshot(tag)
                assert resp.status == 304 and resp.headers["ETag"] == etag
            # Same load bucket: still not modified. A delta changes the contents.
            await f.heartbeat("ams1-a", cpu=0.11, inventory={"base": 4, "version": 5})
            assert (await f.snapshot(etag)).status == 304
            reply = await f.heartbeat(
                "ams1-a", inventory={"base": 5, "version": 6, "removed": ["a.mp4"]}
            )
            assert not reply["resync"]
            resp = await f.snapshot(etag)
            assert resp.status == 200 and resp.headers["ETag"] != etag
            assert (await resp.json())["contents"] == {"b.mp4": [0, 3]}
            reply = await f.heartbeat("ams1-a", inventory={"base": 2, "version": 7})
            assert reply["resync"]
            resp = await f.client.get("/v1/appliances", headers=f.auth("admin"))
            view = {a["name"]: a for a in (await resp.json())["appliances"]}
            assert view["ams1-a"]["software"] == "0.1.0"
            assert view["ams1-a"]["inventory_version"] == 6
            assert view["ams1-a"]["inventory_size"] == 1
            assert view["lon1-a"]["state"] == "down"

    run(scenario())


def test_drain_is_durable_and_told_to_the_appliance(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as f:
            await f.heartbeat("lon1-a")
            resp = await f.post("/v1/appliances/lon1-a/drain", "admin", {"drain": True})
            assert await resp.json() == {"name": "lon1-a", "drain": True}
            assert f.control.store.drains() == {"lon1-a"}
            assert (await f.heartbeat("lon1-a"))["drain"] is True
            snap = await (await f.snapshot()).json()
            assert snap["appliances"][2]["state"] == "draining"
        # Restart: soft state is gone, the drain is not, versions move forward.
        old_version = snap["version"]
        async with running(tmp_path) as f:
            snap = await (await f.snapshot()).json()
            assert snap["version"] > old_version
            assert snap["appliances"][2]["state"] == "down"
            # The first heartbeat registers; a delta cannot apply to nothing: resync.
            reply = await f.heartbeat("lon1-a", inventory={"base": 3, "version": 4})
            assert reply == {"heartbeat_interval_s": 2.0, "resync": True, "drain": True}
            assert f.control.registry.state("lon1-a").value == "draining"
            resp = await f.post("/v1/appliances/lon1-a/drain", "admin", {"drain": False})
            assert resp.status == 200
            assert f.control.store.drains() == set()
            assert (await f.heartbeat("lon1-a"))["drain"] is False

    run(scenario())


def test_marked_down_after_missed_heartbeats(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path, interval_s=0.2) as f:
            await f.heartbeat("ams1-b")
            last = time.monotonic()
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


def test_metrics_and_healthz(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as f:
            resp = await f.client.get("/healthz")
            assert resp.status == 200 and await resp.text() == "ok"
            await f.heartbeat("ams1-a")
            await f.heartbeat("ams1-a", inventory={"base": 1, "version": 2})
            await f.post("/v1/appliances/ams1-a/heartbeat", None, {})
            resp = await f.client.get("/metrics")
            assert resp.headers["Content-Type"].startswith("text/plain")
            samples = {
                (sample.name, frozenset(sample.labels.items())): sample.value
                for family in text_string_to_metric_families(await resp.text())
                for sample in family.samples
            }

            def value(name: str, **labels: str) -> float:
                return samples[(name, frozenset(labels.items()))]

            assert value("edgefleet_control_appliances", state="up") == 1
            assert value("edgefleet_control_appliances", state="down") == 3
            assert value("edgefleet_control_heartbeats_total", resync="true") == 2
            version = f.control.registry.version
            assert value("edgefleet_control_snapshot_version") == float(version)
            route = "/v1/appliances/{name}/heartbeat"
            requests = "edgefleet_control_requests_total"
            assert value(requests, route=route, method="POST", status="200") == 2
            assert value(requests, route=route, method="POST", status="401") == 1

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


def test_snapshot_waits_until_the_fleet_is_relearned(tmp_path: Path, run: Runner) -> None:
    """Just after a (re)start control does not know what appliances hold: it answers 503 for
    the snapshot (steering keeps its last good one) until every appliance has reported."""

    async def scenario() -> None:
        async with running(tmp_path, warm=False) as f:
            resp = await f.snapshot()
            assert resp.status == 503
            assert "relearning" in (await resp.json())["error"]
            names = [a.name for a in f.control.registry.topology.appliances]
            for name in names:
                await f.heartbeat(name, inventory={"version": 1, "full": []})
            resp = await f.snapshot()
            assert resp.status == 200

    run(scenario())


def test_snapshot_leaves_out_contents_the_caller_holds(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as f:
            await f.heartbeat("ams1-a", inventory={"version": 1, "full": ["a.mp4"]})
            full = await (await f.snapshot()).json()
            held = full["contents_version"]
            assert full["contents"] == {"a.mp4": [0]}
            await f.heartbeat("ams1-a", cpu=0.5)  # the load changes, the contents do not
            resp = await f.client.get(
                f"/v1/snapshot?contents_version={held}", headers=f.auth("steering")
            )
            slim = await resp.json()
            assert slim["version"] > full["version"]
            assert slim["contents_unchanged"] is True
            assert "contents" not in slim
            await f.heartbeat("ams1-a", inventory={"base": 1, "version": 2, "added": ["b.mp4"]})
            resp = await f.client.get(
                f"/v1/snapshot?contents_version={held}", headers=f.auth("steering")
            )
            fresh = await resp.json()
            assert fresh["contents"] == {"a.mp4": [0], "b.mp4": [0]}
            assert fresh["contents_version"] != held

    run(scenario())
