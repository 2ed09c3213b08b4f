"""PNG plots: the wrk benchmark (edge vs nginx) and the load test's timeline."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from bench.plots import edge_png, edge_servers, main, plot_edge_run, timeline_png
from bench.timeline import Timeline


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header (IHDR comes first)."""
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def edge_report(servers: tuple[str, ...]) -> dict[str, Any]:
    """A bench/edge.py report, cut down: two workloads, two rounds."""
    rows, runs = [], []
    for workload, size, req_s in (("4k", 4096, 100_000.0), ("1m", 1 << 20, 4000.0)):
        row: dict[str, Any] = {"workload": workload, "range_bytes": size}
        for i, server in enumerate(servers):
            row[f"{server}_req_s"] = req_s * (1 - 0.2 * i)
            row[f"{server}_mb_s"] = req_s * (1 - 0.2 * i) * size / 1e6
            for r in (1, 2):
                runs.append(
                    {"round": r, "workload": workload, "server": server,
                     "req_s": row[f"{server}_req_s"] * (1 + 0.01 * r),
                     "mb_s": row[f"{server}_mb_s"] * (1 + 0.01 * r)}
                )  # fmt: skip
        row["ratio"] = row["edge_req_s"] / row["nginx_req_s"]
        rows.append(row)
    return {
        "timestamp": "20261125T000000Z",
        "options": {"connections": 64, "duration_s": 10, "rounds": 2},
        "summary": rows,
        "runs": runs,
    }


@pytest.mark.parametrize("servers", [("nginx", "edge"), ("nginx", "edge", "minimal")])
def test_an_edge_report_becomes_a_png_beside_its_json(
    tmp_path: Path, servers: tuple[str, ...]
) -> None:
    report = edge_report(servers)
    assert edge_servers(report) == list(servers)
    js = tmp_path / "edge-20261125T000000Z.json"
    js.write_text(json.dumps(report))
    png = plot_edge_run(js)
    assert png == tmp_path / "edge-20261125T000000Z.png"
    width, height = png_size(png)
    assert width > 400 and height > 400


def test_a_real_result_file_plots(tmp_path: Path) -> None:
    """The newest committed result, if any: the plot reads what bench/edge.py really writes."""
    results = sorted((Path(__file__).parents[2] / "bench" / "results").glob("edge-*.json"))
    if not results:
        pytest.skip("no bench/results/edge-*.json in this checkout")
    png = edge_png(json.loads(results[-1].read_text()), tmp_path / "edge.png")
    assert png_size(png)[0] > 400


def test_a_report_without_rows_is_an_error_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "edge-empty.json"
    empty.write_text(json.dumps({"summary": []}))
    broken = tmp_path / "edge-broken.json"
    broken.write_text(json.dumps({"runs": []}))
    assert main([str(empty), str(broken)]) == 1
    err = capsys.readouterr().err
    assert "edge-empty.json" in err and "no workloads" in err
    assert "edge-broken.json" in err and "summary" in err
    assert not list(tmp_path.glob("*.png"))


def test_a_load_test_timeline_plots_with_fault_marks(tmp_path: Path) -> None:
    tl = Timeline(
        start=0.0,
        bucket_s=1.0,
        mb_s=[0.0, 30.0, 12.5, 12.0, 0.0],
        failovers=[0, 0, 3, 1, 0],
        failed_sessions=[0, 0, 0, 1, 0],
        rebuffer_s=[0.0, 0.0, 1.5, 0.0, 0.0],
    )
    png = timeline_png(tl, tmp_path / "t.png", title="2 viewers", marks=[(2.0, "SIGKILL ams1-a")])
    assert png_size(png)[0] > 400
    empty = Timeline(0.0, 1.0, [0.0], [0], [0], [0.0])  # a run where nothing happened
    assert png_size(timeline_png(empty, tmp_path / "e.png"))[1] > 200
