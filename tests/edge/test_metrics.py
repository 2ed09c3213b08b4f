"""Edge metrics: worker counters, snapshots on disk, and the aggregated Prometheus text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from edge.metrics import (
    LATENCY_BUCKETS,
    EdgeCollector,
    WorkerStats,
    render,
)


def test_observe_counts_status_bytes_and_latency() -> None:
    stats = WorkerStats()
    stats.observe(200, 1000, 0.0001)
    stats.observe(200, 500, 0.001)  # exactly on a bound: counted in that bucket (le = <=)
    stats.observe(206, 64, 0.3)
    stats.observe(404, 0, 99.0)  # beyond the last bound: only +Inf
    assert stats.requests == {200: 2, 206: 1, 404: 1}
    assert stats.bytes_sent == 1564
    assert stats.latency_count == 4
    assert stats.latency_sum == pytest.approx(99.3011)
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    expected[0] = 1  # <= 0.0005
    expected[LATENCY_BUCKETS.index(0.001)] += 1
    expected[LATENCY_BUCKETS.index(0.5)] += 1  # 0.3 <= 0.5
    expected[-1] += 1
    assert stats.latency_buckets == expected


def test_errors_by_kind() -> None:
    stats = WorkerStats()
    for kind in ("token_expired", "missing_file", "token_expired"):
        stats.error(kind)
    assert stats.errors == {"token_expired": 2, "missing_file": 1}


def busy_worker(scale: int = 1) -> WorkerStats:
    stats = WorkerStats()
    for _ in range(scale):
        stats.observe(200, 1000, 0.002)
        stats.observe(206, 100, 0.02)
        stats.observe(416, 0, 0.0001)
    stats.error("token_expired")
    stats.connections_open = 3 * scale
    stats.connections_total = 10 * scale
    return stats


def test_snapshot_survives_json_and_resumes() -> None:
    before = busy_worker(2)
    snapshot = json.loads(json.dumps(before.to_json()))
    after = WorkerStats()
    after.resume_from(snapshot)
    # Counters continue; the open-connections gauge starts afresh in the new process.
    assert after.to_json() == {**before.to_json(), "connections_open": 0}
    after.observe(200, 1, 0.002)
    assert after.requests[200] == 3
    assert after.latency_count == 7


def test_resume_ignores_buckets_of_another_layout() -> None:
    stats = WorkerStats()
    stats.resume_from({"latency_buckets": [5, 5], "latency_count": 10, "requests": {"200": 10}})
    assert stats.latency_buckets == [0] * (len(LATENCY_BUCKETS) + 1)
    assert stats.requests == {200: 10}


def test_resume_from_an_empty_snapshot() -> None:
    stats = WorkerStats()
    stats.resume_from({})
    assert stats.to_json() == WorkerStats().to_json()


def samples(text: bytes) -> dict[str, list[Sample]]:
    """Families by name, parsed as a Prometheus server would."""
    return {f.name: f.samples for f in text_string_to_metric_families(text.decode())}


def value(family: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in family if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, family)
    return found[0]


def collector(snapshots: list[dict[str, Any]], **kwargs: Any) -> EdgeCollector:
    defaults: dict[str, Any] = {
        "supervisor": {"workers_alive": 2, "restarts": 1},
        "index_stats": (12, 3456),
        "disks": [("d0", "/srv/d0", 100, 1000), ("d1", "/srv/d1", None, None)],
        "draining": False,
    }
    return EdgeCollector(snapshots, **(defaults | kwargs))


def test_two_workers_add_up() -> None:
    one, two = busy_worker(1).to_json(), busy_worker(3).to_json()
    two["requests"]["503"] = 2
    two["errors"]["missing_file"] = 4
    fams = samples(render(collector([one, two])))

    requests = fams["edgefleet_edge_requests"]
    assert value(requests, "edgefleet_edge_requests_total", code="200") == 4
    assert value(requests, "edgefleet_edge_requests_total", code="206") == 4
    assert value(requests, "edgefleet_edge_requests_total", code="416") == 4
    assert value(requests, "edgefleet_edge_requests_total", code="503") == 2
    sent = fams["edgefleet_edge_bytes_sent"]
    assert value(sent, "edgefleet_edge_bytes_sent_total") == 4 * 1100
    errors = fams["edgefleet_edge_errors"]
    assert value(errors, "edgefleet_edge_errors_total", kind="token_expired") == 2
    assert value(errors, "edgefleet_edge_errors_total", kind="missing_file") == 4
    open_ = fams["edgefleet_edge_open_connections"]
    assert value(open_, "edgefleet_edge_open_connections") == 12
    conns = fams["edgefleet_edge_connections"]
    assert value(conns, "edgefleet_edge_connections_total") == 40

    hist = fams["edgefleet_edge_request_duration_seconds"]
    name = "edgefleet_edge_request_duration_seconds"
    bounds = [s for s in hist if s.name == name + "_bucket"]
    les = [s.labels["le"] for s in bounds]
    assert [float(le) for le in les] == [*LATENCY_BUCKETS, float("inf")]
    counts = [s.value for s in bounds]
    assert counts == sorted(counts)  # cumulative
    assert value(hist, name + "_bucket", le="0.0005") == 4  # the 416s
    assert value(hist, name + "_bucket", le="0.0025") == 8  # + the 200s
    assert value(hist, name + "_bucket", le="0.025") == 12  # + the 206s
    assert value(hist, name + "_bucket", le="+Inf") == 12
    assert value(hist, name + "_count") == 12
    assert value(hist, name + "_sum") == pytest.approx(4 * (0.002 + 0.02 + 0.0001))


def test_gc_pauses_of_the_workers_add_up() -> None:
    one, two = WorkerStats(), WorkerStats()
    one.gc_collections, one.gc_seconds = [10, 1, 0], 0.004
    two.gc_collections, two.gc_seconds = [5, 2, 1], 0.030
    resumed = WorkerStats()
    resumed.resume_from(json.loads(json.dumps(two.to_json())))  # a restarted worker continues
    fams = samples(render(collector([one.to_json(), resumed.to_json()])))
    runs = fams["edgefleet_edge_gc_collections"]
    assert value(runs, "edgefleet_edge_gc_collections_total", generation="0") == 15
    assert value(runs, "edgefleet_edge_gc_collections_total", generation="2") == 1
    pause = fams["edgefleet_edge_gc_pause_seconds"]
    assert value(pause, "edgefleet_edge_gc_pause_seconds_total") == pytest.approx(0.034)


def test_appliance_state() -> None:
    fams = samples(render(collector([], draining=True)))
    assert value(fams["edgefleet_edge_workers"], "edgefleet_edge_workers") == 2
    restarts = fams["edgefleet_edge_worker_restarts"]
    assert value(restarts, "edgefleet_edge_worker_restarts_total") == 1
    assert value(fams["edgefleet_edge_draining"], "edgefleet_edge_draining") == 1
    assert value(fams["edgefleet_edge_index_files"], "edgefleet_edge_index_files") == 12
    assert value(fams["edgefleet_edge_index_bytes"], "edgefleet_edge_index_bytes") == 3456
    up = fams["edgefleet_edge_disk_up"]
    assert value(up, "edgefleet_edge_disk_up", disk="d0", root="/srv/d0") == 1
    assert value(up, "edgefleet_edge_disk_up", disk="d1", root="/srv/d1") == 0
    free = fams["edgefleet_edge_disk_free_bytes"]
    assert value(free, "edgefleet_edge_disk_free_bytes", disk="d0") == 100
    assert [s.labels["disk"] for s in free] == ["d0"]  # a failed disk has no free space
    size = fams["edgefleet_edge_disk_size_bytes"]
    assert value(size, "edgefleet_edge_disk_size_bytes", disk="d0") == 1000
    # With no workers yet every counter is present and zero.
    hist = fams["edgefleet_edge_request_duration_seconds"]
    assert value(hist, "edgefleet_edge_request_duration_seconds_count") == 0


def test_without_index_or_supervisor() -> None:
    fams = samples(render(collector([], supervisor=None, index_stats=None, disks=[])))
    assert "edgefleet_edge_index_files" not in fams
    assert value(fams["edgefleet_edge_workers"], "edgefleet_edge_workers") == 0
    assert value(fams["edgefleet_edge_draining"], "edgefleet_edge_draining") == 0
