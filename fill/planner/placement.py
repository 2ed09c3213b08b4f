"""Placement inside one site: forecast + capacities + current inventories → one manifest each.

The model (issue 5, "Placement per site"), step by step:

1. **Copies.** A file forecast at F views a day gets `ceil(F / popularity_per_copy)` copies
   (one copy per `popularity_per_copy` daily views it must serve), clamped to
   [min_copies, max_copies]; max_copies defaults to, and never exceeds, the number of
   appliances. The default `popularity_per_copy = inf` gives every file min_copies. Hysteresis:
   a file already at the site keeps its current copy count while that count lies between the
   rule applied to F / margin and to F * margin.
2. **Choice.** Files are taken greedily by density `F / (copies * size)` (forecast served per
   stored byte; with one copy, forecast / size), highest first, ties by content id. A file
   already at the site has its density multiplied by the hysteresis margin, so a newcomer
   replaces it only when it is better by that margin. A file is placed with all its copies or
   not at all; a file that does not fit is skipped and smaller ones after it may still fit.
   Files with forecast 0 or not in the catalog are never placed.
3. **Appliances.** Each copy goes to a distinct appliance with room (capacity - reserve - bytes
   already assigned ≥ size). Appliances that already hold the file come first, then the others by
   weighted rendezvous hashing (edgefleet/rendezvous.py: score `-weight / ln(h)`, h from the file's
   and the appliance's hashes) — the same scores as steering/ranking.py, so fill and steering
   agree on a file's preferred appliance. Planned from empty inventories, adding an
   appliance moves about 1/N of placements; planned from the current inventories, a file stays
   where it is while it fits, and the new appliance takes newcomers.
4. **Fill budget.** An appliance downloads at most `fill_budget_bytes` a night: its adds are
   taken in choice order (most valuable first) while they fit the remaining budget; the others
   are deferred to the next night and are not in tonight's manifest. The budget is the
   smaller of the site-wide `PlacementParams.fill_budget_bytes` and the appliance's own
   `Appliance.fill_budget_bytes` (fill rate x window, set by the caller).
5. **Held-back deletes.** A file the plan drops stays where it is while the adds that would
   replace it are deferred: the appliance keeps its most valuable dropped files (by forecast
   density, then content id) up to the deferred bytes, so space is never left empty for a
   night. Holding at most the deferred bytes keeps the appliance within the full plan's bytes.

The report compares the predicted offload (forecast mass placed / forecast mass of the region,
in views) with the fractional-knapsack upper bound: the same values and copy-weighted sizes
packed into the site's total usable bytes, the last file taken fractionally. Our plan is a
feasible point of that relaxation, so it can never exceed the bound.

Steps 1-3 exist twice: `plan_site_reference` below, the specification, one file at a time in
plain Python; and greedy.py, the same choices over numpy columns, which `plan_site` and the
multi-site planner (plan.py) use. Steps 4-5 and the report are nightly.py, shared by
both. A property test (tests/fill/planner/test_placement.py) holds the two to identical plans.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

import numpy as np

from edgefleet.rendezvous import appliance_seed, content_hash, hrw_score
from fill.planner.greedy import choose
from fill.planner.model import Appliance, PlacementParams, SiteReport, SiteTarget
from fill.planner.nightly import settle


@dataclass(frozen=True, slots=True)
class Manifest:
    """What one appliance should hold after tonight's fill, and how it gets there."""

    appliance: str
    hold: tuple[str, ...]  # sorted
    adds: tuple[str, ...]  # most valuable first
    deletes: tuple[str, ...]  # sorted
    add_bytes: int
    deferred: tuple[str, ...]  # wanted, but over tonight's budget; most valuable first
    deferred_bytes: int
    held_back: tuple[str, ...] = ()  # dropped by the plan, kept while their replacement waits


@dataclass(frozen=True, slots=True)
class SitePlan:
    """Manifests in the order of the site's appliances, and the site report."""

    manifests: tuple[Manifest, ...]
    report: SiteReport


def copies_for(forecast: float, current: int, params: PlacementParams, appliances: int) -> int:
    """Copies of a file forecast at *forecast* views a day that has *current* copies now."""
    high = min(params.max_copies or appliances, appliances)
    low = min(params.min_copies, high)
    ppc = params.popularity_per_copy
    want = math.ceil(forecast / ppc)
    if current > 0:
        margin = params.hysteresis
        if math.ceil(forecast / (ppc * margin)) <= current <= math.ceil(forecast * margin / ppc):
            want = current
    return max(low, min(high, want))


def upper_bound(values: list[tuple[float, int]], capacity: int) -> float:
    """Fractional knapsack optimum of (value, weight) items in *capacity* (weights ≥ 0)."""
    total = 0.0
    left = float(capacity)
    ranked = sorted(values, key=lambda vw: -_density(vw[0], vw[1]))
    for value, weight in ranked:
        if weight <= left:
            total += value
            left -= weight
        else:
            total += value * left / weight
            break
    return total


def _density(value: float, weight: int) -> float:
    return math.inf if weight == 0 else value / weight


@dataclass(frozen=True, slots=True)
class _Columns:
    """A dict-shaped site input turned into catalog-aligned columns (ids sorted)."""

    ids: list[str]
    sizes: np.ndarray
    hashes: np.ndarray
    forecast: np.ndarray
    held: list[np.ndarray]  # per appliance, catalog indices held now
    unknown: list[list[str]]  # per appliance, held ids the catalog does not know: deletes
    total_mass: float


def _columns(
    appliances: tuple[Appliance, ...],
    sizes: Mapping[str, int],
    forecast: Mapping[str, float],
    inventories: Mapping[str, Collection[str]],
) -> _Columns:
    if len({a.name for a in appliances}) != len(appliances):
        raise ValueError("appliance names must be unique")
    ids = sorted(c for c, size in sizes.items() if size >= 0)
    index = {c: i for i, c in enumerate(ids)}
    held: list[np.ndarray] = []
    unknown: list[list[str]] = []
    for a in appliances:
        contents = set(inventories.get(a.name, ()))
        held.append(np.array(sorted(index[c] for c in contents if c in index), dtype=np.int64))
        unknown.append(sorted(c for c in contents if c not in index))
    return _Columns(
        ids=ids,
        sizes=np.array([sizes[c] for c in ids], dtype=np.int64),
        hashes=np.array([content_hash(c) for c in ids], dtype=np.uint64),
        forecast=np.array([float(forecast.get(c, 0.0)) for c in ids], dtype=np.float64),
        held=held,
        unknown=unknown,
        total_mass=sum(f for f in forecast.values() if f > 0),
    )


def plan_site(
    appliances: tuple[Appliance, ...],
    sizes: Mapping[str, int],
    forecast: Mapping[str, float],
    inventories: Mapping[str, Collection[str]],
    params: PlacementParams | None = None,
) -> SitePlan:
    """Plan one site: which files each appliance holds tomorrow (see the module docstring)."""
    p = params or PlacementParams()
    cols = _columns(appliances, sizes, forecast, inventories)
    chosen = choose(appliances, cols.sizes, cols.hashes, cols.forecast, cols.held, p)
    return _finish(appliances, cols, chosen, p)


def plan_site_reference(
    appliances: tuple[Appliance, ...],
    sizes: Mapping[str, int],
    forecast: Mapping[str, float],
    inventories: Mapping[str, Collection[str]],
    params: PlacementParams | None = None,
) -> SitePlan:
    """`plan_site`, steps 1-3 as the plain sequential specification (slow; for tests)."""
    p = params or PlacementParams()
    cols = _columns(appliances, sizes, forecast, inventories)
    n = len(appliances)
    seeds = [appliance_seed(a.name) for a in appliances]
    usable = [a.usable_bytes for a in appliances]
    held: dict[str, list[int]] = {}
    for j, idx in enumerate(cols.held):
        for i in idx.tolist():
            held.setdefault(cols.ids[i], []).append(j)

    # Candidates: (boosted density, content id, forecast, size, copies).
    candidates: list[tuple[float, str, float, int, int]] = []
    for content_id, f in forecast.items():
        size = sizes.get(content_id)
        if size is None or size < 0 or not f > 0 or n == 0:
            continue
        copies = copies_for(f, len(held.get(content_id, ())), p, n)
        density = _density(f, copies * size)
        if content_id in held:
            density *= p.hysteresis
        candidates.append((density, content_id, f, size, copies))
    candidates.sort(key=lambda c: (-c[0], c[1]))

    room = list(usable)
    target: list[list[str]] = [[] for _ in appliances]  # in choice order
    placed: list[str] = []
    copies_of: list[int] = []
    for _, content_id, _, size, copies in candidates:
        eligible = [j for j in range(n) if room[j] >= size]
        if len(eligible) < copies:
            continue
        incumbents = set(held.get(content_id, ()))
        base = content_hash(content_id)
        eligible.sort(
            key=lambda j: (j not in incumbents, -hrw_score(base, seeds[j], appliances[j].weight))
        )
        for j in eligible[:copies]:
            room[j] -= size
            target[j].append(content_id)
        placed.append(content_id)
        copies_of.append(copies)

    index = {c: i for i, c in enumerate(cols.ids)}
    placed_idx = np.array([index[c] for c in placed], dtype=np.int64)
    copies_arr = np.array(copies_of, dtype=np.int64)
    chosen = SiteTarget(
        target=[np.array([index[c] for c in t], dtype=np.int64) for t in target],
        files=len(placed),
        stored_bytes=int((copies_arr * cols.sizes[placed_idx]).sum()),
        usable_bytes=sum(usable),
        placed_mass=sum(forecast[c] for c in placed),
        bound_mass=upper_bound([(c[2], c[4] * c[3]) for c in candidates], sum(usable)),
    )
    return _finish(appliances, cols, chosen, p)


def _finish(
    appliances: tuple[Appliance, ...], cols: _Columns, chosen: SiteTarget, params: PlacementParams
) -> SitePlan:
    """Budget, held-back deletes and report (nightly.py), as string manifests."""
    outcome = settle(
        appliances, cols.sizes, cols.forecast, cols.held, chosen, params, cols.total_mass
    )
    ids = cols.ids
    manifests = []
    extra_deletes = 0
    for a, change, unknown in zip(appliances, outcome.changes, cols.unknown, strict=True):
        extra_deletes += len(unknown)
        manifests.append(
            Manifest(
                appliance=a.name,
                hold=tuple(ids[i] for i in np.sort(change.hold).tolist()),
                adds=tuple(ids[i] for i in change.adds.tolist()),
                deletes=tuple(sorted([ids[i] for i in change.deletes.tolist()] + unknown)),
                add_bytes=change.add_bytes,
                deferred=tuple(ids[i] for i in change.deferred.tolist()),
                deferred_bytes=change.deferred_bytes,
                held_back=tuple(ids[i] for i in change.held_back.tolist()),
            )
        )
    r = outcome.report
    if extra_deletes:  # files the catalog does not know: deleted, of unknown (0) bytes
        r = replace(r, deletes=r.deletes + extra_deletes)
    return SitePlan(manifests=tuple(manifests), report=r)
