"""The fleet plan: every edge site placed, manifests with sources peer → tier → origin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.manifests import manifest_to_doc, parse_manifest
from fill.planner.model import Appliance, PlacementParams
from fill.planner.plan import Catalog, Fleet, FleetPlan, Site, plan_fleet, report_table
from fill.planner.synth import SynthWorld, checksum_of

GB = 10**9


def world_catalog(world: SynthWorld) -> Catalog:
    return Catalog.from_entries(world.catalog())


def make_fleet(
    sites_per_region: int, per_site: int, capacity: int, budget: int | None = None
) -> Fleet:
    sites = []
    apps = []
    for region in ("eu", "us"):
        for s in range(sites_per_region):
            name = f"{region}{s}"
            costs = {f"{region}{t}": float(abs(s - t)) for t in range(sites_per_region) if t != s}
            sites.append(Site(name, region, "edge", costs))
            apps += [
                (name, Appliance(f"{name}-a{j}", capacity, 0, 1.0 + j % 2, budget))
                for j in range(per_site)
            ]
    sites.append(Site("origin", "eu", "origin"))
    apps += [("origin", Appliance(f"origin-{j}", 0)) for j in range(2)]
    return Fleet(tuple(sites), tuple(apps))


def inventories_of(plan: FleetPlan) -> dict[str, np.ndarray]:
    return {
        a.name: np.sort(c.hold)
        for r in plan.sites
        for a, c in zip(r.appliances, r.outcome.changes, strict=True)
    }


def forecasts(world: SynthWorld, day: int) -> dict[str, np.ndarray]:
    return world.views(day)


def test_manifests_sources_and_capacity() -> None:
    world = SynthWorld(3000, seed=1)
    catalog = world_catalog(world)
    capacity = int(world.sizes.sum() * 0.3 / 3)
    fleet = make_fleet(3, 3, capacity)
    params = PlacementParams(popularity_per_copy=300.0, max_copies=3)
    plan = plan_fleet(catalog, forecasts(world, 0), fleet, {}, params)
    assert [r.site.name for r in plan.sites] == ["eu0", "eu1", "eu2", "us0", "us1", "us2"]
    site_of = {a.name: s for s, a in fleet.appliances}
    holds = {m.appliance: {f.content_id for f in m.files} for m in plan.manifests(7, 1.0)}
    manifests = list(plan.manifests(7, 1.0))
    assert len(manifests) == 18  # edge appliances only
    for m in manifests:
        assert parse_manifest(manifest_to_doc(m)) == m  # a valid document
        assert m.total_bytes <= capacity
        assert m.generation == 7
        site = site_of[m.appliance]
        for f in m.files:
            assert f.size == world.sizes[catalog.index[f.content_id]]
            assert f.checksum == checksum_of(f.content_id)
            assert m.appliance not in f.sources
            groups = []
            for src in f.sources:
                s = site_of[src]
                if s == "origin":
                    groups.append(2)
                else:
                    assert f.content_id in holds[src]  # only appliances that will hold it
                    groups.append(0 if s == site else 1)
                    assert s[:2] == site[:2]  # same region
            assert groups == sorted(groups)
            assert groups and groups[-1] == 2  # an origin is always the last resort
            tier = [site_of[src] for src in f.sources if groups[f.sources.index(src)] == 1]
            costs = [abs(int(s[2]) - int(site[2])) for s in tier]
            assert costs == sorted(costs)  # nearest site first
        # Most valuable first: the plan's choice order.
    for r in plan.sites:
        for a, c in zip(r.appliances, r.outcome.changes, strict=True):
            assert int(world.sizes[c.hold].sum()) <= a.usable_bytes
    table = report_table(plan.report(1.2e9, 12 * 3600))
    assert "eu0" in table and "offload" in table


def test_peer_sources_follow_the_rendezvous_order() -> None:
    world = SynthWorld(400, seed=2)
    catalog = world_catalog(world)
    fleet = make_fleet(1, 4, int(world.sizes.sum()))
    params = PlacementParams(min_copies=4)  # everything everywhere
    plan = plan_fleet(catalog, forecasts(world, 0), fleet, {}, params)
    from edgefleet.rendezvous import appliance_seed, content_hash, hrw_score

    weights = {a.name: a.weight for _, a in fleet.appliances}
    for m in plan.manifests(1, 0.0):
        for f in m.files[:50]:
            peers = [s for s in f.sources if s.startswith(m.appliance[:3])]
            scores = [
                hrw_score(content_hash(f.content_id), appliance_seed(p), weights[p]) for p in peers
            ]
            assert len(peers) == 3 and scores == sorted(scores, reverse=True)


@given(st.integers(min_value=0, max_value=2**16))
@settings(max_examples=5, deadline=None)
def test_offload_is_near_the_bound_on_zipf_catalogs(seed: int) -> None:
    world = SynthWorld(4000, seed=seed)
    fleet = make_fleet(1, 4, int(world.sizes.sum() * 0.25 / 4))
    plan = plan_fleet(world_catalog(world), forecasts(world, 0), fleet, {})
    for r in plan.sites:
        rep = r.outcome.report
        assert rep.predicted_offload <= rep.offload_upper_bound + 1e-9
        assert rep.predicted_offload >= 0.98 * rep.offload_upper_bound


def test_replanning_with_unchanged_popularity_changes_nothing() -> None:
    world = SynthWorld(3000, seed=3)
    catalog = world_catalog(world)
    fleet = make_fleet(2, 3, int(world.sizes.sum() * 0.2 / 3))
    params = PlacementParams(popularity_per_copy=200.0, max_copies=2)
    f = forecasts(world, 0)
    first = plan_fleet(catalog, f, fleet, {}, params)
    second = plan_fleet(catalog, f, fleet, inventories_of(first), params)
    for r in second.sites:
        assert r.outcome.report.adds == 0 and r.outcome.report.deletes == 0
    assert {k: v.tolist() for k, v in inventories_of(second).items()} == {
        k: v.tolist() for k, v in inventories_of(first).items()
    }


def churn(files: int, drift: float, seed: int) -> float:
    """Fraction of placed bytes added after one day of drift."""
    world = SynthWorld(files, seed=seed, drift=drift)
    catalog = world_catalog(world)
    fleet = make_fleet(1, 3, int(world.sizes.sum() * 0.25 / 3))
    first = plan_fleet(catalog, forecasts(world, 0), fleet, {})
    second = plan_fleet(catalog, forecasts(world, 1), fleet, inventories_of(first))
    rep = second.sites[0].outcome.report
    return rep.add_bytes / rep.stored_bytes


@pytest.mark.parametrize("seed", [1, 2])
def test_churn_grows_with_drift_not_with_catalog_size(seed: int) -> None:
    by_drift = [churn(4000, d, seed) for d in (0.02, 0.1, 0.3, 1.0)]
    assert by_drift == sorted(by_drift)
    assert by_drift[0] < 0.02 and by_drift[-1] > 0.1
    # Same drift, catalog 4x larger: the churned fraction stays about the same.
    small, large = churn(2000, 0.3, seed), churn(8000, 0.3, seed)
    assert large < 2 * small + 0.01 and small < 2 * large + 0.01


def test_adding_an_appliance_to_a_site_moves_about_one_nth() -> None:
    world = SynthWorld(3000, seed=4)
    catalog = world_catalog(world)
    big = int(world.sizes.sum())
    f = forecasts(world, 0)

    def site(n: int) -> Fleet:
        return Fleet((Site("s", "eu"),), tuple(("s", Appliance(f"a{j}", big)) for j in range(n)))

    def placements(plan: FleetPlan) -> set[tuple[int, str]]:
        r = plan.sites[0]
        return {
            (i, a.name)
            for a, c in zip(r.appliances, r.outcome.changes, strict=True)
            for i in c.hold.tolist()
        }

    old = placements(plan_fleet(catalog, f, site(5), {}))
    new = placements(plan_fleet(catalog, f, site(6), {}))
    moved = len(old - new) / len(old)
    assert 0.5 / 6 < moved < 1.5 / 6


def test_budget_defers_and_reports_fill_time() -> None:
    world = SynthWorld(2000, seed=5)
    catalog = world_catalog(world)
    budget = 20 * GB
    fleet = make_fleet(1, 2, int(world.sizes.sum() * 0.3 / 2), budget)
    plan = plan_fleet(catalog, forecasts(world, 0), fleet, {})
    report = plan.report(1.2e9, 12 * 3600)
    for row in report["sites"]:
        assert row["deferred"] > 0
        assert row["add_bytes"] <= 2 * budget
        assert row["fill_time_s"] <= budget * 8 / 1.2e9 + 1e-9
    for m in plan.manifests(1, 0.0):
        assert m.total_bytes <= budget


def test_bad_fleet_and_catalog_rejected() -> None:
    with pytest.raises(ValueError, match="unknown site"):
        Fleet((Site("s", "eu"),), (("t", Appliance("a", 1)),))
    with pytest.raises(ValueError, match="twice"):
        Fleet((Site("s", "eu"),), (("s", Appliance("a", 1)), ("s", Appliance("a", 1))))
    from edgefleet.records import CatalogEntry

    with pytest.raises(ValueError, match=r"x\.mp4"):
        Catalog.from_entries([CatalogEntry("x.mp4", 1, "0" * 32)] * 2)
