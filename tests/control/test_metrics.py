"""Control's metrics: every labelled series exists from the start, fleet gauges set on render."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from control.metrics import ControlMetrics
from edgefleet.fleet import ApplianceState


def test_render_sets_the_fleet_gauges() -> None:
    metrics = ControlMetrics()
    counts = dict.fromkeys(ApplianceState, 0) | {ApplianceState.UP: 3, ApplianceState.DOWN: 1}
    text = metrics.render(counts, 42).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("edgefleet_control_appliances", (("state", "up"),))] == 3
    assert samples[("edgefleet_control_appliances", (("state", "down"),))] == 1
    assert samples[("edgefleet_control_appliances", (("state", "draining"),))] == 0
    assert samples[("edgefleet_control_snapshot_version", ())] == 42
    # Series with a result label are there before the first event, at 0.
    assert samples[("edgefleet_control_topology_reloads_total", (("result", "error"),))] == 0
    assert samples[("edgefleet_control_manifests_served_total", (("result", "304"),))] == 0
