"""Control's Prometheus metrics: counters moved by requests, fleet gauges set when scraped."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from edgefleet.fleet import ApplianceState


class ControlMetrics:
    """The counters and gauges control exports, in a registry of their own (one per service).

    Counters move as requests arrive; the fleet gauges (appliances by state, snapshot
    version) are set from the registry when /metrics is scraped.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "edgefleet_control_requests",
            "HTTP requests answered, by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.heartbeats = Counter(
            "edgefleet_control_heartbeats",
            "Heartbeats accepted, by whether a full inventory was asked for",
            ["resync"],
            registry=r,
        )
        self.registrations = Counter(
            "edgefleet_control_registrations", "Appliance registrations", registry=r
        )
        self.marked_down = Counter(
            "edgefleet_control_marked_down",
            "Times an appliance was marked down for missed heartbeats",
            registry=r,
        )
        self.reloads = Counter(
            "edgefleet_control_topology_reloads",
            "Topology reloads (SIGHUP), by result",
            ["result"],
            registry=r,
        )
        self.appliances = Gauge(
            "edgefleet_control_appliances", "Appliances by effective state", ["state"], registry=r
        )
        self.snapshot_version = Gauge(
            "edgefleet_control_snapshot_version", "Current fleet snapshot version", registry=r
        )
        self.manifest_generation = Gauge(
            "edgefleet_control_manifest_generation",
            "Generation of the newest fill publication stored (0: none yet)",
            registry=r,
        )
        self.manifests_published = Counter(
            "edgefleet_control_manifests_published",
            "Appliance manifests stored by fill publications",
            registry=r,
        )
        self.manifests_served = Counter(
            "edgefleet_control_manifests_served",
            "Manifest requests answered, by result (200 sent, 304 not modified, 404 none)",
            ["result"],
            registry=r,
        )
        self.popularity_bytes = Counter(
            "edgefleet_control_popularity_bytes",
            "Body bytes served that heartbeats reported (the fleet's own popularity counts)",
            registry=r,
        )
        self.popularity_pending = Gauge(
            "edgefleet_control_popularity_pending_keys",
            "(day, region, content id) counts held in memory, not yet written to the store",
            registry=r,
        )
        self.popularity_flushes = Counter(
            "edgefleet_control_popularity_flushes",
            "Writes of the popularity counts to the store, by result",
            ["result"],
            registry=r,
        )
        for state in ApplianceState:
            self.appliances.labels(state.value)
        for result in ("ok", "error"):
            self.reloads.labels(result)
            self.popularity_flushes.labels(result)
        for result in ("200", "304", "404"):
            self.manifests_served.labels(result)

    def render(self, counts: dict[ApplianceState, int], version: int) -> bytes:
        """The exposition text, with the fleet gauges brought up to date."""
        for state, n in counts.items():
            self.appliances.labels(state.value).set(n)
        self.snapshot_version.set(version)
        return generate_latest(self.registry)
