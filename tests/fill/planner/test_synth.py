"""The synthetic world: deterministic, realistic sizes, drift that grows with its parameter."""

from __future__ import annotations

import numpy as np
import pytest

from edgefleet.records import CatalogEntry
from fill.planner.synth import GB, MB, SynthWorld, checksum_of


def test_deterministic_and_sized_as_documented() -> None:
    a, b = SynthWorld(20_000, seed=7), SynthWorld(20_000, seed=7)
    assert a.ids == sorted(a.ids) and np.array_equal(a.sizes, b.sizes)
    assert a.sizes.min() >= 50 * MB and a.sizes.max() <= 5 * GB
    assert 400 * MB < np.median(a.sizes) < 800 * MB
    va, vb = a.views(3), b.views(3)
    assert all(np.array_equal(va[r], vb[r]) for r in a.regions)
    assert sum(va["eu"]) == pytest.approx(a.views_per_day)
    entry = next(a.catalog())
    assert entry == CatalogEntry(a.ids[0], int(a.sizes[0]), checksum_of(a.ids[0]))


def test_popularity_is_skewed_and_regions_differ() -> None:
    views = SynthWorld(20_000, seed=1).views(0)
    eu = np.sort(views["eu"])[::-1]
    assert eu[:200].sum() > 0.3 * eu.sum()  # the top 1 % draws a large share
    assert np.corrcoef(np.log(views["eu"]), np.log(views["us"]))[0, 1] < 0.99


def test_drift_moves_popularity_by_its_parameter() -> None:
    changes = []
    for drift in (0.01, 0.1, 0.5):
        world = SynthWorld(5000, seed=2, drift=drift)
        before = world.views(0)["eu"]
        after = world.views(1)["eu"]
        changes.append(float(np.std(np.log(after / before))))
    assert changes == sorted(changes)
    assert changes[1] == pytest.approx(0.1, rel=0.1)
    world = SynthWorld(10, seed=2)
    world.views(2)
    with pytest.raises(ValueError, match="before"):
        world.views(1)


def test_records_match_views() -> None:
    world = SynthWorld(50, seed=4)
    records = list(world.records(0, 2))
    assert {r.region for r in records} == {"eu", "us"}
    assert len({r.day for r in records}) == 2
    replay = SynthWorld(50, seed=4).views(0)["eu"]
    first = [r for r in records if r.region == "eu" and r.day == min(r.day for r in records)]
    i = world.ids.index(first[0].content_id)
    assert first[0].bytes_streamed == round(replay[i] * world.sizes[i])
