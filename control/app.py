"""The control plane's HTTP face (aiohttp): the application serving docs/fleet-api.md.

A thin shell: this module assembles the routes (control.fleet_routes, control.fill_routes),
the middleware that answers errors as one-line JSON (control.errors) and counts requests
(control.metrics), and the background tasks of the service (control.service). Handlers
hand decisions to `control.registry` (pure) and write durable changes through
`control.store` in one store thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from control import fill_routes, fleet_routes
from control.errors import ApiError, unknown_appliance
from control.registry import UnknownAppliance
from control.service import CONTROL, Control
from edgefleet.tasks import spawn

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics"""
    ctl = request.app[CONTROL]
    text = ctl.metrics.render(ctl.registry.counts(), ctl.registry.version)
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz"""
    return web.Response(text="ok")


@web.middleware
async def _errors_and_counts(request: web.Request, handler: Handler) -> web.StreamResponse:
    """JSON errors for ApiError and aiohttp's own 4xx; a request counter by route."""
    route = request.match_info.route.resource
    label = route.canonical if route is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except ApiError as exc:
        status = exc.status
        return exc.response()
    except web.HTTPException as exc:  # 404 for unknown paths, 405, 413 from aiohttp itself
        status = exc.status
        if exc.status < 400:
            raise
        allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else {}
        return ApiError(exc.status, exc.reason, headers=allow).response()
    except UnknownAppliance as exc:  # removed by a topology reload while the request waited
        status = 404
        return unknown_appliance(str(exc.args[0])).response()
    finally:
        request.app[CONTROL].metrics.requests.labels(label, request.method, str(status)).inc()


async def _background(app: web.Application) -> AsyncIterator[None]:
    ctl = app[CONTROL]
    tasks = [
        spawn(ctl.tick_forever(), name="control-tick"),
        spawn(ctl.flush_popularity_forever(), name="control-popularity"),
    ]
    yield
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Counts acknowledged to appliances are written before the store closes.
    await ctl.flush_popularity()
    ctl.close()


def make_app(control: Control) -> web.Application:
    """The aiohttp application serving *control*."""
    app = web.Application(
        middlewares=[_errors_and_counts], client_max_size=control.config.max_request_bytes
    )
    app[CONTROL] = control
    app.cleanup_ctx.append(_background)
    app.router.add_post("/v1/appliances/{name}/register", fleet_routes.register)
    app.router.add_post("/v1/appliances/{name}/heartbeat", fleet_routes.heartbeat)
    app.router.add_post("/v1/appliances/{name}/drain", fleet_routes.drain)
    app.router.add_get("/v1/snapshot", fleet_routes.snapshot)
    app.router.add_get("/v1/appliances", fleet_routes.appliances)
    app.router.add_put("/v1/manifests", fill_routes.put_manifests)
    app.router.add_get("/v1/appliances/{name}/manifest", fill_routes.get_manifest)
    app.router.add_put("/v1/appliances/{name}/manifest", fill_routes.put_manifest)
    app.router.add_get("/v1/fleet", fill_routes.fleet)
    app.router.add_get("/v1/popularity", fill_routes.popularity)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    return app
