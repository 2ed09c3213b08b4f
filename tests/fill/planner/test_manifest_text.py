"""Manifest JSON from the arrays: byte for byte the reference object path's documents."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.manifests import manifest_to_doc, parse_manifest
from fill.planner.manifest_text import manifest_header, manifest_texts
from fill.planner.model import Appliance, PlacementParams
from fill.planner.plan import Catalog, Fleet, FleetPlan, Site, plan_fleet
from fill.planner.synth import SynthWorld


def reference(plan: FleetPlan, generation: int, created: float) -> dict[str, bytes]:
    return {
        m.appliance: json.dumps(manifest_to_doc(m), separators=(",", ":")).encode()
        for m in plan.manifests(generation, created)
    }


def assert_same(plan: FleetPlan, generation: int = 9, created: float = 1795561724.25) -> None:
    texts = dict(manifest_texts(plan, generation, created))
    expected = reference(plan, generation, created)
    assert list(texts) == list(expected)  # same appliances, same order
    for name, text in texts.items():
        # Same document for the agent (parse_manifest), and in fact the same bytes.
        assert parse_manifest(json.loads(text)) == parse_manifest(json.loads(expected[name]))
        assert text == expected[name], name


@st.composite
def fleets(draw: st.DrawFn) -> tuple[Fleet, int]:
    """Regions with edge sites at random costs, origin sites, appliances of random weights."""
    sites: list[Site] = []
    apps: list[tuple[str, Appliance]] = []
    regions = draw(st.integers(1, 2))
    for r in range(regions):
        count = draw(st.integers(1, 3))
        names = [f"r{r}s{s}" for s in range(count)]
        for name in names:
            costs = {
                other: float(draw(st.integers(0, 3)))
                for other in names
                if other != name and draw(st.booleans())
            }
            sites.append(Site(name, f"region{r}", "edge", costs))
            for j in range(draw(st.integers(1, 4))):
                weight = draw(st.sampled_from([1.0, 1.5, 2.0]))
                apps.append((name, Appliance(f"{name}-a{j}", 0, 0, weight)))
    for o in range(draw(st.integers(0, 2))):
        sites.append(Site(f"org{o}", "region0", "origin", {"r0s0": float(draw(st.integers(0, 2)))}))
        for j in range(draw(st.integers(0, 3))):
            apps.append((f"org{o}", Appliance(f"org{o}-{j}", 0)))
    return Fleet(tuple(sites), tuple(apps)), draw(st.integers(0, 9))


def with_capacity(fleet: Fleet, capacity: int) -> Fleet:
    return Fleet(
        fleet.sites,
        tuple((s, Appliance(a.name, capacity, 0, a.weight)) for s, a in fleet.appliances),
    )


@given(
    fleets(),
    st.integers(0, 2**16),
    st.floats(0.05, 1.0),
    st.sampled_from([1.0, 30.0, 300.0, float("inf")]),
    st.booleans(),
)
@settings(max_examples=40, deadline=None)
def test_texts_equal_the_object_path(
    fleet_and_sources: tuple[Fleet, int],
    seed: int,
    fraction: float,
    per_copy: float,
    inventories: bool,
) -> None:
    fleet, max_sources = fleet_and_sources
    world = SynthWorld(300, ("region0", "region1"), seed=seed)
    catalog = Catalog.from_entries(world.catalog())
    fleet = with_capacity(fleet, int(world.sizes.sum() * fraction / 2))
    params = PlacementParams(popularity_per_copy=per_copy)
    held: dict[str, np.ndarray] = {}
    if inventories:  # last night's plan held: hysteresis and kept files in the mix
        rng = np.random.default_rng(seed)
        held = {
            a.name: np.sort(rng.choice(len(catalog), 40, replace=False))
            for _, a in fleet.appliances
        }
    plan = plan_fleet(catalog, world.views(0), fleet, held, params, max_sources=max_sources)
    assert_same(plan)


def test_a_site_with_nothing_placed_and_the_header() -> None:
    world = SynthWorld(50, ("eu",), seed=1)
    catalog = Catalog.from_entries(world.catalog())
    fleet = Fleet(
        (Site("s", "eu"), Site("o", "eu", "origin")),
        (("s", Appliance("s-a", 0)), ("s", Appliance("s-b", 0)), ("o", Appliance("o-1", 0))),
    )
    plan = plan_fleet(catalog, world.views(0), fleet, {})
    texts = dict(manifest_texts(plan, 3, 2.0))
    assert texts == {
        "s-a": b'{"appliance":"s-a","generation":3,"created_at":2.0,"files":[]}',
        "s-b": b'{"appliance":"s-b","generation":3,"created_at":2.0,"files":[]}',
    }
    assert_same(plan, 3, 2.0)
    assert (
        manifest_header("x", 1, 0.5)
        == b'{"appliance":"x","generation":1,"created_at":0.5,"files":['
    )
