"""The edge's side of a phase: the RSS of its whole process tree, its /metrics (open
connections, error and response counters, GC), and a thread sampling both while a phase runs."""

from __future__ import annotations

import itertools
import threading
from contextlib import suppress
from typing import Final

import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.report import MIB
from bench.servers import BenchError, Edge, http_get

SAMPLE_S: Final = 0.5  # RSS sampling period during a phase
# /metrics less often: each scrape makes one edge worker render the whole appliance's metrics,
# 2-4 ms of its event loop (measured), which a real Prometheus does every 15 s, not twice a second.
SCRAPE_EVERY: Final = 4


def edge_rss_mib(edge: Edge) -> float:
    """RSS of the edge's whole process tree: supervisor, workers, keeper."""
    assert edge.proc is not None
    root = psutil.Process(edge.proc.pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        with suppress(psutil.Error):  # a worker may exit between listing and reading
            total += proc.memory_info().rss
    return total / MIB


def edge_gauges(edge: Edge) -> tuple[int, dict[str, int]]:
    """(open connections, errors by kind and responses by status "code_NNN") from /metrics."""
    status, _, body = http_get(edge.port, "/metrics")
    if status != 200:
        raise BenchError(f"edge /metrics answered {status}")
    conns = 0
    errors: dict[str, int] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == "edgefleet_edge_open_connections":
                conns += int(sample.value)
            elif sample.name == "edgefleet_edge_errors_total":
                errors[sample.labels["kind"]] = int(sample.value)
            elif sample.name == "edgefleet_edge_requests_total":
                key = "code_" + sample.labels["code"]
                errors[key] = errors.get(key, 0) + int(sample.value)
            elif sample.name == "edgefleet_edge_gc_collections_total":
                errors["gc_runs"] = errors.get("gc_runs", 0) + int(sample.value)
            elif sample.name == "edgefleet_edge_gc_pause_seconds_total":
                errors["gc_pause_us"] = int(sample.value * 1e6)
    return conns, errors


class Sampler:
    """Samples the edge's RSS and open connections in a thread while a phase runs."""

    def __init__(self, edge: Edge) -> None:
        self.edge = edge
        self.rss_peak = 0.0
        self.conns_peak = 0
        self.problems: list[str] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for tick in itertools.count():
            self.rss_peak = max(self.rss_peak, edge_rss_mib(self.edge))
            try:
                if tick % SCRAPE_EVERY == 0:
                    conns, _ = edge_gauges(self.edge)
                    self.conns_peak = max(self.conns_peak, conns)
            except (OSError, BenchError) as exc:  # the edge refused its own /metrics: a finding
                self.problems.append(f"/metrics scrape failed under attack: {exc}")
            if self.stopping.wait(SAMPLE_S):
                return

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(30)
