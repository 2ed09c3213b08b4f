"""Edge metrics: per-worker counters with no locks on the hot path, aggregated at scrape time.

Each worker counts into plain Python ints and lists (a worker is one thread, so no lock is
needed) and, once a second, writes a snapshot to `<runtime_dir>/metrics/worker-<slot>.json`
(write to a temporary file, then rename: a reader never sees half a file). `/metrics`, served
by whichever worker the scrape reaches, adds up every worker's snapshot and renders Prometheus
text with prometheus_client. A worker that replaces a crashed one starts from its predecessor's
counts, so counters never go backwards.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import generate_latest

from edge.runtime import FillStatus

# Request latency buckets in seconds: from a page-cache hit to a slow client.
GC_GENERATIONS = 3  # CPython's cyclic collector: len(gc.get_count())
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class WorkerStats:
    """Counters of one worker process."""

    __slots__ = (
        "bytes_sent",
        "connections_open",
        "connections_total",
        "errors",
        "gc_collections",
        "gc_seconds",
        "latency_buckets",
        "latency_count",
        "latency_sum",
        "requests",
    )

    def __init__(self) -> None:
        self.requests: dict[int, int] = {}
        self.bytes_sent = 0
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.errors: dict[str, int] = {}
        self.connections_open = 0
        self.connections_total = 0
        # The cyclic garbage collector's pauses (edge.worker counts them): the event loop
        # stands still while it runs.
        self.gc_collections = [0] * GC_GENERATIONS
        self.gc_seconds = 0.0

    def observe(self, status: int, nbytes: int, seconds: float) -> None:
        """Count one finished response."""
        req = self.requests
        req[status] = req.get(status, 0) + 1
        self.bytes_sent += nbytes
        self.latency_buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def error(self, kind: str) -> None:
        """Count one error of *kind* (e.g. `token_expired`, `missing_file`, `slow_header`)."""
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def to_json(self) -> dict[str, Any]:
        """A snapshot for the metrics directory."""
        return {
            "requests": {str(k): v for k, v in self.requests.items()},
            "bytes_sent": self.bytes_sent,
            "latency_buckets": self.latency_buckets,
            "latency_sum": self.latency_sum,
            "latency_count": self.latency_count,
            "errors": self.errors,
            "connections_open": self.connections_open,
            "connections_total": self.connections_total,
            "gc_collections": self.gc_collections,
            "gc_seconds": self.gc_seconds,
        }

    def resume_from(self, data: dict[str, Any]) -> None:
        """Continue the counters of a predecessor in the same slot (gauges start afresh)."""
        self.requests = {int(k): int(v) for k, v in data.get("requests", {}).items()}
        self.bytes_sent = int(data.get("bytes_sent", 0))
        buckets = data.get("latency_buckets", [])
        if len(buckets) == len(self.latency_buckets):
            self.latency_buckets = [int(b) for b in buckets]
        self.latency_sum = float(data.get("latency_sum", 0.0))
        self.latency_count = int(data.get("latency_count", 0))
        self.errors = {str(k): int(v) for k, v in data.get("errors", {}).items()}
        self.connections_total = int(data.get("connections_total", 0))
        collections = data.get("gc_collections", [])
        if len(collections) == len(self.gc_collections):
            self.gc_collections = [int(n) for n in collections]
        self.gc_seconds = float(data.get("gc_seconds", 0.0))


class EdgeCollector:
    """A prometheus_client collector over worker snapshots and appliance state."""

    def __init__(
        self,
        snapshots: list[dict[str, Any]],
        supervisor: dict[str, Any] | None,
        index_stats: tuple[int, int] | None,
        disks: Iterable[tuple[str, str, int | None, int | None]],
        draining: bool,
        fill: dict[str, Any] | None = None,
        keeper: dict[str, Any] | None = None,
    ) -> None:
        self.snapshots = snapshots
        self.keeper = keeper  # the keeper's status file (see keeper_file), if any
        self.fill = fill  # the fill agent's status file (see fill_status_file), if any
        self.supervisor = supervisor or {}
        self.index_stats = index_stats
        self.disks = list(disks)  # (disk id, root, free bytes or None if failed, total)
        self.draining = draining

    def collect(self) -> Iterator[Metric]:
        """Yield the metric families (prometheus_client calls this at render time)."""
        p = "edgefleet_edge_"
        requests = CounterMetricFamily(p + "requests", "HTTP responses by status", labels=["code"])
        by_code: dict[str, int] = {}
        errors: dict[str, int] = {}
        buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        lat_sum = 0.0
        sent = conns_open = conns_total = 0
        gc_counts = [0] * GC_GENERATIONS
        gc_seconds = 0.0
        for snap in self.snapshots:
            for code, n in snap.get("requests", {}).items():
                by_code[code] = by_code.get(code, 0) + int(n)
            for kind, n in snap.get("errors", {}).items():
                errors[kind] = errors.get(kind, 0) + int(n)
            for i, n in enumerate(snap.get("latency_buckets", [])[: len(buckets)]):
                buckets[i] += int(n)
            lat_sum += float(snap.get("latency_sum", 0.0))
            sent += int(snap.get("bytes_sent", 0))
            conns_open += int(snap.get("connections_open", 0))
            conns_total += int(snap.get("connections_total", 0))
            for i, n in enumerate(snap.get("gc_collections", [])[:GC_GENERATIONS]):
                gc_counts[i] += int(n)
            gc_seconds += float(snap.get("gc_seconds", 0.0))
        for code in sorted(by_code):
            requests.add_metric([code], by_code[code])
        yield requests
        yield CounterMetricFamily(p + "bytes_sent", "Bytes sent to clients", value=sent)
        cumulative, acc = [], 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
            acc += n
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), acc))
        yield HistogramMetricFamily(
            p + "request_duration_seconds",
            "Time from a complete request to its last byte handed to the kernel",
            buckets=cumulative,
            sum_value=lat_sum,
        )
        yield GaugeMetricFamily(p + "open_connections", "Client connections open", conns_open)
        yield CounterMetricFamily(p + "connections", "Client connections accepted", conns_total)
        gc_runs = CounterMetricFamily(
            p + "gc_collections",
            "Cyclic garbage collections in the workers, by generation",
            labels=["generation"],
        )
        for generation, n in enumerate(gc_counts):
            gc_runs.add_metric([str(generation)], n)
        yield gc_runs
        yield CounterMetricFamily(
            p + "gc_pause_seconds",
            "Time the workers' event loops stood still in the cyclic garbage collector",
            value=gc_seconds,
        )
        err = CounterMetricFamily(p + "errors", "Errors by kind", labels=["kind"])
        for kind in sorted(errors):
            err.add_metric([kind], errors[kind])
        yield err
        yield GaugeMetricFamily(
            p + "workers", "Worker processes alive", self.supervisor.get("workers_alive", 0)
        )
        yield CounterMetricFamily(
            p + "worker_restarts",
            "Workers restarted after a crash",
            self.supervisor.get("restarts", 0),
        )
        yield GaugeMetricFamily(p + "draining", "1 while the appliance drains", int(self.draining))
        if self.index_stats is not None:
            yield GaugeMetricFamily(p + "index_files", "Files in the index", self.index_stats[0])
            yield GaugeMetricFamily(
                p + "index_bytes", "Bytes of the files in the index", self.index_stats[1]
            )
        free = GaugeMetricFamily(p + "disk_free_bytes", "Free bytes per disk", labels=["disk"])
        size = GaugeMetricFamily(p + "disk_size_bytes", "Size per disk", labels=["disk"])
        up = GaugeMetricFamily(p + "disk_up", "1 when the disk is usable", labels=["disk", "root"])
        # The keeper's verdict wins: a disk it failed (repeated I/O errors) may still have a
        # readable id file, and its files are gone from the index.
        failed_roots = {
            str(d.get("root"))
            for d in (self.keeper or {}).get("disks", [])
            if isinstance(d, dict) and d.get("failed")
        }
        for disk_id, root, free_b, total_b in self.disks:
            up.add_metric([disk_id, root], 0 if free_b is None or root in failed_roots else 1)
            if free_b is not None and total_b is not None:
                free.add_metric([disk_id], free_b)
                size.add_metric([disk_id], total_b)
        yield free
        yield size
        yield up
        yield from keeper_metrics(self.keeper)
        yield from fill_metrics(self.fill)


def keeper_metrics(status: dict[str, Any] | None) -> Iterator[Metric]:
    """The scrub's counters and the disk watch's from the keeper's status file."""
    if status is None:
        return
    p = "edgefleet_edge_"
    scrub = status.get("scrub")
    scrub = scrub if isinstance(scrub, dict) else {}

    def num(doc: dict[str, Any], key: str) -> float:
        value = doc.get(key, 0)
        return float(value) if isinstance(value, int | float) else 0.0

    yield CounterMetricFamily(
        p + "scrub_bytes", "Bytes re-hashed by the scrub", num(scrub, "bytes")
    )
    yield CounterMetricFamily(
        p + "scrub_files", "Files re-hashed by the scrub", num(scrub, "files")
    )
    yield CounterMetricFamily(
        p + "scrub_passes", "Complete scrub rounds over the index", num(scrub, "passes")
    )
    yield CounterMetricFamily(
        p + "quarantined_files",
        "Files the scrub took out of the index (checksum, size or read error)",
        num(scrub, "quarantined"),
    )
    yield CounterMetricFamily(
        p + "disk_failures", "Disks declared failed by the disk watch", num(status, "disk_failures")
    )
    yield CounterMetricFamily(
        p + "disk_failed_files",
        "Files removed from the index because their disk failed",
        num(status, "disk_files_removed"),
    )


def fill_metrics(doc: dict[str, Any] | None) -> Iterator[Metric]:
    """The fill agent's gauges from its status file (edge.runtime.FillStatus; none before the
    first run: a missing series says "never filled", a zero would claim a finished fill)."""
    if doc is None:
        return
    status = FillStatus.from_doc(doc)
    p = "edgefleet_fill_"
    yield GaugeMetricFamily(
        p + "running", "1 while a fill run is in progress", float(status.running)
    )
    yield GaugeMetricFamily(
        p + "bytes_to_go", "Bytes the fill still has to fetch", status.bytes_to_go
    )
    yield GaugeMetricFamily(
        p + "bytes_done", "Bytes fetched by the current or last fill run", status.bytes_done
    )
    yield GaugeMetricFamily(
        p + "rate_bytes_per_second",
        "Fill download rate over the last interval",
        status.rate_bytes_per_second,
    )
    errors = CounterMetricFamily(
        p + "errors",
        "Failed download attempts of the current or last run, by source",
        labels=["source"],
    )
    for source, n in sorted(status.errors.items()):
        errors.add_metric([source], n)
    yield errors


def render(collector: EdgeCollector) -> bytes:
    """Prometheus text exposition of *collector*."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)
