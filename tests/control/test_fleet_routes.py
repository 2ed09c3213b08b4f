"""The fleet routes on a real socket: register, heartbeat, drain, the conditional snapshot."""

from __future__ import annotations

import time
from pathlib import Path

from tests.control.appfleet import Runner, run, running

__all__ = ["run"]  # the fixture, imported for pytest


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
            # RFC 9110 §8.8.3: a comma inside a quoted tag does not split it.
            bare = etag.strip('"')
            for tag in (f'"1,{bare}"', f'"{bare},"', f"{bare}", '"", ,'):
                assert (await f.snapshot(tag)).status == 200, tag
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
