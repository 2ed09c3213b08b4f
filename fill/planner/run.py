"""`edgefleet fill plan`: read catalog, popularity and fleet, plan, write and/or publish.

The I/O shell around plan.py. Inputs come from files (catalog CSV/JSONL or an origin
appliance's LMDB index; popularity record files, streamed; a fleet document, the body of
`GET /v1/fleet`) or from control (`GET /v1/fleet`, `GET /v1/popularity`, admin token). Outputs:
`--out DIR` (report.json, manifests/<appliance>.json) and `--publish` (one
`PUT /v1/appliances/{name}/manifest` per appliance, `PUBLISH_IN_FLIGHT` at a time, each retried
`PUBLISH_ATTEMPTS` times on a connection error or a 5xx). Manifests are JSON text made straight
from the plan's arrays (manifest_text.py), one appliance at a time, so memory holds a few
manifests, never the fleet's. Bad input, or appliances left unpublished, end with one line
naming the file, line, field or appliances: exit status 2.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgefleet.fleet import FieldError, load_secret, role_token
from edgefleet.manifests import NAME_RE
from edgefleet.records import CatalogEntry, read_catalog, read_popularity
from fill.planner.forecast import ColumnForecast, ForecastParams
from fill.planner.manifest_text import manifest_texts
from fill.planner.model import I64, Appliance, PlacementParams
from fill.planner.plan import (
    Catalog,
    Fleet,
    FleetPlan,
    Site,
    plan_fleet,
    report_table,
    with_budgets,
)

HTTP_TIMEOUT_S = 60.0
PUBLISH_IN_FLIGHT = 4  # manifests being PUT at once: bounds memory and control's load
PUBLISH_ATTEMPTS = 3
PUBLISH_RETRY_S = 1.0  # doubled after each failed attempt


class PlanInputError(ValueError):
    """An input of the planner is missing or bad; the message names it."""


class TransientHTTPError(PlanInputError):
    """A request that may succeed if tried again: no connection, a timeout, a 5xx or a 429."""


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """Everything `edgefleet fill plan` was asked to do."""

    catalog: str | None = None
    catalog_index: str | None = None
    popularity: tuple[str, ...] = ()
    popularity_from_control: bool = False
    fleet: str | None = None
    control: str | None = None
    secret_file: str | None = None
    out: str | None = None
    publish: bool = False
    generation: int | None = None
    fill_rate_bps: float = 1.2e9
    fill_window_hours: float = 12.0
    reserve_fraction: float = 0.0
    half_life_days: float = 3.0
    prior_median_fraction: float = 0.5
    min_copies: int = 1
    max_copies: int | None = None
    popularity_per_copy: float = math.inf
    hysteresis: float = 1.1
    max_sources: int = 8


# Inputs ----------------------------------------------------------------------------------------


def catalog_from_index(path: str) -> Iterator[CatalogEntry]:
    """The catalog of an origin appliance's LMDB index (read-only, through the edge's public
    reader: the planner knows nothing of the index layout)."""
    # Imported here: a planning host without the edge's dependencies (lmdb) still plans from
    # catalog files.
    from edge.store import IndexUnavailable, read_catalog

    try:
        yield from read_catalog(path)
    except IndexUnavailable as exc:
        raise PlanInputError(str(exc)) from None


def fleet_from_doc(
    doc: Any, catalog: Catalog, reserve_fraction: float = 0.0
) -> tuple[Fleet, dict[str, I64]]:
    """The fleet and inventories of a `GET /v1/fleet` document; FieldError names bad fields."""
    if not isinstance(doc, dict):
        raise FieldError("$", "must be a JSON object")
    raw_sites = doc.get("sites")
    if not isinstance(raw_sites, list):
        raise FieldError("sites", "must be a list")
    sites = []
    for i, s in enumerate(raw_sites):
        where = f"sites[{i}]."
        if not isinstance(s, dict):
            raise FieldError(where[:-1], "must be an object")
        name, region = s.get("name"), s.get("region")
        if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
            raise FieldError(f"{where}name", "must be a site name")
        if not isinstance(region, str) or not region:
            raise FieldError(f"{where}region", "must be a region name")
        role = s.get("role", "edge")
        if role not in ("edge", "origin"):
            raise FieldError(f"{where}role", 'must be "edge" or "origin"')
        costs = s.get("costs", {})
        if not isinstance(costs, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in costs.values()
        ):
            raise FieldError(f"{where}costs", "must map site names to numbers")
        sites.append(Site(name, region, role, {k: float(v) for k, v in costs.items()}))
    raw_apps = doc.get("appliances")
    if not isinstance(raw_apps, list):
        raise FieldError("appliances", "must be a list")
    appliances: list[tuple[str, Appliance]] = []
    for i, a in enumerate(raw_apps):
        where = f"appliances[{i}]."
        if not isinstance(a, dict):
            raise FieldError(where[:-1], "must be an object")
        name, site = a.get("name"), a.get("site")
        if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
            raise FieldError(f"{where}name", "must be an appliance name")
        if not isinstance(site, str):
            raise FieldError(f"{where}site", "must be a site name")
        capacity = a.get("capacity_bytes", 0)
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise FieldError(f"{where}capacity_bytes", "must be an integer >= 0")
        weight = a.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise FieldError(f"{where}weight", "must be a number > 0")
        reserve = int(capacity * reserve_fraction)
        appliances.append((site, Appliance(name, capacity, reserve, float(weight))))
    try:
        fleet = Fleet(tuple(sites), tuple(appliances))
    except ValueError as exc:
        raise FieldError("appliances", str(exc)) from None
    raw_inv = doc.get("inventories", {})
    if not isinstance(raw_inv, dict):
        raise FieldError("inventories", "must map appliance names to lists of ids")
    inventories: dict[str, I64] = {}
    for name, ids in raw_inv.items():
        if not isinstance(ids, list) or not all(isinstance(c, str) for c in ids):
            raise FieldError(f"inventories.{name}", "must be a list of content ids")
        inventories[name] = catalog.indices(ids)
    return fleet, inventories


def _request(url: str, token: str, method: str = "GET", body: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            data: bytes = resp.read()
            return data
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:300].decode(errors="replace").strip()
        error = TransientHTTPError if exc.code >= 500 or exc.code == 429 else PlanInputError
        raise error(f"{method} {url}: HTTP {exc.code} {detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise TransientHTTPError(f"{method} {url}: {exc}") from None


def _control_token(opts: PlanOptions) -> str:
    if not opts.secret_file:
        raise PlanInputError("--control needs --secret-file (the fleet secret)")
    return role_token(load_secret(opts.secret_file), "admin")


# The plan --------------------------------------------------------------------------------------


def check_options(opts: PlanOptions) -> None:
    """Reject a combination of options that cannot make a run, naming the options and their
    keys in a planner config (config.py)."""
    if bool(opts.catalog) == bool(opts.catalog_index):
        raise PlanInputError(
            "give exactly one of --catalog FILE or --catalog-index DIR "
            "(inputs.catalog, inputs.catalog_index)"
        )
    if bool(opts.fleet) == bool(opts.control):
        raise PlanInputError(
            "give exactly one of --fleet FILE or --control URL (fleet.document, fleet.control_url)"
        )
    if (opts.publish or opts.popularity_from_control) and not opts.control:
        raise PlanInputError(
            "--publish and --popularity-from-control need --control URL "
            "(output.publish, inputs.popularity_from_control need fleet.control_url)"
        )
    if not opts.popularity and not opts.popularity_from_control:
        raise PlanInputError(
            "give --popularity FILE... and/or --popularity-from-control "
            "(inputs.popularity, inputs.popularity_from_control)"
        )


def run_plan(opts: PlanOptions, echo: Any = print) -> FleetPlan:
    """Read the inputs, plan, write and publish as *opts* says; returns the plan."""
    started = time.monotonic()
    check_options(opts)
    entries = (
        read_catalog(opts.catalog) if opts.catalog else catalog_from_index(str(opts.catalog_index))
    )
    try:
        catalog = Catalog.from_entries(entries)
    except ValueError as exc:
        raise PlanInputError(f"{opts.catalog or opts.catalog_index}: {exc}") from None

    token = _control_token(opts) if opts.control else ""
    base = (opts.control or "").rstrip("/")
    if opts.fleet:
        try:
            doc = json.loads(Path(opts.fleet).read_text())
        except (OSError, ValueError) as exc:
            raise PlanInputError(f"{opts.fleet}: {exc}") from None
        where = opts.fleet
    else:
        try:
            doc = json.loads(_request(f"{base}/v1/fleet", token))
        except ValueError:
            raise PlanInputError(f"{base}/v1/fleet: not JSON") from None
        where = f"{base}/v1/fleet"
    try:
        fleet, inventories = fleet_from_doc(doc, catalog, opts.reserve_fraction)
    except FieldError as exc:
        raise PlanInputError(f"{where}: {exc}") from None
    window_s = opts.fill_window_hours * 3600
    fleet = Fleet(fleet.sites, with_budgets(fleet.appliances, opts.fill_rate_bps, window_s))

    regions = sorted({s.region for s in fleet.sites})
    columns = ColumnForecast(
        catalog.index,
        catalog.sizes,
        ForecastParams(
            half_life_days=opts.half_life_days,
            prior_median_fraction=opts.prior_median_fraction,
        ),
        regions=regions,
    )
    for path in opts.popularity:
        columns.add_all(read_popularity(path))
    if opts.popularity_from_control:
        columns.add_all(_popularity_from_control(base, token))
    forecasts = columns.result()
    params = PlacementParams(
        min_copies=opts.min_copies,
        max_copies=opts.max_copies,
        popularity_per_copy=opts.popularity_per_copy,
        hysteresis=opts.hysteresis,
    )
    plan = plan_fleet(catalog, forecasts, fleet, inventories, params, max_sources=opts.max_sources)
    report = plan.report(opts.fill_rate_bps, window_s)
    echo(report_table(report))

    generation = opts.generation if opts.generation is not None else int(time.time())
    created = time.time()
    texts = manifest_texts(plan, generation, created)
    if opts.out:
        texts = _written(Path(opts.out), texts)
    if opts.publish:
        total = sum(len(r.appliances) for r in plan.sites)
        summary = publish_manifests(base, token, texts, total, echo)
        if summary.failed:
            raise PlanInputError(summary.failure_line(generation))
        echo(
            f"published generation {generation}: {len(summary.published)} appliances, "
            f"{summary.bytes / 1e6:,.1f} MB in {summary.seconds:.1f} s"
        )
    else:
        for _ in texts:  # --out alone: write them all
            pass
    if opts.out:
        doc = {"generation": generation, "created_at": created, **report}
        _atomic_write(Path(opts.out) / "report.json", json.dumps(doc, indent=1).encode())
    echo(f"planned {len(catalog)} files in {time.monotonic() - started:.1f} s")
    return plan


def _popularity_from_control(base: str, token: str) -> Iterator[Any]:
    """Records of GET /v1/popularity, spooled to a temporary file and streamed from it."""
    data = _request(f"{base}/v1/popularity?format=jsonl", token)
    fd, name = tempfile.mkstemp(suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        del data
        yield from read_popularity(name)
    finally:
        os.unlink(name)


def _written(out: Path, texts: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, bytes]]:
    """Write each manifest to out/manifests/<appliance>.json as it passes."""
    (out / "manifests").mkdir(parents=True, exist_ok=True)
    for name, text in texts:
        _atomic_write(out / "manifests" / f"{name}.json", text)
        yield name, text


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# Publication -----------------------------------------------------------------------------------


@dataclass(slots=True)
class PublishSummary:
    """What a publication did: appliances published, failed (with why), not attempted."""

    published: list[str]
    failed: dict[str, str]
    not_attempted: list[str]
    bytes: int = 0
    seconds: float = 0.0

    def failure_line(self, generation: int, shown: int = 10) -> str:
        """One line naming the appliances left without generation *generation*."""
        names = [f"{n} ({why})" for n, why in sorted(self.failed.items())]
        names += [f"{n} (not attempted)" for n in self.not_attempted]
        more = f", and {len(names) - shown} more" if len(names) > shown else ""
        return (
            f"generation {generation} published to {len(self.published)} appliances; "
            f"NOT published to {len(names)}: {', '.join(names[:shown])}{more}"
        )


def put_with_retries(
    url: str,
    token: str,
    body: bytes,
    attempts: int = PUBLISH_ATTEMPTS,
    retry_s: float = PUBLISH_RETRY_S,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """PUT *body*; a transient failure is tried again, a refusal (4xx) is final."""
    for attempt in range(attempts):
        try:
            _request(url, token, "PUT", body)
            return
        except TransientHTTPError:
            if attempt == attempts - 1:
                raise
            sleep(retry_s * 2**attempt)


def publish_manifests(
    base: str,
    token: str,
    texts: Iterable[tuple[str, bytes]],
    total: int,
    echo: Any = print,
    *,
    in_flight: int = PUBLISH_IN_FLIGHT,
    put: Callable[[str, str, bytes], None] = put_with_retries,
) -> PublishSummary:
    """PUT each (appliance, manifest) to control, *in_flight* at a time, as *texts* makes them.

    A failed appliance does not stop the others: each manifest is self-consistent, and a peer
    that lacks a file answers 404, so the agent escalates to the next source. When the first
    2 x in_flight all fail (control down, or refusing the generation), the rest are not tried
    (but still taken from *texts*, so that `--out` writes them all).
    """
    started = time.monotonic()
    summary = PublishSummary([], {}, [])
    pending: dict[Future[None], tuple[str, int]] = {}
    step = max(1, total // 10)

    def collect(done: Iterable[Future[None]]) -> None:
        for future in done:
            name, size = pending.pop(future)
            try:
                future.result()
            except PlanInputError as exc:
                # "PUT <url>: HTTP 409 {...}": the reason after the URL (which has no ": ").
                summary.failed[name] = str(exc).partition(": ")[2] or str(exc)
                echo(f"publish {name}: FAILED: {exc}")
            else:
                summary.published.append(name)
                summary.bytes += size
                if total >= 10 and len(summary.published) % step == 0:  # a fleet, not a demo
                    echo(
                        f"published {len(summary.published)}/{total} appliances "
                        f"({summary.bytes / 1e6:,.0f} MB, {time.monotonic() - started:.0f} s)"
                    )

    with ThreadPoolExecutor(in_flight, thread_name_prefix="publish") as pool:
        for name, text in texts:
            if not summary.published and len(summary.failed) >= 2 * in_flight:
                summary.not_attempted.append(name)
                continue
            while len(pending) >= in_flight:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                collect(done)
            url = f"{base}/v1/appliances/{name}/manifest"
            pending[pool.submit(put, url, token, text)] = (name, len(text))
        collect(wait(pending).done)
    summary.seconds = time.monotonic() - started
    return summary
