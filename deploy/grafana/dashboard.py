"""Build deploy/grafana/edgefleet.json, the fleet dashboard (Grafana 10+, Prometheus datasource).

    python -m deploy.grafana.dashboard          # rewrite the JSON next to this file
    python -m deploy.grafana.dashboard --check  # exit 1 if the JSON is out of date

Panels are written here as (title, unit, queries) so that the JSON stays consistent (ids, grid
positions, datasource) and a test (tests/deploy/grafana/test_dashboard.py) can check every metric a
query names against a live scrape of the demo fleet. The `site` and `appliance` labels come from
the scrape configuration (deploy/prometheus/prometheus.yml): the services do not know them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "edgefleet.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
R = "[$__rate_interval]"
EDGE = '{site=~"$site", appliance=~"$appliance"}'

# (row title, [(panel title, unit, [(legend, expr), ...]), ...])
ROWS: list[tuple[str, list[tuple[str, str, list[tuple[str, str]]]]]] = [
    (
        "Fleet",
        [
            (
                "Throughput per site",
                "bps",
                [
                    (
                        "{{site}}",
                        f"sum by (site) (rate(edgefleet_edge_bytes_sent_total{EDGE}{R})) * 8",
                    )
                ],
            ),
            (
                "Throughput per appliance",
                "bps",
                [
                    (
                        "{{appliance}}",
                        f"sum by (appliance) (rate(edgefleet_edge_bytes_sent_total{EDGE}{R})) * 8",
                    )
                ],
            ),
            (
                "Appliances by state (control)",
                "short",
                [("{{state}}", "sum by (state) (edgefleet_control_appliances)")],
            ),
            (
                "Heartbeats received",
                "reqps",
                [
                    (
                        "resync={{resync}}",
                        f"sum by (resync) (rate(edgefleet_control_heartbeats_total{R}))",
                    )
                ],
            ),
        ],
    ),
    (
        "Edge",
        [
            (
                "Responses by status",
                "reqps",
                [("{{code}}", f"sum by (code) (rate(edgefleet_edge_requests_total{EDGE}{R}))")],
            ),
            (
                "Response time",
                "s",
                [
                    (
                        f"p{q}",
                        f"histogram_quantile(0.{q}, sum by (le) "
                        f"(rate(edgefleet_edge_request_duration_seconds_bucket{EDGE}{R})))",
                    )
                    for q in ("50", "99")
                ],
            ),
            (
                "Open connections",
                "short",
                [("{{appliance}}", f"sum by (appliance) (edgefleet_edge_open_connections{EDGE})")],
            ),
            (
                "Errors by kind",
                "ops",
                [("{{kind}}", f"sum by (kind) (rate(edgefleet_edge_errors_total{EDGE}{R}))")],
            ),
            (
                "Disks down",
                "short",
                [("{{appliance}}", f"count by (appliance) (edgefleet_edge_disk_up{EDGE} == 0)")],
            ),
            (
                "Disk free",
                "bytes",
                [
                    (
                        "{{appliance}} {{disk}}",
                        f"edgefleet_edge_disk_free_bytes{EDGE}",
                    )
                ],
            ),
            (
                "Index: files held",
                "short",
                [("{{appliance}}", f"sum by (appliance) (edgefleet_edge_index_files{EDGE})")],
            ),
            (
                "Workers alive / restarts",
                "short",
                [
                    ("alive {{appliance}}", f"edgefleet_edge_workers{EDGE}"),
                    (
                        "restarts {{appliance}}",
                        f"increase(edgefleet_edge_worker_restarts_total{EDGE}[1h])",
                    ),
                ],
            ),
        ],
    ),
    (
        "Steering",
        [
            (
                "Answers by class",
                "ops",
                [("{{class}}", f"sum by (class) (rate(edgefleet_steering_answers_total{R}))")],
            ),
            (
                "Served from the client's own site",
                "percentunit",
                [
                    (
                        "local",
                        f'sum(rate(edgefleet_steering_answers_total{{class="local"}}{R})) / '
                        f"sum(rate(edgefleet_steering_answers_total{R}))",
                    )
                ],
            ),
            (
                "Steering response time",
                "s",
                [
                    (
                        "p99",
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(edgefleet_steering_request_seconds_bucket{R})))",
                    )
                ],
            ),
            (
                "Snapshot age",
                "s",
                [("{{instance}}", "edgefleet_steering_snapshot_age_seconds")],
            ),
        ],
    ),
    (
        "Fill",
        [
            (
                "Fill: bytes to go / done",
                "bytes",
                [
                    ("to go {{appliance}}", f"edgefleet_fill_bytes_to_go{EDGE}"),
                    ("done {{appliance}}", f"edgefleet_fill_bytes_done{EDGE}"),
                ],
            ),
            (
                "Fill rate",
                "Bps",
                [("{{appliance}}", f"edgefleet_fill_rate_bytes_per_second{EDGE}")],
            ),
            (
                "Fill errors by source",
                "short",
                [
                    (
                        "{{appliance}} ← {{source}}",
                        f"increase(edgefleet_fill_errors_total{EDGE}[1h])",
                    )
                ],
            ),
            (
                "Fill running / manifest generation",
                "short",
                [
                    ("running {{appliance}}", f"edgefleet_fill_running{EDGE}"),
                    ("published generation", "max(edgefleet_control_manifest_generation)"),
                ],
            ),
        ],
    ),
]


def _panel(
    pid: int, title: str, unit: str, queries: list[tuple[str, str]], x: int, y: int
) -> dict[str, Any]:
    return {
        "id": pid,
        "type": "timeseries",
        "title": title,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (legend, expr) in enumerate(queries)
        ],
    }


def _variable(name: str, query: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
    }


def build() -> dict[str, Any]:
    """The dashboard document."""
    panels: list[dict[str, Any]] = []
    pid = 1
    y = 0
    for row_title, row in ROWS:
        panels.append(
            {"id": pid, "type": "row", "title": row_title, "collapsed": False,
             "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}
        )  # fmt: skip
        pid += 1
        y += 1
        for i, (title, unit, queries) in enumerate(row):
            panels.append(_panel(pid, title, unit, queries, 12 * (i % 2), y + 8 * (i // 2)))
            pid += 1
        y += 8 * ((len(row) + 1) // 2)
    return {
        "uid": "edgefleet-fleet",
        "title": "edgefleet: fleet overview",
        "tags": ["edgefleet", "cdn"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                _variable("site", "label_values(edgefleet_edge_workers, site)"),
                _variable(
                    "appliance", 'label_values(edgefleet_edge_workers{site=~"$site"}, appliance)'
                ),
            ]
        },
        "panels": panels,
    }


def render() -> str:
    """The JSON text, as committed."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python -m deploy.grafana.dashboard", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
