"""Control's fill routes: manifest publication and delivery, the fleet view, popularity.

The planner publishes manifests (PUT, admin) and reads the fleet view and the popularity
counts; each appliance's fill agent GETs its manifest with the live URLs and states of its
sources spliced in, conditionally (an ETag over generation and sources). Big bodies are
decoded and checked off the event loop; the documents are edgefleet.manifests'.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import zlib
from datetime import date
from typing import Any

from aiohttp import web

from control import views
from control.auth import ADMIN
from control.errors import ApiError, decode_json, invalid, read_limited
from control.popularity import parse_day
from control.service import CONTROL, Control
from control.store import ManifestConflict, StaleGeneration
from edgefleet.etags import none_match
from edgefleet.fleet import FieldError
from edgefleet.manifests import (
    FillManifest,
    canonical_manifest,
    manifest_to_doc,
    parse_publication,
)
from edgefleet.records import DailyRecord, write_popularity

log = logging.getLogger("edgefleet.control")

# Rows per store read while streaming an export: bounded memory, few thread hops.
POPULARITY_PAGE = 20_000


def _check_publication(
    raw: bytes, known: frozenset[str]
) -> tuple[int, list[FillManifest], list[tuple[str, dict[str, Any]]]]:
    """Decode and check a publication (run off the event loop: it may hold millions of files).

    Every appliance it names, as a manifest's owner or as a source, must be in the topology:
    a plan made against another fleet must not be half applied.
    """
    try:
        generation, manifests = parse_publication(decode_json(raw))
    except FieldError as exc:
        raise invalid(exc) from None
    for i, m in enumerate(manifests):
        if m.appliance not in known:
            field = f"manifests[{i}].appliance"
            raise ApiError(422, f"{field}: unknown appliance '{m.appliance}'", field)
        for j, f in enumerate(m.files):
            for k, source in enumerate(f.sources):
                if source not in known:
                    field = f"manifests[{i}].files[{j}].sources[{k}]"
                    raise ApiError(422, f"{field}: unknown appliance '{source}'", field)
    return generation, manifests, [(m.appliance, manifest_to_doc(m)) for m in manifests]


def _check_manifest(
    raw: bytes, name: str, known: frozenset[str]
) -> tuple[int, str, frozenset[str]]:
    """Decode and check one appliance's manifest (off the event loop: ~10 MB, 50,000 files).

    Returns (generation, canonical JSON text, source names).
    """
    try:
        head, text, sources = canonical_manifest(decode_json(raw))
    except FieldError as exc:
        raise invalid(exc) from None
    if head.appliance != name:
        raise ApiError(422, f"appliance: must be '{name}', the appliance of the path", "appliance")
    unknown = sorted(sources - known)
    if unknown:
        # Name the first place it is used, as a whole publication does.
        doc = json.loads(text)
        for j, f in enumerate(doc["files"]):
            for k, source in enumerate(f["sources"]):
                if source in unknown:
                    field = f"files[{j}].sources[{k}]"
                    raise ApiError(422, f"{field}: unknown appliance '{source}'", field)
    return head.generation, text, sources


async def put_manifests(request: web.Request) -> web.Response:
    """PUT /v1/manifests (admin): store a fill publication, all of it or nothing."""
    ctl = request.app[CONTROL]
    ctl.authorize(request, ADMIN)
    raw = await read_limited(request, ctl.config.max_publication_bytes)
    known = frozenset(ctl.registry.topology.appliance_names())
    loop = asyncio.get_running_loop()
    generation, manifests, bodies = await loop.run_in_executor(None, _check_publication, raw, known)
    try:
        stored = await ctl.in_store_thread(
            lambda: ctl.store.put_publication(generation, bodies, keep=ctl.config.manifests_keep)
        )
    except StaleGeneration as exc:
        raise ApiError(409, str(exc), "generation") from None
    heads = {m.appliance: frozenset(m.source_names()) for m in manifests}
    ctl.manifests_stored(generation, heads, stored)
    log.info("fill publication %d stored: %d manifests", generation, stored)
    return web.json_response({"generation": generation, "appliances": stored})


async def put_manifest(request: web.Request) -> web.Response:
    """PUT /v1/appliances/{name}/manifest (admin): store one appliance's manifest.

    How a large fleet's planner publishes: appliance by appliance, each body ~10 MB instead of
    one of ~10 GB. The generation rules against whole publications: control/store.py.
    """
    ctl = request.app[CONTROL]
    name = ctl.appliance_name(request, ADMIN, itself=False)
    raw = await read_limited(request, ctl.config.max_publication_bytes)
    known = frozenset(ctl.registry.topology.appliance_names())
    loop = asyncio.get_running_loop()
    generation, text, sources = await loop.run_in_executor(None, _check_manifest, raw, name, known)
    del raw
    try:
        stored = await ctl.in_store_thread(
            lambda: ctl.store.put_appliance_manifest(
                name, generation, text, keep=ctl.config.manifests_keep
            )
        )
    except (StaleGeneration, ManifestConflict) as exc:
        raise ApiError(409, str(exc), "generation") from None
    ctl.manifests_stored(generation, {name: sources}, int(stored))
    if stored:
        log.info("fill manifest %d of %s stored", generation, name)
    return web.json_response({"appliance": name, "generation": generation, "stored": stored})


def _manifest_head(found: tuple[int, str] | None) -> tuple[int, frozenset[str]] | None:
    if found is None:
        return None
    files = json.loads(found[1]).get("files", [])
    return found[0], frozenset(s for f in files for s in f.get("sources", []))


def _live_sources(
    ctl: Control, generation: int, sources: frozenset[str]
) -> tuple[dict[str, str], dict[str, str], str]:
    """(source URLs, source states, ETag) of a manifest as control sees the fleet now.

    The ETag covers the sources' live URLs and states too, not only the generation: an agent
    holding an older view of where to fetch from gets the new one, not a 304.
    """
    urls, states = views.sources(ctl.registry, sources)
    live = json.dumps([urls, states], sort_keys=True, separators=(",", ":")).encode()
    return urls, states, f'"{generation}-{zlib.crc32(live):08x}"'


async def get_manifest(request: web.Request) -> web.Response:
    """GET /v1/appliances/{name}/manifest (the appliance itself, or admin)."""
    ctl = request.app[CONTROL]
    name = ctl.appliance_name(request, ADMIN)
    if name not in ctl.manifest_heads:

        def load() -> tuple[int, frozenset[str]] | None:
            return _manifest_head(ctl.store.latest_manifest_text(name))

        head = await ctl.in_store_thread(load)
        ctl.manifest_heads.setdefault(name, head)
    head = ctl.manifest_heads[name]
    if head is None:
        ctl.metrics.manifests_served.labels("404").inc()
        raise ApiError(404, f"no fill manifest published for '{name}'", "name")
    generation, sources = head
    urls, states, etag = _live_sources(ctl, generation, sources)
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if none_match(request.headers.get("If-None-Match", ""), etag):
        ctl.metrics.manifests_served.labels("304").inc()
        return web.Response(status=304, headers=headers)
    found = await ctl.in_store_thread(ctl.store.latest_manifest_text, name)
    if found is None:  # cannot happen: manifests are only ever replaced by newer ones
        raise ApiError(404, f"no fill manifest published for '{name}'", "name")
    if found[0] != generation:  # a publication landed while we read: serve that one
        head = _manifest_head(found)
        assert head is not None
        generation, sources = head
        urls, states, etag = _live_sources(ctl, generation, sources)
        headers["ETag"] = etag
    text = found[1]
    # The stored text is the manifest object; splice the live fields in instead of decoding
    # and re-encoding a document of perhaps a million files.
    body = (
        f'{text[:-1]},"source_urls":{json.dumps(urls, separators=(",", ":"))},'
        f'"source_states":{json.dumps(states, separators=(",", ":"))}}}'
    )
    ctl.metrics.manifests_served.labels("200").inc()
    return web.Response(text=body, content_type="application/json", headers=headers)


async def fleet(request: web.Request) -> web.Response:
    """GET /v1/fleet (admin): regions, sites, appliances and inventories for the planner."""
    ctl = request.app[CONTROL]
    ctl.authorize(request, ADMIN)
    view = views.fleet_view(ctl.registry)  # a fresh copy: safe to encode in another thread
    encoded = await asyncio.get_running_loop().run_in_executor(
        None, lambda: json.dumps(view, separators=(",", ":"))
    )
    return web.Response(text=encoded, content_type="application/json")


def _popularity_text(rows: list[tuple[str, str, str, int]], fmt: str, header: bool) -> str:
    buf = io.StringIO()
    records = (DailyRecord(date.fromisoformat(day), region, cid, n) for day, region, cid, n in rows)
    write_popularity(records, buf, fmt)
    text = buf.getvalue()
    if fmt == "csv" and not header:
        # write_popularity starts every CSV with its header line; one is enough per export.
        text = text.partition("\n")[2]
    return text


POPULARITY_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


async def popularity(request: web.Request) -> web.StreamResponse:
    """GET /v1/popularity?from=&to=&format= (admin): daily records, streamed page by page."""
    ctl = request.app[CONTROL]
    ctl.authorize(request, ADMIN)
    days = []
    for key in ("from", "to"):
        try:
            days.append(parse_day(request.query.get(key, ""), key))
        except ValueError as exc:
            raise ApiError(422, str(exc), key) from None
    first_day, last_day = days
    if first_day > last_day:
        raise ApiError(422, "to: must not be before from", "to")
    fmt = request.query.get("format", "csv")
    if fmt not in POPULARITY_TYPES:
        raise ApiError(422, "format: must be csv or jsonl", "format")
    # What heartbeats reported up to now belongs in the export: write it first.
    await ctl.flush_popularity()
    response = web.StreamResponse(
        headers={"Content-Type": f"{POPULARITY_TYPES[fmt]}; charset=utf-8"}
    )
    await response.prepare(request)
    after: tuple[str, str, str] | None = None
    header = True
    while True:
        rows = await ctl.in_store_thread(
            ctl.store.popularity_page, first_day, last_day, after, POPULARITY_PAGE
        )
        text = _popularity_text(rows, fmt, header)
        header = False
        if text:
            await response.write(text.encode())
        if len(rows) < POPULARITY_PAGE:
            break
        after = rows[-1][:3]
    await response.write_eof()
    return response
