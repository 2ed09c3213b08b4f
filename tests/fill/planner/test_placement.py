"""Placement: capacity, copies, offload against the upper bound, budget, stability, churn."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fill.planner.model import Appliance, PlacementParams
from fill.planner.placement import copies_for, plan_site, upper_bound
from tests.fill.planner.scenarios import (
    Scenario,
    holdings,
    placements,
    scenarios,
    site,
    zipf_catalog,
)


@given(scenarios())
@settings(max_examples=150)
def test_plan_invariants(scenario: Scenario) -> None:
    appliances, sizes, forecast, inventories, params = scenario
    plan = plan_site(appliances, sizes, forecast, inventories, params)
    by_name = {a.name: a for a in appliances}
    copies: Counter[str] = Counter()
    for m in plan.manifests:
        # Never over capacity - reserve.
        assert sum(sizes[c] for c in m.hold) <= by_name[m.appliance].usable_bytes
        assert list(m.hold) == sorted(set(m.hold))
        # Adds respect the fill budget; deferred files are not held.
        if params.fill_budget_bytes is not None:
            assert m.add_bytes <= params.fill_budget_bytes
        assert m.add_bytes == sum(sizes[c] for c in m.adds)
        assert m.deferred_bytes == sum(sizes[c] for c in m.deferred)
        assert not set(m.deferred) & set(m.hold)
        now = set(inventories[m.appliance])
        assert set(m.adds) == set(m.hold) - now
        assert set(m.deletes) == now - set(m.hold)
        copies.update(m.hold)
        # Held back: dropped files kept only while adds wait, within the deferred bytes.
        assert set(m.held_back) <= now - set(m.adds)
        assert sum(sizes[c] for c in m.held_back) <= m.deferred_bytes
    r = plan.report
    assert r.predicted_offload <= r.offload_upper_bound + 1e-9
    assert 0.0 <= r.predicted_offload <= 1.0 + 1e-9
    assert 0.0 <= r.offload_tonight <= 1.0 + 1e-9
    if r.held_back == 0:
        assert r.offload_tonight <= r.predicted_offload + 1e-9
    if params.fill_budget_bytes is None:
        n = len(appliances)
        high = min(params.max_copies or n, n)
        low = min(params.min_copies, high)
        for c, k in copies.items():
            assert low <= k <= high, c  # distinct appliances: hold is a set per appliance
        assert r.deferred == 0
        assert r.files == len(copies)


@given(st.integers(min_value=0, max_value=2**32), st.sampled_from([2, 4, 8]))
@settings(max_examples=10)
def test_greedy_is_near_the_fractional_upper_bound(seed: int, n: int) -> None:
    # Many small files, site holding ~20 % of the catalog.
    sizes, forecast = zipf_catalog(2000, seed)
    total = sum(sizes.values())
    plan = plan_site(site(n, total // (5 * n)), sizes, forecast, {})
    r = plan.report
    assert r.predicted_offload <= r.offload_upper_bound + 1e-9
    assert r.predicted_offload >= 0.98 * r.offload_upper_bound


def test_upper_bound_is_fractional() -> None:
    assert upper_bound([(10.0, 10), (6.0, 10), (1.0, 0)], 15) == pytest.approx(14.0)
    assert upper_bound([], 100) == 0.0


@given(st.integers(min_value=0, max_value=2**32))
@settings(max_examples=10)
def test_replanning_unchanged_changes_nothing(seed: int) -> None:
    sizes, forecast = zipf_catalog(500, seed)
    appliances = site(4, sum(sizes.values()) // 10)
    params = PlacementParams(popularity_per_copy=300.0, max_copies=3)
    first = plan_site(appliances, sizes, forecast, {}, params)
    second = plan_site(appliances, sizes, forecast, holdings(first), params)
    assert second.report.adds == 0 and second.report.deletes == 0
    assert holdings(second) == holdings(first)


@given(st.integers(min_value=0, max_value=2**32), st.floats(min_value=0.0, max_value=0.04))
@settings(max_examples=10)
def test_hysteresis_prevents_churn_for_small_noise(seed: int, noise: float) -> None:
    sizes, forecast = zipf_catalog(500, seed)
    appliances = site(4, sum(sizes.values()) // 10)
    params = PlacementParams(hysteresis=1.1, popularity_per_copy=300.0, max_copies=3)
    first = plan_site(appliances, sizes, forecast, {}, params)
    rng = random.Random(seed)
    noisy = {c: f * (1 + rng.uniform(-noise, noise)) for c, f in forecast.items()}
    second = plan_site(appliances, sizes, noisy, holdings(first), params)
    assert second.report.adds == 0 and second.report.deletes == 0


def test_without_hysteresis_noise_causes_churn() -> None:
    # The control for the test above: the same noise with margin 1.0 does move files.
    sizes, forecast = zipf_catalog(500, 7)
    appliances = site(4, sum(sizes.values()) // 10)
    first = plan_site(appliances, sizes, forecast, {}, PlacementParams(hysteresis=1.0))
    rng = random.Random(7)
    noisy = {c: f * (1 + rng.uniform(-0.04, 0.04)) for c, f in forecast.items()}
    second = plan_site(appliances, sizes, noisy, holdings(first), PlacementParams(hysteresis=1.0))
    assert second.report.adds > 0


def test_churn_grows_with_the_popularity_change() -> None:
    sizes, forecast = zipf_catalog(1000, 3)
    appliances = site(4, sum(sizes.values()) // 10)
    first = plan_site(appliances, sizes, forecast, {})
    churn = []
    for drift in (0.05, 0.5, 2.0):
        rng = random.Random(3)
        drifted = {c: f * math.exp(rng.gauss(0, drift)) for c, f in forecast.items()}
        churn.append(plan_site(appliances, sizes, drifted, holdings(first)).report.adds)
    assert churn[0] <= churn[1] <= churn[2]
    assert churn[2] > 0


@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=3, max_value=9))
@settings(max_examples=10)
def test_adding_an_appliance_moves_about_one_nth(seed: int, n: int) -> None:
    # Ample room: rendezvous decides alone. Placements of files placed both times.
    sizes, forecast = zipf_catalog(600, seed)
    big = sum(sizes.values())
    params = PlacementParams(popularity_per_copy=200.0, max_copies=2)
    before = plan_site(site(n, big), sizes, forecast, {}, params)
    after = plan_site(site(n + 1, big), sizes, forecast, {}, params)
    old, new = placements(before), placements(after)
    moved = len(old - new) / len(old)
    assert moved <= 2.0 / (n + 1)
    # Re-planning from the old inventory moves nothing that still fits; the new appliance
    # only receives newcomers.
    replanned = plan_site(site(n + 1, big), sizes, forecast, holdings(before), params)
    assert replanned.report.deletes == 0


def test_full_site_gets_new_files_on_the_new_appliance() -> None:
    sizes, forecast = zipf_catalog(1000, 5)
    cap = sum(sizes.values()) // 20
    before = plan_site(site(4, cap), sizes, forecast, {})
    after = plan_site(site(5, cap), sizes, forecast, holdings(before))
    new = {m.appliance: m for m in after.manifests}["a4"]
    assert after.report.deletes == 0
    assert new.adds and after.report.predicted_offload > before.report.predicted_offload


def test_hysteresis_keeps_incumbent_until_beaten_by_margin() -> None:
    sizes = {"old": 100, "new": 100}
    one = (Appliance("a", 100),)
    params = PlacementParams(hysteresis=1.2)
    kept = plan_site(one, sizes, {"old": 10.0, "new": 11.9}, {"a": ["old"]}, params)
    assert kept.manifests[0].hold == ("old",)
    replaced = plan_site(one, sizes, {"old": 10.0, "new": 12.1}, {"a": ["old"]}, params)
    assert replaced.manifests[0].hold == ("new",)
    assert replaced.manifests[0].deletes == ("old",)


def test_reserve_and_unknown_files() -> None:
    sizes = {"x": 60, "y": 50}
    appliances = (Appliance("a", 110, reserve_bytes=50),)
    plan = plan_site(appliances, sizes, {"x": 2.0, "y": 1.0, "ghost": 5.0}, {"a": ["zzz"]})
    assert plan.manifests[0].hold == ("x",)  # denser x takes 60 of 60 usable bytes; y waits
    assert plan.manifests[0].deletes == ("zzz",)


def test_copies_rule() -> None:
    p = PlacementParams(popularity_per_copy=100.0, max_copies=4, hysteresis=1.1)
    assert copies_for(0.0, 0, p, 6) == 1
    assert copies_for(250.0, 0, p, 6) == 3
    assert copies_for(10_000.0, 0, p, 6) == 4
    assert copies_for(10_000.0, 0, p, 2) == 2
    assert copies_for(205.0, 2, p, 6) == 2  # 3 by the rule, 2 within the margin
    assert copies_for(250.0, 2, p, 6) == 3


def test_bad_inputs_rejected() -> None:
    with pytest.raises(ValueError, match="weight"):
        Appliance("a", 10, weight=0)
    with pytest.raises(ValueError, match="max_copies"):
        PlacementParams(min_copies=3, max_copies=2)
    with pytest.raises(ValueError, match="hysteresis"):
        PlacementParams(hysteresis=0.9)
    with pytest.raises(ValueError, match="unique"):
        plan_site((Appliance("a", 1), Appliance("a", 1)), {}, {}, {})


def test_empty_site() -> None:
    plan = plan_site((), {"x": 1}, {"x": 1.0}, {})
    assert plan.manifests == () and plan.report.files == 0
