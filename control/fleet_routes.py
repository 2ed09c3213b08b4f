"""Control's fleet routes: what appliances, steering and operators say to the registry.

Appliances register and heartbeat (documents of edgefleet.heartbeat); steering pulls the
snapshot with a conditional GET; operators drain appliances and list them. Each handler
authenticates, decodes, hands the decision to the pure `control.registry` and answers.
"""

from __future__ import annotations

import logging

from aiohttp import web

from control import views
from control.auth import ADMIN, STEERING
from control.errors import ApiError, invalid, read_json
from control.service import CONTROL
from edgefleet.etags import none_match
from edgefleet.fleet import FieldError
from edgefleet.heartbeat import Heartbeat, Registration, UnnamedFieldError

log = logging.getLogger("edgefleet.control")


async def register(request: web.Request) -> web.Response:
    """POST /v1/appliances/{name}/register"""
    ctl = request.app[CONTROL]
    name = ctl.appliance_name(request)
    try:
        registration = Registration.from_json(await read_json(request, empty_ok=True))
    except FieldError as exc:
        raise invalid(exc) from None
    reply = ctl.registry.register(name, ctl.clock(), registration)
    ctl.metrics.registrations.inc()
    log.info("appliance %s registered (software %r)", name, registration.software)
    return web.json_response(reply.to_json())


async def heartbeat(request: web.Request) -> web.Response:
    """POST /v1/appliances/{name}/heartbeat"""
    ctl = request.app[CONTROL]
    name = ctl.appliance_name(request)
    try:
        hb = Heartbeat.from_json(await read_json(request))
    except FieldError as exc:
        if isinstance(exc, UnnamedFieldError):
            log.warning("heartbeat from %s: unexpected parse failure: %s", name, exc)
        raise invalid(exc) from None
    reply = ctl.registry.heartbeat(name, hb, ctl.clock())
    if hb.served:
        ctl.count_served(name, hb.served)
    ctl.metrics.heartbeats.labels(str(reply.resync).lower()).inc()
    return web.json_response(reply.to_json())


async def drain(request: web.Request) -> web.Response:
    """POST /v1/appliances/{name}/drain (admin)"""
    ctl = request.app[CONTROL]
    name = ctl.appliance_name(request, ADMIN, itself=False)
    doc = await read_json(request)
    if not isinstance(doc, dict):
        raise ApiError(422, "must be a JSON object", "$")
    flag = doc.get("drain")
    if not isinstance(flag, bool):
        raise ApiError(422, "must be true or false", "drain")
    # Durable before it is acknowledged (and before steering can see it).
    await ctl.in_store_thread(ctl.store.set_drain, name, flag)
    if ctl.registry.set_drain(name, flag):
        log.info("appliance %s: drain %s by an operator", name, "set" if flag else "cleared")
    return web.json_response({"name": name, "drain": flag})


async def snapshot(request: web.Request) -> web.Response:
    """GET /v1/snapshot (steering, admin)"""
    ctl = request.app[CONTROL]
    ctl.authorize(request, STEERING, ADMIN)
    if ctl.warming_up():
        raise ApiError(503, "control is relearning the fleet after a restart", "$")
    etag = f'"{ctl.registry.version}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if none_match(request.headers.get("If-None-Match", ""), etag):
        return web.Response(status=304, headers=headers)
    held = request.query.get("contents_version", "")
    contents_version = int(held) if held.isascii() and held.isdigit() and len(held) < 20 else None
    body = ctl.registry.snapshot_json(ctl.wall_clock(), contents_version)
    return web.Response(body=body, content_type="application/json", headers=headers)


async def appliances(request: web.Request) -> web.Response:
    """GET /v1/appliances (admin)"""
    ctl = request.app[CONTROL]
    ctl.authorize(request, ADMIN)
    body = {
        "snapshot_version": ctl.registry.version,
        "appliances": views.appliances_view(ctl.registry, ctl.clock()),
    }
    return web.json_response(body)
