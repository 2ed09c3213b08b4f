"""Steering metrics in Prometheus text: answers by class and site, latency, snapshot health.

Counters live in a registry per application (tests run several apps in one process). The hot
path increments prometheus_client children cached by label values, so one answer costs a dict
lookup and an increment. Snapshot figures are read at scrape time from the puller.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from steering.ranking import AnswerClass
from steering.snapshot import SnapshotPuller

# Request latency buckets in seconds: a steering answer should take well under a millisecond.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1.0)


class _SnapshotCollector(Collector):
    """Snapshot age, version and size, and failed polls, read from the puller when scraped."""

    def __init__(self, puller: Callable[[], SnapshotPuller | None]) -> None:
        self._puller = puller

    def collect(self) -> Iterator[Metric]:
        puller = self._puller()
        index = puller.index if puller is not None else None
        age = puller.age_s() if puller is not None else None
        yield GaugeMetricFamily(
            "edgefleet_steering_snapshot_age_seconds",
            "Seconds since control last confirmed the snapshot (NaN: no snapshot yet)",
            value=math.nan if age is None else age,
        )
        yield GaugeMetricFamily(
            "edgefleet_steering_snapshot_version",
            "Version of the snapshot in use (-1: none yet)",
            value=-1 if index is None else index.version,
        )
        for name, text, count in (
            ("sites", "Sites", None if index is None else len(index.sites)),
            ("appliances", "Appliances", None if index is None else len(index.appliances)),
            ("contents", "Content ids", None if index is None else len(index.contents)),
        ):
            yield GaugeMetricFamily(
                f"edgefleet_steering_snapshot_{name}", f"{text} in the snapshot", value=count or 0
            )
        yield CounterMetricFamily(
            "edgefleet_steering_snapshot_failures",
            "Polls of control that failed (unreachable, bad status, invalid snapshot)",
            value=0 if puller is None else puller.failures,
        )


class SteeringMetrics:
    """The counters and histograms of one steering application."""

    def __init__(self, puller: Callable[[], SnapshotPuller | None]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._answers = Counter(
            "edgefleet_steering_answers",
            "Content ids answered, by class and client site",
            ["class", "site"],
            registry=self.registry,
        )
        self._responses = Counter(
            "edgefleet_steering_responses",
            "Steering API responses by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "edgefleet_steering_request_seconds",
            "Time to answer a steering request",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_SnapshotCollector(puller))
        self._answer_children: dict[tuple[AnswerClass, str], Counter] = {}
        self._response_children: dict[tuple[str, int], Counter] = {}
        self._latency_children: dict[str, Histogram] = {}

    def answered(self, classes: list[tuple[AnswerClass, str]]) -> None:
        """Count one answer per (class, site)."""
        children = self._answer_children
        for key in classes:
            child = children.get(key)
            if child is None:
                child = children[key] = self._answers.labels(key[0].value, key[1])
            child.inc()

    def responded(self, route: str, status: int, seconds: float) -> None:
        """Count a response and observe its latency."""
        child = self._response_children.get((route, status))
        if child is None:
            child = self._response_children[(route, status)] = self._responses.labels(
                route, str(status)
            )
        child.inc()
        hist = self._latency_children.get(route)
        if hist is None:
            hist = self._latency_children[route] = self._latency.labels(route)
        hist.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
