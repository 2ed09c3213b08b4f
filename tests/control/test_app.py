"""The assembled control application on a real socket: auth on every route, /metrics, /healthz."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.control.appfleet import Runner, run, running
from tests.control.controlproc import heartbeat_doc

__all__ = ["run"]  # the fixture, imported for pytest


def test_auth(tmp_path: Path, run: Runner) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as f:
            path = "/v1/appliances/ams1-a/heartbeat"
            resp = await f.post(path, None, heartbeat_doc())
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert await resp.json() == {"error": "missing bearer token", "field": None}
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
