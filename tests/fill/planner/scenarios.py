"""Placement scenarios shared by the planner's tests: Zipf catalogs, sites, random and crowded
sites for hypothesis, and the exact comparison of two site plans."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import strategies as st

from fill.planner.model import Appliance, PlacementParams
from fill.planner.placement import SitePlan


def zipf_catalog(
    n: int, seed: int, size_range: tuple[int, int] = (100, 1000)
) -> tuple[dict[str, int], dict[str, float]]:
    """n files with random sizes and Zipf-like (exponent ~0.8) shuffled popularity."""
    rng = random.Random(seed)
    ids = [f"f{i:05d}.mp4" for i in range(n)]
    rng.shuffle(ids)
    sizes = {c: rng.randint(*size_range) for c in ids}
    forecast = {c: 1000.0 / (rank + 1) ** 0.8 for rank, c in enumerate(ids)}
    return sizes, forecast


def site(n: int, capacity: int, reserve: int = 0) -> tuple[Appliance, ...]:
    return tuple(
        Appliance(f"a{j}", capacity, reserve, weight=1.0 + (j % 3) * 0.5) for j in range(n)
    )


def holdings(plan: SitePlan) -> dict[str, tuple[str, ...]]:
    return {m.appliance: m.hold for m in plan.manifests}


def placements(plan: SitePlan) -> set[tuple[str, str]]:
    return {(c, m.appliance) for m in plan.manifests for c in m.hold}


Scenario = tuple[
    tuple[Appliance, ...], dict[str, int], dict[str, float], dict[str, list[str]], PlacementParams
]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """A random site: appliances, catalog, forecast, current inventory and parameters."""
    n = draw(st.integers(min_value=1, max_value=6))
    appliances = tuple(
        Appliance(
            f"a{j}",
            capacity_bytes=draw(st.integers(min_value=0, max_value=20_000)),
            reserve_bytes=draw(st.integers(min_value=0, max_value=3_000)),
            weight=draw(st.floats(min_value=0.1, max_value=10.0)),
        )
        for j in range(n)
    )
    files = draw(st.integers(min_value=0, max_value=60))
    sizes = {f"c{i}": draw(st.integers(min_value=0, max_value=5_000)) for i in range(files)}
    forecast = {c: draw(st.floats(min_value=0.0, max_value=1e4, allow_nan=False)) for c in sizes}
    ids = [*sorted(sizes), "gone.mp4"]
    inventories = {a.name: draw(st.lists(st.sampled_from(ids), max_size=10)) for a in appliances}
    min_copies = draw(st.integers(min_value=1, max_value=3))
    params = PlacementParams(
        min_copies=min_copies,
        max_copies=draw(st.none() | st.integers(min_value=min_copies, max_value=5)),
        popularity_per_copy=draw(st.sampled_from([math.inf, 100.0, 2000.0])),
        hysteresis=draw(st.floats(min_value=1.0, max_value=2.0)),
        fill_budget_bytes=draw(st.none() | st.integers(min_value=0, max_value=10_000)),
    )
    return appliances, sizes, forecast, inventories, params


@st.composite
def crowded_scenarios(draw: st.DrawFn) -> Scenario:
    """Sites that are nearly full: overflow inside the greedy's chunks happens constantly."""
    n = draw(st.integers(min_value=1, max_value=8))
    files = draw(st.integers(min_value=0, max_value=300))
    rng = random.Random(draw(st.integers(min_value=0, max_value=2**32)))
    sizes = {
        f"c{i:03d}": rng.choice([0, 1, 50, 100, 100, 200, 900, rng.randint(1, 1000)])
        for i in range(files)
    }
    total = sum(sizes.values()) or 1
    fraction = draw(st.sampled_from([0.05, 0.3, 0.8, 2.0]))
    appliances = tuple(
        Appliance(
            f"a{j}",
            int(total * fraction / n * rng.uniform(0.5, 1.5)),
            reserve_bytes=rng.choice([0, 100]),
            weight=rng.choice([1.0, 1.0, 2.5, 0.3]),
            fill_budget_bytes=draw(st.none() | st.integers(min_value=0, max_value=total)),
        )
        for j in range(n)
    )
    # Ties on purpose: equal forecasts and sizes make the id tie-break matter.
    forecast = {c: rng.choice([0.0, 1.0, 5.0, 5.0, rng.uniform(0, 100)]) for c in sizes}
    ids = sorted(sizes)
    inventories = {a.name: rng.sample(ids, min(len(ids), rng.randint(0, 80))) for a in appliances}
    min_copies = draw(st.integers(min_value=1, max_value=3))
    params = PlacementParams(
        min_copies=min_copies,
        max_copies=draw(st.none() | st.integers(min_value=min_copies, max_value=5)),
        popularity_per_copy=draw(st.sampled_from([math.inf, 3.0, 40.0])),
        hysteresis=draw(st.sampled_from([1.0, 1.1, 1.5])),
        fill_budget_bytes=draw(st.none() | st.integers(min_value=0, max_value=total)),
    )
    return appliances, sizes, forecast, inventories, params


def assert_same_plan(fast: SitePlan, reference: SitePlan) -> None:
    assert fast.manifests == reference.manifests
    a, b = fast.report, reference.report
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, float):
            assert x == pytest.approx(y, rel=1e-9, abs=1e-12), name
        else:
            assert x == y, name
