"""The fleet plan: every edge site placed from its region's forecast, manifests with sources.

Pure: catalog, forecasts, fleet and inventories in; per-site plans, a fleet report and (lazily,
one appliance at a time) `edgefleet.manifests.FillManifest`s out. run.py reads the
inputs and writes or publishes the outputs.

- Each edge site is planned alone (greedy.py, nightly.py) from the forecast of its
  region, with its appliances' capacities, weights and nightly budgets. Origin sites hold the
  whole catalog and are never planned.
- A manifest lists what the appliance holds after tonight, most valuable first, each file with
  ranked sources: site peers that will hold it, then appliances of the region's other edge sites
  that will hold it, nearest site first (the site's `costs`, read in either direction; sites
  without a cost after, by name), then origin appliances, nearest first. Inside a site the
  order is the rendezvous order (edgefleet/rendezvous.py), so downloads spread over the holders the
  same way steering spreads clients. At most `max_sources` per file; never the appliance itself.

Memory: per-file data are numpy columns aligned with the catalog (int64 indices), so a plan of
1,000,000 files over 1,000 appliances holds a few hundred MB, not Python objects per placement.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgefleet.manifests import FillManifest, ManifestFile
from edgefleet.records import CatalogEntry
from edgefleet.rendezvous import appliance_seed, content_hash, hrw_scores
from fill.planner.greedy import choose
from fill.planner.model import F64, I64, U64, Appliance, PlacementParams, SiteReport, SiteTarget
from fill.planner.nightly import SiteOutcome, settle

ROLES = ("edge", "origin")


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every file that can be placed, as columns sorted by content id."""

    ids: list[str]
    sizes: I64
    checksums: list[str]
    hashes: U64
    index: dict[str, int]

    @classmethod
    def from_entries(cls, entries: Iterable[CatalogEntry]) -> Catalog:
        """Build the columns; a content id listed twice is a ValueError naming it."""
        rows = sorted((e.content_id, e.size, e.checksum) for e in entries)
        for a, b in itertools.pairwise(rows):
            if a[0] == b[0]:
                raise ValueError(f"catalog lists {a[0]!r} twice")
        ids = [r[0] for r in rows]
        return cls(
            ids=ids,
            sizes=np.array([r[1] for r in rows], dtype=np.int64),
            checksums=[r[2] for r in rows],
            hashes=np.array([content_hash(c) for c in ids], dtype=np.uint64),
            index={c: i for i, c in enumerate(ids)},
        )

    def __len__(self) -> int:
        return len(self.ids)

    def indices(self, content_ids: Iterable[str]) -> I64:
        """Catalog indices of the ids the catalog knows, sorted, without duplicates."""
        index = self.index
        known = {index[c] for c in content_ids if c in index}
        return np.array(sorted(known), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Site:
    """A site of the fleet."""

    name: str
    region: str
    role: str = "edge"  # or "origin"
    costs: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Fleet:
    """Sites and appliances (with capacity, weight and nightly budget) the planner sees."""

    sites: tuple[Site, ...]
    appliances: tuple[tuple[str, Appliance], ...]  # (site name, appliance)

    def __post_init__(self) -> None:
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ValueError("site names must be unique")
        known = set(names)
        seen: set[str] = set()
        for site, a in self.appliances:
            if site not in known:
                raise ValueError(f"appliance {a.name!r}: unknown site {site!r}")
            if a.name in seen:
                raise ValueError(f"appliance {a.name!r} is listed twice")
            seen.add(a.name)
        for s in self.sites:
            if s.role not in ROLES:
                raise ValueError(f"site {s.name!r}: role must be edge or origin")

    def site_appliances(self, site: str) -> tuple[Appliance, ...]:
        """The appliances of *site*, in fleet order."""
        return tuple(a for s, a in self.appliances if s == site)

    def cost(self, a: str, b: str) -> float:
        """The cost from site *a* to site *b* (either side's entry; inf when neither has one)."""
        by_name = {s.name: s for s in self.sites}
        cost = by_name[a].costs.get(b)
        if cost is None:
            cost = by_name[b].costs.get(a)
        return math.inf if cost is None else float(cost)


@dataclass(frozen=True, slots=True)
class SitePlanResult:
    """One planned site."""

    site: Site
    appliances: tuple[Appliance, ...]
    target: SiteTarget
    outcome: SiteOutcome


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """Every edge site's plan; manifests are built on demand (`manifests`)."""

    catalog: Catalog
    fleet: Fleet
    sites: tuple[SitePlanResult, ...]
    max_sources: int = 8

    def report(self, fill_rate_bps: float, fill_window_s: float) -> dict[str, Any]:
        """The plan report as a JSON-able document (per site and totals)."""
        rows = []
        for result in self.sites:
            r = result.outcome.report
            busiest = max((c.add_bytes for c in result.outcome.changes), default=0)
            rows.append(
                {
                    "site": result.site.name,
                    "region": result.site.region,
                    "appliances": len(result.appliances),
                    **asdict(r),
                    # Appliances fill in parallel, each at the rate: the busiest sets the time.
                    "fill_time_s": busiest * 8 / fill_rate_bps if fill_rate_bps > 0 else 0.0,
                    "fill_window_s": fill_window_s,
                }
            )
        total = {
            key: sum(row[key] for row in rows)
            for key in ("files", "stored_bytes", "adds", "deletes", "add_bytes", "delete_bytes")
        }
        total["deferred"] = sum(row["deferred"] for row in rows)
        total["deferred_bytes"] = sum(row["deferred_bytes"] for row in rows)
        return {"sites": rows, "total": total, "catalog_files": len(self.catalog)}

    def manifests(self, generation: int, created_at: float) -> Iterator[FillManifest]:
        """One manifest per planned appliance, built one at a time (they can be large)."""
        by_region: dict[str, list[SitePlanResult]] = {}
        for result in self.sites:
            by_region.setdefault(result.site.region, []).append(result)
        for region, results in by_region.items():
            holds = self._hold_masks(region)  # one region's masks at a time: memory
            for result in results:
                for j in range(len(result.appliances)):
                    yield self.manifest(result, j, generation, created_at, holds)

    def manifest(
        self,
        result: SitePlanResult,
        j: int,
        generation: int,
        created_at: float,
        holds: Mapping[str, np.ndarray] | None = None,
    ) -> FillManifest:
        """The manifest of appliance *j* of *result*'s site."""
        holds = self._hold_masks(result.site.region) if holds is None else holds
        me = result.appliances[j]
        files = result.outcome.changes[j].hold
        candidates = self._source_candidates(result.site, me.name)
        ids, sizes, sums = self.catalog.ids, self.catalog.sizes, self.catalog.checksums
        if not candidates or files.size == 0:
            picked: list[list[int]] = [[] for _ in range(files.size)]
        else:
            picked = self._rank_sources(files, candidates, holds)
        names = [c[0] for c in candidates]
        out = [
            ManifestFile(ids[i], int(sizes[i]), sums[i], tuple(names[c] for c in row))
            for i, row in zip(files.tolist(), picked, strict=True)
        ]
        return FillManifest(me.name, generation, created_at, tuple(out))

    # Sources ---------------------------------------------------------------------------------

    def _hold_masks(self, region: str) -> dict[str, np.ndarray]:
        """Per planned appliance of *region*, a bool column: holds the file after tonight."""
        masks: dict[str, np.ndarray] = {}
        for result in self.sites:
            if result.site.region != region:
                continue
            for a, change in zip(result.appliances, result.outcome.changes, strict=True):
                mask = np.zeros(len(self.catalog), dtype=np.bool_)
                mask[change.hold] = True
                masks[a.name] = mask
        return masks

    def _source_candidates(self, site: Site, me: str) -> list[tuple[str, float, int, float]]:
        """(appliance name, weight, group rank, site rank) of every possible source, ranked."""
        fleet = self.fleet
        ranked_sites: list[tuple[int, float, str]] = []
        for other in fleet.sites:
            if other.role == "origin":
                group = 2
            elif other.name == site.name:
                group = 0
            elif other.region == site.region:
                group = 1
            else:
                continue
            cost = 0.0 if group == 0 else fleet.cost(site.name, other.name)
            ranked_sites.append((group, cost, other.name))
        ranked_sites.sort()
        rank = {name: float(i) for i, (_, _, name) in enumerate(ranked_sites)}
        groups = {name: g for g, _, name in ranked_sites}
        return [
            (a.name, a.weight, groups[s], rank[s])
            for s, a in fleet.appliances
            if s in rank and a.name != me
        ]

    def _rank_sources(
        self,
        files: I64,
        candidates: list[tuple[str, float, int, float]],
        holds: Mapping[str, np.ndarray],
    ) -> list[list[int]]:
        """Per file, the indices into *candidates* of its first `max_sources` sources."""
        bases = self.catalog.hashes[files]
        count = len(candidates)
        has = np.empty((files.size, count), dtype=np.bool_)
        score = np.empty((files.size, count), dtype=np.float64)
        site_rank = np.array([c[3] for c in candidates], dtype=np.float64)
        for c, (name, weight, group, _) in enumerate(candidates):
            mask = holds.get(name)
            if group == 2:
                has[:, c] = True  # origins hold the whole catalog
            elif mask is None:
                has[:, c] = False
            else:
                has[:, c] = mask[files]
            score[:, c] = hrw_scores(bases, appliance_seed(name), weight)
        # Order: site rank, then rendezvous score; files a candidate lacks go last.
        key = np.where(has, site_rank, np.inf)
        by_score = np.argsort(-score, axis=1, kind="stable")
        key_sorted = np.take_along_axis(key, by_score, axis=1)
        by_site = np.argsort(key_sorted, axis=1, kind="stable")
        order = np.take_along_axis(by_score, by_site, axis=1)
        keep = np.take_along_axis(has, order, axis=1)
        # The last slots go to origins, so a file whose peers and tier all fail still has its
        # last resort: at most max_sources - origins from the tier, then the origins.
        origin = np.array([c[2] == 2 for c in candidates], dtype=np.bool_)
        origins = min(int(origin.sum()), self.max_sources)
        near = self.max_sources - origins
        near_rank = np.cumsum(keep & ~origin[order], axis=1)
        keep &= np.where(origin[order], True, near_rank <= near)
        cut = self.max_sources
        return [row[ok][:cut].tolist() for row, ok in zip(order, keep, strict=True)]


def plan_fleet(
    catalog: Catalog,
    forecasts: Mapping[str, F64],
    fleet: Fleet,
    inventories: Mapping[str, I64],
    params: PlacementParams | None = None,
    *,
    max_sources: int = 8,
) -> FleetPlan:
    """Plan every edge site; *forecasts* per region are columns aligned with the catalog."""
    p = params or PlacementParams()
    empty = np.zeros(0, dtype=np.int64)
    zero = np.zeros(len(catalog), dtype=np.float64)
    results: list[SitePlanResult] = []
    for site in fleet.sites:
        if site.role != "edge":
            continue
        apps = fleet.site_appliances(site.name)
        forecast = forecasts.get(site.region, zero)
        if forecast.shape != (len(catalog),):
            raise ValueError(f"forecast of region {site.region!r} is not aligned with the catalog")
        held = [inventories.get(a.name, empty) for a in apps]
        target = choose(apps, catalog.sizes, catalog.hashes, forecast, held, p)
        mass = float(forecast[forecast > 0].sum())
        outcome = settle(apps, catalog.sizes, forecast, held, target, p, mass)
        results.append(SitePlanResult(site, apps, target, outcome))
    return FleetPlan(catalog, fleet, tuple(results), max_sources)


def human_bytes(n: float) -> str:
    """Bytes in decimal units, three significant digits: 981 kB, 48.2 MB, 26.4 TB."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 999.5 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" or abs(n) >= 99.95 else f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def report_table(report: Mapping[str, Any]) -> str:
    """The plan report as a fixed-width table, one line per site."""
    header = (
        f"{'site':<12} {'files':>9} {'stored':>9} {'offload':>8} {'bound':>7} "
        f"{'tonight':>8} {'adds':>7} {'add':>9} {'deletes':>8} {'deleted':>9} "
        f"{'deferred':>8} {'fill h':>7} {'window h':>8}"
    )
    lines = [header]
    for row in report["sites"]:
        lines.append(
            f"{row['site']:<12} {row['files']:>9} {human_bytes(row['stored_bytes']):>9} "
            f"{row['predicted_offload']:>8.2%} {row['offload_upper_bound']:>7.2%} "
            f"{row['offload_tonight']:>8.2%} {row['adds']:>7} {human_bytes(row['add_bytes']):>9} "
            f"{row['deletes']:>8} {human_bytes(row['delete_bytes']):>9} {row['deferred']:>8} "
            f"{row['fill_time_s'] / 3600:>7.2f} {row['fill_window_s'] / 3600:>8.1f}"
        )
    return "\n".join(lines)


def site_reports(plan: FleetPlan) -> dict[str, SiteReport]:
    """Each planned site's report, by site name."""
    return {r.site.name: r.outcome.report for r in plan.sites}


def with_budgets(
    appliances: Sequence[tuple[str, Appliance]], fill_rate_bps: float, window_s: float
) -> tuple[tuple[str, Appliance], ...]:
    """The appliances with the nightly budget rate x window (bits/s, seconds → bytes)."""
    budget = int(fill_rate_bps / 8 * window_s)
    out = []
    for site, a in appliances:
        own = a.fill_budget_bytes
        b = budget if own is None else min(own, budget)
        out.append((site, Appliance(a.name, a.capacity_bytes, a.reserve_bytes, a.weight, b)))
    return tuple(out)
