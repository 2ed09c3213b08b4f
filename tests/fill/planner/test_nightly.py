"""Tonight's share of a site plan (fill/planner/nightly.py): the fill budget defers the least
valuable adds, and a delete is held back while the add that replaces it waits."""

from __future__ import annotations

import pytest

from fill.planner.model import Appliance, PlacementParams
from fill.planner.placement import plan_site


def test_fill_budget_defers_the_least_valuable_adds() -> None:
    sizes = {"hot": 100, "warm": 100, "cold": 100}
    forecast = {"hot": 30.0, "warm": 20.0, "cold": 10.0}
    params = PlacementParams(fill_budget_bytes=200)
    plan = plan_site((Appliance("a", 1000),), sizes, forecast, {}, params)
    (m,) = plan.manifests
    assert m.adds == ("hot", "warm") and m.deferred == ("cold",)
    assert m.add_bytes == 200 and m.deferred_bytes == 100
    assert plan.report.offload_tonight == pytest.approx(50 / 60)
    assert plan.report.predicted_offload == pytest.approx(1.0)


def test_deferred_adds_hold_back_the_files_they_replace() -> None:
    sizes = {"old1": 100, "old2": 100, "new1": 100, "new2": 100}
    forecast = {"old1": 2.0, "old2": 1.0, "new1": 30.0, "new2": 20.0}
    one = (Appliance("a", 200, fill_budget_bytes=100),)
    plan = plan_site(one, sizes, forecast, {"a": ["old1", "old2"]})
    (m,) = plan.manifests
    assert m.adds == ("new1",) and m.deferred == ("new2",)
    # new2 waits, so the better of the two old files stays; space is never left empty.
    assert m.held_back == ("old1",) and m.deletes == ("old2",)
    assert m.hold == ("new1", "old1")
    assert plan.report.held_back == 1 and plan.report.held_back_bytes == 100
    # Next night: new2 arrives and old1 goes.
    after = plan_site(one, sizes, forecast, {"a": list(m.hold)})
    assert after.manifests[0].adds == ("new2",) and after.manifests[0].deletes == ("old1",)


def test_per_appliance_budget_is_the_smaller_of_both() -> None:
    sizes = {f"f{i}": 100 for i in range(10)}
    forecast = {c: 10.0 - i for i, c in enumerate(sizes)}
    apps = (Appliance("a", 10_000, fill_budget_bytes=300), Appliance("b", 10_000))
    params = PlacementParams(fill_budget_bytes=500, min_copies=2)
    plan = plan_site(apps, sizes, forecast, {}, params)
    assert [m.add_bytes for m in plan.manifests] == [300, 500]
    assert plan.manifests[0].adds == ("f0", "f1", "f2")
