"""Control's error answers: one-line JSON naming the field, 400/404/413/422, never a 500."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from control.errors import ApiError, decode_json, invalid, unknown_appliance
from edgefleet.fleet import FieldError
from tests.control.appfleet import Runner, run, running
from tests.control.controlproc import heartbeat_doc

__all__ = ["run"]  # the fixture, imported for pytest


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


# -- the pure parts --------------------------------------------------------------------------


def test_decode_json_is_400_naming_the_document() -> None:
    assert decode_json(b'{"a": [1]}') == {"a": [1]}
    for raw in (b"{", b"\xff", b"[" * 100_000):
        with pytest.raises(ApiError) as err:
            decode_json(raw)
        assert err.value.status == 400 and err.value.field == "$"
        assert err.value.message.startswith("malformed JSON: ")


def test_one_404_and_field_errors_as_422() -> None:
    err = unknown_appliance("x" * 100)
    assert (err.status, err.field, err.message) == (404, "name", f"unknown appliance '{'x' * 80}'")
    bad = invalid(FieldError("health.cpu", "must be a finite number"))
    assert (bad.status, bad.field, bad.message) == (
        422,
        "health.cpu",
        "health.cpu: must be a finite number",
    )
    response = ApiError(401, "missing bearer token").response()
    assert json.loads(response.text or "") == {"error": "missing bearer token", "field": None}
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
