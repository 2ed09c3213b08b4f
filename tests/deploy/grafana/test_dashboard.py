"""The Grafana dashboard queries only metrics the fleet really exports (a live scrape of the
demo fleet), and the committed JSON is what deploy/grafana/dashboard.py builds."""

from __future__ import annotations

import json
import re
from pathlib import Path

from deploy.grafana.dashboard import OUT, main

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}


def exported(text: str) -> set[str]:
    """Series names a Prometheus exposition declares (a family with no sample yet counts)."""
    names = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M))
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        base = family.removesuffix("_total")
        names.update(base + s for s in SUFFIXES.get(kind, ("",)))
    return names


def queried(dashboard: dict[str, object]) -> set[str]:
    names: set[str] = set()
    for panel in dashboard["panels"]:  # type: ignore[attr-defined]
        for target in panel.get("targets", []):
            names.update(re.findall(r"\b(edgefleet_[a-z0-9_]+)", target["expr"]))
    return names


def test_committed_dashboard_is_built_from_the_generator() -> None:
    assert main(["--check"]) == 0, "run: python -m deploy.grafana.dashboard"


def test_every_queried_metric_exists_in_a_live_scrape_of_the_demo(
    demo_run: tuple[Path, str],
) -> None:
    data, _ = demo_run
    scrapes = sorted((data / "metrics").glob("*.prom"))
    assert {p.stem for p in scrapes} >= {"control", "steering", "ams1-a", "origin-1"}
    live = set().union(*(exported(p.read_text()) for p in scrapes))
    wanted = queried(json.loads(OUT.read_text()))
    assert len(wanted) >= 20
    assert wanted - live == set()


def test_the_check_can_fail() -> None:
    text = "# TYPE edgefleet_edge_requests counter\nedgefleet_edge_requests_total 3\n"
    assert "edgefleet_edge_requests_total" in exported(text)
    assert "edgefleet_edge_bytes_sent_total" not in exported(text)
