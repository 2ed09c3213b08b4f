"""Control's fill endpoints on a real socket: manifests, the fleet view, popularity counts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from control.store import Store
from edgefleet.manifests import parse_manifest
from tests.control.appfleet import Fleet, Runner, run, running
from tests.control.controlproc import heartbeat_doc

__all__ = ["run"]  # the fixture, imported for pytest

CHECKSUM = "0" * 32


def manifest(appliance: str, generation: int, files: list[tuple[str, list[str]]]) -> dict[str, Any]:
    return {
        "appliance": appliance,
        "generation": generation,
        "created_at": 1795561724.5,
        "files": [
            {"id": cid, "size": 100, "checksum": CHECKSUM, "sources": sources}
            for cid, sources in files
        ],
    }


def publication(generation: int, *manifests: dict[str, Any]) -> dict[str, Any]:
    return {"generation": generation, "manifests": list(manifests)}


async def put(f: Fleet, doc: Any, role: str = "admin") -> tuple[int, Any]:
    resp = await f.client.put("/v1/manifests", json=doc, headers=f.auth(role))
    return resp.status, await resp.json()


async def beat(f: Fleet, name: str, **extra: Any) -> None:
    doc = {**heartbeat_doc(), **extra}
    resp = await f.post(f"/v1/appliances/{name}/heartbeat", f"appliance:{name}", doc)
    assert resp.status == 200, await resp.text()


def test_publish_and_serve_manifests(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as f:
            path = "/v1/appliances/ams1-a/manifest"
            resp = await f.client.get(path, headers=f.auth("appliance:ams1-a"))
            assert resp.status == 404 and "no fill manifest" in (await resp.json())["error"]
            m = manifest("ams1-a", 7, [("a.mp4", ["ams1-b", "nyc1-a"]), ("b.mp4", [])])
            doc = publication(7, m, manifest("lon1-a", 7, [("a.mp4", ["ams1-a"])]))
            assert await put(f, doc) == (200, {"generation": 7, "appliances": 2})
            # ams1-b reports where it serves; nyc1-a's topology URL stands, though it is down.
            await beat(f, "ams1-b", base_url="http://127.0.0.1:9002")
            resp = await f.client.get(path, headers=f.auth("appliance:ams1-a"))
            assert resp.status == 200
            served = parse_manifest(await resp.json())
            assert served.generation == 7 and [x.content_id for x in served.files] == [
                "a.mp4",
                "b.mp4",
            ]
            assert served.source_urls == {
                "ams1-b": "http://127.0.0.1:9002",
                "nyc1-a": "http://127.0.0.1:9004",
            }
            assert served.source_states == {"ams1-b": "up", "nyc1-a": "down"}
            etag = resp.headers["ETag"]
            assert etag.startswith('"7-')
            headers = {**f.auth("admin"), "If-None-Match": etag}
            assert (await f.client.get(path, headers=headers)).status == 304
            # A source changes state: the same plan, but the agent must learn it.
            await beat(f, "nyc1-a")
            resp = await f.client.get(path, headers=headers)
            assert resp.status == 200 and resp.headers["ETag"] != etag
            assert (await resp.json())["source_states"]["nyc1-a"] == "up"
            # Another appliance's token, steering: 403. No token: 401. Unknown name: 404.
            for role in ("appliance:lon1-a", "steering"):
                resp = await f.client.get(path, headers=f.auth(role))
                assert resp.status == 403
            assert (await f.client.get(path)).status == 401
            resp = await f.client.get("/v1/appliances/zz9/manifest", headers=f.auth("admin"))
            assert resp.status == 404 and (await resp.json())["field"] == "name"
            # Stale and repeated generations: 409, nothing replaced.
            for generation in (7, 3):
                status, body = await put(
                    f, publication(generation, manifest("ams1-a", generation, []))
                )
                assert status == 409 and body["field"] == "generation"
            resp = await f.client.get(path, headers=f.auth("admin"))
            assert (await resp.json())["generation"] == 7
            # A newer publication replaces the plan for the appliances it names.
            assert (await put(f, publication(8, manifest("ams1-a", 8, []))))[0] == 200
            resp = await f.client.get(path, headers=f.auth("appliance:ams1-a"))
            body = await resp.json()
            assert body["generation"] == 8 and body["files"] == [] and body["source_urls"] == {}
            resp = await f.client.get("/v1/appliances/lon1-a/manifest", headers=f.auth("admin"))
            assert (await resp.json())["generation"] == 7
            assert f.control.store.newest_generation() == 8
            metrics = await (await f.client.get("/metrics")).text()
            assert "edgefleet_control_manifest_generation 8.0" in metrics
            assert 'edgefleet_control_manifests_served_total{result="304"} 1.0' in metrics
        # A restarted control serves the stored plan (read from SQLite on first request).
        async with running(tmp_path) as f:
            resp = await f.client.get(path, headers=f.auth("appliance:ams1-a"))
            assert (await resp.json())["generation"] == 8

    run(scenario())


def test_bad_publications_name_the_field(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path, max_publication_bytes=4096) as f:
            cases = [
                (publication(1, manifest("zz9", 1, [])), 422, "manifests[0].appliance"),
                (
                    publication(1, manifest("ams1-a", 1, [("a", ["nowhere"])])),
                    422,
                    "manifests[0].files[0].sources[0]",
                ),
                (publication(1, manifest("ams1-a", 2, [])), 422, "manifests[0].generation"),
                ({"generation": -1, "manifests": []}, 422, "generation"),
                ({"generation": 1}, 422, "manifests"),
                (
                    publication(1, manifest("ams1-a", 1, [("a", ["ams1-a"])])),
                    422,
                    "manifests[0].files[0].sources",
                ),
                (
                    publication(1, manifest("ams1-a", 1, [("x", [])] * 2)),
                    422,
                    "manifests[0].files[1].id",
                ),
            ]
            for doc, status, field in cases:
                got, body = await put(f, doc)
                assert (got, body.get("field")) == (status, field), (doc, body)
            resp = await f.client.put("/v1/manifests", data=b"{nope", headers=f.auth("admin"))
            assert resp.status == 400 and (await resp.json())["field"] == "$"
            big = publication(1, manifest("ams1-a", 1, [(f"f{i}", []) for i in range(100)]))
            assert (await put(f, big))[0] == 413
            assert (await put(f, publication(1), role="steering"))[0] == 403
            assert (await put(f, publication(1), role="appliance:ams1-a"))[0] == 403
            assert f.control.store.newest_generation() is None  # none of that was stored

    run(scenario())


def test_fleet_view(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as f:
            disks = [
                {"id": "d0", "root": "/d0", "free_bytes": 40, "total_bytes": 100},
                {"id": "d1", "root": "/d1", "free_bytes": 5, "total_bytes": 50, "failed": True},
            ]
            doc = heartbeat_doc(inventory={"version": 1, "full": ["b.mp4", "a.mp4"]})
            doc["health"]["disks"] = disks
            resp = await f.post("/v1/appliances/ams1-b/heartbeat", "appliance:ams1-b", doc)
            assert resp.status == 200
            resp = await f.client.get("/v1/fleet", headers=f.auth("admin"))
            view = await resp.json()
            assert view["regions"] == ["eu-west", "us-east"]
            assert view["sites"][0] == {
                "name": "ams1",
                "region": "eu-west",
                "role": "edge",
                "costs": {"lon1": 10.0},
            }
            apps = {a["name"]: a for a in view["appliances"]}
            assert apps["ams1-b"] == {
                "name": "ams1-b",
                "site": "ams1",
                "state": "up",
                "base_url": "http://127.0.0.1:9002",
                "weight": 2.0,
                "capacity_bytes": 100,  # failed disks do not count
                "free_bytes": 40,
            }
            assert apps["lon1-a"]["state"] == "down" and apps["lon1-a"]["capacity_bytes"] == 0
            assert view["inventories"] == {"ams1-b": ["a.mp4", "b.mp4"]}
            assert (await f.client.get("/v1/fleet", headers=f.auth("steering"))).status == 403

    run(scenario())


def test_served_counts_become_popularity_records(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        day = "2026-11-24"
        async with running(tmp_path) as f:
            f.control.wall_clock = lambda: 1795561724.5  # 2026-11-24, UTC
            await beat(f, "ams1-a", served={"a.mp4": 100, "b.mp4": 0})
            await beat(f, "ams1-b", served={"a.mp4": 50})
            await beat(f, "lon1-a", served={"c.mp4": 7})
            await beat(f, "nyc1-a", served={"a.mp4": 1})
            await beat(f, "nyc1-a")
            path = f"/v1/popularity?from={day}&to={day}"
            resp = await f.client.get(path, headers=f.auth("admin"))
            assert resp.status == 200 and resp.content_type == "text/csv"
            rows = list(csv.reader(io.StringIO(await resp.text())))
            assert rows == [
                ["day", "region", "content_id", "bytes_streamed"],
                [day, "eu-west", "a.mp4", "150"],
                [day, "eu-west", "c.mp4", "7"],
                [day, "us-east", "a.mp4", "1"],
            ]
            resp = await f.client.get(path + "&format=jsonl", headers=f.auth("admin"))
            lines = [json.loads(line) for line in (await resp.text()).splitlines()]
            assert lines[0] == {
                "day": day,
                "region": "eu-west",
                "content_id": "a.mp4",
                "bytes_streamed": 150,
            }
            assert len(lines) == 3
            resp = await f.client.get(
                "/v1/popularity?from=2026-11-25&to=2026-11-30", headers=f.auth("admin")
            )
            assert await resp.text() == "day,region,content_id,bytes_streamed\n"
            for query, field in [
                ("to=2026-11-24", "from"),
                ("from=2026-11-24&to=2026-11-32", "to"),
                ("from=2026-11-25&to=2026-11-24", "to"),
                (f"from={day}&to={day}&format=xml", "format"),
            ]:
                resp = await f.client.get(f"/v1/popularity?{query}", headers=f.auth("admin"))
                assert resp.status == 422 and (await resp.json())["field"] == field
            resp = await f.client.get(path, headers=f.auth("steering"))
            assert resp.status == 403
            bad = {**heartbeat_doc(), "served": {"a.mp4": -5}}
            resp = await f.post("/v1/appliances/ams1-a/heartbeat", "appliance:ams1-a", bad)
            assert resp.status == 422 and (await resp.json())["field"] == "served.a.mp4"
            await beat(f, "ams1-a", served={"a.mp4": 1000})  # buffered, then stopped: flushed
            metrics = await (await f.client.get("/metrics")).text()
            assert "edgefleet_control_popularity_bytes_total 1158.0" in metrics
        with Store(tmp_path / "control.sqlite3") as store:
            assert store.popularity_page(day, day)[0] == (day, "eu-west", "a.mp4", 1150)

    run(scenario())


def test_large_export_streams_in_pages(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as f:
            counts = {("2026-11-24", "eu-west", f"f{i:06d}"): i + 1 for i in range(45_000)}
            f.control.store.add_popularity(counts)
            resp = await f.client.get(
                "/v1/popularity?from=2026-11-24&to=2026-11-24", headers=f.auth("admin")
            )
            text = await resp.text()
            lines = text.splitlines()
            assert lines[0] == "day,region,content_id,bytes_streamed"
            assert len(lines) == 45_001 and lines.count(lines[0]) == 1  # one header
            assert lines[-1] == "2026-11-24,eu-west,f044999,45000"

    run(scenario())


async def put_one(f: Fleet, name: str, doc: Any, role: str = "admin") -> tuple[int, Any]:
    path = f"/v1/appliances/{name}/manifest"
    resp = await f.client.put(path, json=doc, headers=f.auth(role))
    return resp.status, await resp.json()


def test_publish_one_appliance_at_a_time(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as f:
            path = "/v1/appliances/ams1-a/manifest"
            m = manifest("ams1-a", 7, [("a.mp4", ["ams1-b", "nyc1-a"]), ("b.mp4", [])])
            assert await put_one(f, "ams1-a", m) == (
                200,
                {"appliance": "ams1-a", "generation": 7, "stored": True},
            )
            # A retried PUT (the answer was lost) is idempotent.
            assert (await put_one(f, "ams1-a", m))[1]["stored"] is False
            await beat(f, "ams1-b", base_url="http://127.0.0.1:9002")
            resp = await f.client.get(path, headers=f.auth("appliance:ams1-a"))
            served = parse_manifest(await resp.json())
            assert served.generation == 7 and served.files == parse_manifest(m).files
            assert served.source_urls["ams1-b"] == "http://127.0.0.1:9002"
            assert resp.headers["ETag"].startswith('"7-')
            # Another document under the same generation, or an older one: 409, nothing kept.
            other = manifest("ams1-a", 7, [("c.mp4", [])])
            for doc in (other, manifest("ams1-a", 6, [])):
                status, body = await put_one(f, "ams1-a", doc)
                assert (status, body["field"]) == (409, "generation"), body
            resp = await f.client.get(path, headers=f.auth("admin"))
            assert [x["id"] for x in (await resp.json())["files"]] == ["a.mp4", "b.mp4"]
            # The rest of generation 7, appliance by appliance; then a whole publication must
            # be newer than 7, and a late generation 5 still reaches an appliance that has less.
            assert (await put_one(f, "lon1-a", manifest("lon1-a", 7, [])))[0] == 200
            assert (await put(f, publication(7, manifest("ams1-b", 7, []))))[0] == 409
            assert (await put(f, publication(8, manifest("ams1-b", 8, []))))[0] == 200
            assert (await put_one(f, "nyc1-a", manifest("nyc1-a", 5, [])))[0] == 200
            assert (await put_one(f, "ams1-b", manifest("ams1-b", 7, [])))[0] == 409
            assert f.control.store.newest_generation() == 8
            metrics = await (await f.client.get("/metrics")).text()
            assert "edgefleet_control_manifest_generation 8.0" in metrics
            assert "edgefleet_control_manifests_published_total 4.0" in metrics
        async with running(tmp_path) as f:  # durable, read back after a restart
            resp = await f.client.get("/v1/appliances/nyc1-a/manifest", headers=f.auth("admin"))
            assert (await resp.json())["generation"] == 5

    run(scenario())


def test_bad_appliance_manifests_name_the_field(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path, max_publication_bytes=4096) as f:
            good = manifest("ams1-a", 1, [("a.mp4", ["lon1-a"])])
            cases: list[tuple[str, Any, int, str]] = [
                ("ams1-a", manifest("lon1-a", 1, []), 422, "appliance"),
                (
                    "ams1-a",
                    manifest("ams1-a", 1, [("a", ["lon1-a", "nowhere"])]),
                    422,
                    "files[0].sources[1]",
                ),
                ("ams1-a", manifest("ams1-a", 1, [("a", ["ams1-a"])]), 422, "files[0].sources"),
                ("ams1-a", manifest("ams1-a", 1, [("x", [])] * 2), 422, "files[1].id"),
                ("ams1-a", {**good, "generation": -1}, 422, "generation"),
                (
                    "ams1-a",
                    {**good, "files": [{**good["files"][0], "size": "1"}]},
                    422,
                    "files[0].size",
                ),
                ("ams1-a", [], 422, "$"),
                ("zz9", manifest("zz9", 1, []), 404, "name"),
            ]
            for name, doc, status, field in cases:
                got, body = await put_one(f, name, doc)
                assert (got, body.get("field")) == (status, field), (doc, body)
            resp = await f.client.put(
                "/v1/appliances/ams1-a/manifest", data=b"{nope", headers=f.auth("admin")
            )
            assert resp.status == 400 and (await resp.json())["field"] == "$"
            big = manifest("ams1-a", 1, [(f"f{i}", []) for i in range(100)])
            assert (await put_one(f, "ams1-a", big))[0] == 413
            for role in ("steering", "appliance:ams1-a"):
                assert (await put_one(f, "ams1-a", good, role=role))[0] == 403
            assert f.control.store.newest_generation() is None  # none of that was stored

    run(scenario())
