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
   weighted rendezvous hashing: score `-weight / ln(h)`, h = xxh64(content id, seeded by xxh64 of
   the appliance name) mapped into (0, 1) — the same hash as steering/ranking.py, so fill and
   steering agree on a file's preferred appliance. Planned from empty inventories, adding an
   appliance moves about 1/N of placements; planned from the current inventories, a file stays
   where it is while it fits, and the new appliance takes newcomers.
4. **Fill budget.** An appliance downloads at most `fill_budget_bytes` a night: its adds are
   taken in choice order (most valuable first) while they fit the remaining budget; the others
   are deferred to the next night and are not in tonight's manifest. Deletes always apply, so a
   deferred replacement leaves its space empty for a night; a later session may keep the old
   file until then.

The report compares the predicted offload (forecast mass placed / forecast mass of the region,
in views) with the fractional-knapsack upper bound: the same values and copy-weighted sizes
packed into the site's total usable bytes, the last file taken fractionally. Our plan is a
feasible point of that relaxation, so it can never exceed the bound.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import xxhash

_H64 = xxhash.xxh64_intdigest
_UNIT = 2.0**-52


@dataclass(frozen=True, slots=True)
class Appliance:
    """One storage appliance of the site, as the planner sees it."""

    name: str
    capacity_bytes: int
    reserve_bytes: int = 0
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.capacity_bytes < 0 or self.reserve_bytes < 0:
            raise ValueError(f"{self.name}: capacity_bytes and reserve_bytes must be >= 0")
        if not self.weight > 0:
            raise ValueError(f"{self.name}: weight must be > 0")

    @property
    def usable_bytes(self) -> int:
        """Bytes the planner may fill: capacity minus reserve, never negative."""
        return max(0, self.capacity_bytes - self.reserve_bytes)


@dataclass(frozen=True, slots=True)
class PlacementParams:
    """Copy bounds, the copies rule, the hysteresis margin and the nightly fill budget."""

    min_copies: int = 1
    max_copies: int | None = None  # None: the number of appliances
    popularity_per_copy: float = math.inf
    hysteresis: float = 1.1
    fill_budget_bytes: int | None = None  # None: unlimited

    def __post_init__(self) -> None:
        if self.min_copies < 1:
            raise ValueError("min_copies must be >= 1")
        if self.max_copies is not None and self.max_copies < self.min_copies:
            raise ValueError("max_copies must be >= min_copies")
        if not self.popularity_per_copy > 0:
            raise ValueError("popularity_per_copy must be > 0")
        if not self.hysteresis >= 1.0:
            raise ValueError("hysteresis must be >= 1")
        if self.fill_budget_bytes is not None and self.fill_budget_bytes < 0:
            raise ValueError("fill_budget_bytes must be >= 0")


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


@dataclass(frozen=True, slots=True)
class SiteReport:
    """The plan's figures for one site (files and bytes count the full, unbudgeted plan)."""

    files: int
    stored_bytes: int
    usable_bytes: int
    predicted_offload: float
    offload_upper_bound: float
    offload_tonight: float  # with deferred adds still missing
    adds: int
    deletes: int
    add_bytes: int
    delete_bytes: int
    deferred: int
    deferred_bytes: int


@dataclass(frozen=True, slots=True)
class SitePlan:
    """Manifests in the order of the site's appliances, and the site report."""

    manifests: tuple[Manifest, ...]
    report: SiteReport


def hrw_score(content: bytes, seed: int, weight: float) -> float:
    """Weighted rendezvous score of an appliance (hash *seed*, *weight*) for *content*."""
    # 52 bits + 0.5 keep h strictly inside (0, 1), so ln(h) < 0.
    h = ((_H64(content, seed) >> 12) + 0.5) * _UNIT
    return -weight / math.log(h)


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
class _Target:
    """The unbudgeted plan: per appliance what it holds now and what it should hold."""

    current: list[set[str]]
    target: list[list[str]]  # per appliance, in choice order (most valuable first)
    placed: frozenset[str]
    files: int
    stored_bytes: int
    usable_bytes: int
    total_mass: float
    offload: float
    bound: float


def plan_site(
    appliances: tuple[Appliance, ...],
    sizes: Mapping[str, int],
    forecast: Mapping[str, float],
    inventories: Mapping[str, Collection[str]],
    params: PlacementParams | None = None,
) -> SitePlan:
    """Plan one site: which files each appliance holds tomorrow (see the module docstring)."""
    p = params or PlacementParams()
    n = len(appliances)
    if len({a.name for a in appliances}) != n:
        raise ValueError("appliance names must be unique")
    index = {a.name: j for j, a in enumerate(appliances)}
    seeds = [_H64(a.name.encode()) for a in appliances]
    weights = [a.weight for a in appliances]
    usable = [a.usable_bytes for a in appliances]

    # Where each file is now (only appliances of this site count).
    held: dict[str, list[int]] = {}
    current: list[set[str]] = [set() for _ in appliances]
    for name, contents in inventories.items():
        j = index.get(name)
        if j is None:
            continue
        current[j] = set(contents)
        for content_id in current[j]:
            held.setdefault(content_id, []).append(j)

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

    # Greedy choice and assignment; room[j] is what appliance j can still take.
    room = list(usable)
    target: list[list[str]] = [[] for _ in appliances]  # in choice order
    placed_mass = 0.0
    files = 0
    stored = 0
    placed: set[str] = set()
    for _, content_id, f, size, copies in candidates:
        if size > max(room):
            continue
        eligible = [j for j in range(n) if room[j] >= size]
        if len(eligible) < copies:
            continue
        incumbents = set(held.get(content_id, ()))
        key = content_id.encode()
        eligible.sort(key=lambda j: (j not in incumbents, -hrw_score(key, seeds[j], weights[j])))
        for j in eligible[:copies]:
            room[j] -= size
            target[j].append(content_id)
        placed.add(content_id)
        placed_mass += f
        files += 1
        stored += copies * size

    total_mass = sum(f for f in forecast.values() if f > 0)
    bound_items = [(c[2], c[4] * c[3]) for c in candidates]
    bound = upper_bound(bound_items, sum(usable)) / total_mass if total_mass > 0 else 0.0

    chosen = _Target(
        current=current,
        target=target,
        placed=frozenset(placed),
        files=files,
        stored_bytes=stored,
        usable_bytes=sum(usable),
        total_mass=total_mass,
        offload=placed_mass / total_mass if total_mass > 0 else 0.0,
        bound=bound,
    )
    return _budgeted(appliances, sizes, forecast, chosen, p.fill_budget_bytes)


def _budgeted(
    appliances: tuple[Appliance, ...],
    sizes: Mapping[str, int],
    forecast: Mapping[str, float],
    chosen: _Target,
    budget: int | None,
) -> SitePlan:
    """Apply the nightly fill budget to the target placement and build manifests and report."""
    manifests: list[Manifest] = []
    present: set[str] = set()
    totals = [0, 0, 0, 0, 0, 0]  # adds, deletes, add bytes, delete bytes, deferred, deferred bytes
    for j, appliance in enumerate(appliances):
        want = chosen.target[j]
        current = chosen.current[j]
        wanted = set(want)
        adds: list[str] = []
        deferred: list[str] = []
        add_bytes = deferred_bytes = 0
        for content_id in want:  # choice order: most valuable first
            if content_id in current:
                continue
            size = sizes[content_id]
            if budget is None or add_bytes + size <= budget:
                adds.append(content_id)
                add_bytes += size
            else:
                deferred.append(content_id)
                deferred_bytes += size
        deletes = sorted(current - wanted)
        hold = sorted((wanted & current) | set(adds))
        present.update(hold)
        manifests.append(
            Manifest(
                appliance=appliance.name,
                hold=tuple(hold),
                adds=tuple(adds),
                deletes=tuple(deletes),
                add_bytes=add_bytes,
                deferred=tuple(deferred),
                deferred_bytes=deferred_bytes,
            )
        )
        totals[0] += len(adds)
        totals[1] += len(deletes)
        totals[2] += add_bytes
        totals[3] += sum(sizes.get(c, 0) for c in deletes)
        totals[4] += len(deferred)
        totals[5] += deferred_bytes

    tonight = sum(forecast[c] for c in present if c in chosen.placed)
    mass = chosen.total_mass
    report = SiteReport(
        files=chosen.files,
        stored_bytes=chosen.stored_bytes,
        usable_bytes=chosen.usable_bytes,
        predicted_offload=chosen.offload,
        offload_upper_bound=chosen.bound,
        offload_tonight=tonight / mass if mass > 0 else 0.0,
        adds=totals[0],
        deletes=totals[1],
        add_bytes=totals[2],
        delete_bytes=totals[3],
        deferred=totals[4],
        deferred_bytes=totals[5],
    )
    return SitePlan(manifests=tuple(manifests), report=report)
