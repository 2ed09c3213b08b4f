"""The steering HTTP API (aiohttp): a thin shell around steering.api and steering.ranking.

Routes (docs/fleet-api.md, steering/openapi.json):

    POST /v1/steer                  ranked signed URLs for up to max_ids_per_request ids
    GET  /v1/steer/{content_id}     the same for one id (?client_ip=…&max_urls=…)
    GET  /openapi.json              the OpenAPI 3 description, shipped as package data
    GET  /metrics                   Prometheus text
    GET  /healthz                   200 with the snapshot's age; 503 before the first one

The snapshot puller runs for the application's lifetime (a cleanup context owns its HTTP
session and task). Until the first snapshot arrives the steering routes answer 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field
from importlib import resources

import aiohttp
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from edgefleet.fleet import role_token
from edgefleet.tasks import spawn
from edgefleet.tokens import Keyring, KeyringError
from steering.api import Answerer, RequestError, SteerRequest, parse_body, parse_query
from steering.config import SteeringConfig
from steering.metrics import SteeringMetrics
from steering.ranking import LoadTracker
from steering.snapshot import SnapshotPuller

log = logging.getLogger("steering.app")

JSON = "application/json"
NO_SNAPSHOT = RequestError(503, None, "no fleet snapshot from control yet")
# Room for max_ids_per_request ids of the longest form, with JSON punctuation.
BYTES_PER_ID = 160


@dataclass
class Steering:
    """What the handlers of one application share."""

    conf: SteeringConfig
    answerer: Answerer
    token: str
    metrics: SteeringMetrics = field(init=False)
    puller: SnapshotPuller | None = None
    openapi: bytes = b""

    def __post_init__(self) -> None:
        self.metrics = SteeringMetrics(lambda: self.puller)


STATE = web.AppKey("steering", Steering)


def _json(doc: object, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(doc, separators=(",", ":")).encode(), status=status, content_type=JSON
    )


def _error(exc: RequestError) -> web.Response:
    return web.Response(body=exc.document(), status=exc.status, content_type=JSON)


def _answer(state: Steering, route: str, req: SteerRequest, started: float) -> web.Response:
    puller = state.puller
    index = puller.index if puller is not None else None
    if index is None:
        response = _error(NO_SNAPSHOT)
    else:
        doc, classes = state.answerer.answer(index, req, time.time(), time.monotonic())
        state.metrics.answered(classes)
        response = _json(doc)
    state.metrics.responded(route, response.status, time.perf_counter() - started)
    return response


async def post_steer(request: web.Request) -> web.Response:
    """POST /v1/steer."""
    started = time.perf_counter()
    state = request.app[STATE]
    try:
        body = await request.read()
        req = parse_body(body, state.conf.max_ids_per_request, state.conf.default_max_urls)
    except web.HTTPRequestEntityTooLarge:
        return _failed(state, "post", RequestError(413, "$", "request body too large"), started)
    except RequestPayloadError:
        # A body that does not decode under its Content-Encoding (or ends early) is the
        # client's fault, not a 500 (found by tests/steering/test_app_fuzz.py).
        err = RequestError(400, "$", "request body cannot be read (bad Content-Encoding?)")
        return _failed(state, "post", err, started)
    except RequestError as exc:
        return _failed(state, "post", exc, started)
    return _answer(state, "post", req, started)


async def get_steer(request: web.Request) -> web.Response:
    """GET /v1/steer/{content_id}."""
    started = time.perf_counter()
    state = request.app[STATE]
    try:
        req = parse_query(
            request.match_info["content_id"], request.query, state.conf.default_max_urls
        )
    except RequestError as exc:
        return _failed(state, "get", exc, started)
    return _answer(state, "get", req, started)


def _failed(state: Steering, route: str, exc: RequestError, started: float) -> web.Response:
    response = _error(exc)
    state.metrics.responded(route, exc.status, time.perf_counter() - started)
    return response


async def healthz(request: web.Request) -> web.Response:
    """200 with the snapshot's age and version; 503 before the first snapshot."""
    puller = request.app[STATE].puller
    index = puller.index if puller is not None else None
    if puller is None or index is None:
        return _json({"status": "no snapshot yet", "snapshot_age_s": None}, status=503)
    return _json(
        {"status": "ok", "snapshot_age_s": puller.age_s(), "snapshot_version": index.version}
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition."""
    body = request.app[STATE].metrics.render()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})


async def openapi(request: web.Request) -> web.Response:
    """The hand-written OpenAPI document."""
    return web.Response(body=request.app[STATE].openapi, content_type=JSON)


async def _pull_snapshots(app: web.Application) -> AsyncIterator[None]:
    """Run the snapshot puller for the application's lifetime."""
    state = app[STATE]
    conf = state.conf
    async with aiohttp.ClientSession() as session:
        puller = SnapshotPuller(
            session,
            conf.control_url,
            state.token,
            interval_s=conf.snapshot_interval_s,
            timeout_s=conf.snapshot_timeout_s,
        )
        state.puller = puller
        task = spawn(puller.run(), name="steering-snapshot-puller")
        yield
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def reload_keyring(app: web.Application) -> bool:
    """SIGHUP: sign with the keyring file as it is now; keep the one in use if it is invalid
    (a rotation adds the new key on every edge first, then makes it current here)."""
    state = app[STATE]
    try:
        keyring = Keyring.load(state.conf.keyring)
    except KeyringError as exc:
        log.error(
            "keyring NOT reloaded, still signing with key %r: %s",
            state.answerer.keyring.current,
            exc,
        )
        return False
    state.answerer.keyring = keyring
    log.info("keyring reloaded: signing with key %r", keyring.current)
    return True


def make_app(conf: SteeringConfig, keyring: Keyring, secret: bytes) -> web.Application:
    """The steering application, ready for an AppRunner."""
    state = Steering(
        conf=conf,
        answerer=Answerer(conf, keyring, LoadTracker(conf.load_half_life_s)),
        token=role_token(secret, "steering"),
        openapi=resources.files("steering").joinpath("openapi.json").read_bytes(),
    )
    app = web.Application(client_max_size=max(65536, conf.max_ids_per_request * BYTES_PER_ID))
    app[STATE] = state
    app.cleanup_ctx.append(_pull_snapshots)
    app.router.add_post("/v1/steer", post_steer)
    app.router.add_get("/v1/steer/{content_id}", get_steer)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
