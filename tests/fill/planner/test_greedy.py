"""The greedy over numpy columns (fill/planner/greedy.py, the fast path) makes exactly the reference
algorithm's choices, on random sites and on large crowded ones."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings

from fill.planner.model import PlacementParams
from fill.planner.placement import plan_site, plan_site_reference
from tests.fill.planner.scenarios import (
    Scenario,
    assert_same_plan,
    crowded_scenarios,
    scenarios,
    site,
    zipf_catalog,
)


@given(scenarios() | crowded_scenarios())
@settings(max_examples=300, deadline=None)
def test_fast_plan_equals_the_reference(scenario: Scenario) -> None:
    appliances, sizes, forecast, inventories, params = scenario
    fast = plan_site(appliances, sizes, forecast, inventories, params)
    reference = plan_site_reference(appliances, sizes, forecast, inventories, params)
    assert_same_plan(fast, reference)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fast_plan_equals_the_reference_on_a_large_crowded_site(seed: int) -> None:
    # Thousands of candidates: many chunks, growth and shrinking, and the early stop.
    sizes, forecast = zipf_catalog(6000, seed, size_range=(1, 5000))
    appliances = site(7, sum(sizes.values()) // 25)
    rng = random.Random(seed)
    inventories = {a.name: rng.sample(sorted(sizes), 300) for a in appliances}
    params = PlacementParams(popularity_per_copy=50.0, max_copies=3, fill_budget_bytes=10**6)
    assert_same_plan(
        plan_site(appliances, sizes, forecast, inventories, params),
        plan_site_reference(appliances, sizes, forecast, inventories, params),
    )
