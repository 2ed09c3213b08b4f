"""bench/hostile/report.py: the table rows and the markdown report, from phases alone."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from bench.hostile import report
from bench.hostile.verdicts import Latency, Phase, judge, overall


def phase(attack: str, p99_ms: float, rss: float = 100) -> Phase:
    return Phase(
        attack=attack,
        tool="python" if attack != "unloaded" else "-",
        latency=Latency(3000, 0, p99_ms / 3, p99_ms, p99_ms * 2, 4.5, (4.5,)),
        rss_before_mib=rss,
        rss_peak_mib=rss,
        rss_after_mib=rss,
        conns_peak=7,
        conns_after=1,
        errors={"header_timeout": 12, "send_timeout": 0},
        codes={"206": 3000, "408": 12},
        attackers={"idle (python)": '{"opened": 10}'},
    )


def doc(phases: list[Phase]) -> dict[str, Any]:
    options = {"workers": 2, "file_mib": 32, "normal_rate": 200.0, "duration_s": 15.0,
               "ramp_s": 6.0, "slowloris": 1000, "slow_read": 500, "range_conns": 1000,
               "rate": 200, "idle": 5000, "p99_floor_ms": 0.0, "rss_bound_mib": 128.0,
               "rounds": 1}  # fmt: skip
    return {
        "timestamp": "20261208T000000Z",
        "took_s": 60.0,
        "options": options,
        "nofile": 1048576,
        "attack_tool": "python",
        "attackers_run": "uncapped",
        "machine": {"nproc": "2", "git": "abc"},
        "verdicts": [asdict(v) for v in overall(phases)],
        "warnings": [],
    }


def judged() -> list[Phase]:
    base, attacked = phase("unloaded", 0.5), phase("idle", 2.0)
    base.verdict = "baseline"
    judge(attacked, base, 0.0, 128)
    return [base, attacked]


def test_a_row_says_each_column_of_the_header() -> None:
    base, attacked = report.rows(judged())
    assert len(base) == len(report.HEADER)
    assert base[1] == "unloaded" and base[5] == "-" and base[-1] == "baseline"
    assert attacked[5] == "4.00x"
    assert attacked[9] == "header_timeout 12"  # a zero counter is left out
    assert attacked[10] == "206x3000 408x12"
    assert attacked[-1] == "FAIL (p99 2.00 ms > 2x unloaded)"


def test_the_markdown_report_gives_the_table_the_verdicts_and_the_slow_moments() -> None:
    phases = judged()
    text = report.markdown(doc(phases), phases)
    assert text.startswith("# Hostile clients vs one edge, 20261208T000000Z\n")
    assert "| round | attack" in text
    assert "- idle: p99 vs unloaded 4.00x; median 4.00x: FAIL (median round's p99" in text
    assert '- round 1, idle / idle (python): {"opened": 10}' in text
    assert "- round 1, idle: max 4.0 ms at 4.5 s; > 10 ms at [4.5]" in text
    assert text.endswith("## Warnings\n\nNone.\n")


def test_results_are_written_as_markdown_and_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "RESULTS_DIR", tmp_path / "results")
    md, js = report.write_results({"timestamp": "T", "x": 1}, "text\n")
    assert md == tmp_path / "results" / "hostile-T.md" and md.read_text() == "text\n"
    assert js.name == "hostile-T.json" and '"x": 1' in js.read_text()
