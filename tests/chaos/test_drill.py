"""The chaos drill (bench/chaos.py): its pure parts, then a short drill against a real fleet."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.chaos import (
    HOLD_S,
    KINDS,
    OUT_KINDS,
    Fault,
    SteeringWatch,
    answer_appliances,
    make_schedule,
    parse_args,
    verdict,
)
from bench.player import summarise

EDGES = ["ams1-a", "ams1-b", "lon1-a", "lon1-b"]
STEERING = ["steering-1", "steering-2"]

# -- the schedule ---------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    duration=st.floats(10, 1000),
    kinds=st.lists(st.sampled_from(KINDS), min_size=1, unique=True),
    scale=st.floats(0.3, 2.0),
)
def test_faults_never_overlap_and_end_before_the_drill(
    seed: int, duration: float, kinds: list[Any], scale: float
) -> None:
    settle = 4.0
    faults = make_schedule(seed, duration, EDGES, STEERING, kinds, settle_s=settle,
                           hold_scale=scale)  # fmt: skip
    for a, b in itertools.pairwise(faults):
        assert b.at_s >= a.at_s + a.hold_s + settle - 1e-6
    for f in faults:
        assert f.at_s + f.hold_s + settle <= duration + 1e-6
        assert f.kind in kinds
        assert f.hold_s == pytest.approx(HOLD_S[f.kind] * scale)
        if f.kind == "steering-kill":
            assert f.target in STEERING
        elif f.kind == "control-restart":
            assert f.target == "control"
        else:
            assert f.target in EDGES
    # Each kind once before any repeats.
    first_round = [f.kind for f in faults[: len(kinds)]]
    assert len(set(first_round)) == len(first_round)


def test_the_schedule_is_reproducible_from_its_seed() -> None:
    one = make_schedule(42, 300, EDGES, STEERING)
    assert one == make_schedule(42, 300, EDGES, STEERING)
    assert one != make_schedule(43, 300, EDGES, STEERING)
    assert {f.kind for f in one} == set(KINDS)  # 300 s has room for every kind


def test_a_bad_schedule_request_names_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="kinds: unknown fault 'meteor'"):
        make_schedule(1, 100, EDGES, STEERING, ["meteor"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="edges"):
        make_schedule(1, 100, [], STEERING)
    with pytest.raises(ValueError, match="steering-kill needs"):
        make_schedule(1, 100, EDGES, [], ["steering-kill"])


def test_bad_options_exit_2_naming_the_option(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, option in (
        (["--duration", "5"], "--duration"),
        (["--users", "0"], "--users"),
        (["--faults", "edge-kill,meteor"], "--faults"),
        (["--timeout", "0"], "--timeout"),
    ):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == 2
        assert option in capsys.readouterr().err


# -- the steering watch ----------------------------------------------------------------------


def fault(kind: Any = "edge-kill", target: str = "ams1-a") -> Fault:
    return Fault(10.0, kind, target, 8.0)


def test_the_last_answer_listing_the_target_is_the_time_out_of_steering() -> None:
    watch = SteeringWatch()
    e = watch.open(fault(), now=100.0)
    watch.observe(99.0, {"ams1-a"})  # before the fault: does not count
    watch.observe(100.5, {"ams1-a", "ams1-b"})
    watch.observe(101.4, {"ams1-a"})
    watch.observe(101.6, {"ams1-b"})
    watch.observe(107.0, {"ams1-b"})
    watch.close(e, 108.0)
    watch.observe(108.5, {"ams1-a"})  # back after the repair: does not count
    assert e.out_after_s(margin_s=0.3) == pytest.approx(1.4)


def test_a_target_still_listed_at_the_end_never_left() -> None:
    watch = SteeringWatch()
    e = watch.open(fault(), now=0.0)
    watch.observe(7.9, {"ams1-a"})
    watch.close(e, 8.0)
    assert e.out_after_s(margin_s=0.3) is None


def test_an_answer_listing_the_origin_is_counted() -> None:
    watch = SteeringWatch(never=frozenset({"origin-1"}))
    watch.observe(1.0, {"ams1-a"})
    watch.observe(2.0, {"ams1-a", "origin-1"})
    assert watch.forbidden == 1


def test_no_answer_during_the_fault_is_no_measurement() -> None:
    watch = SteeringWatch()
    e = watch.open(fault(), now=0.0)
    watch.close(e, 8.0)
    assert e.out_after_s(margin_s=0.3) is None
    f = watch.open(fault(), now=10.0)
    watch.observe(11.0, {"ams1-b"})
    watch.close(f, 18.0)
    assert f.out_after_s(margin_s=0.3) == 0.0  # already gone at the first answer


def test_answer_appliances_reads_every_url_and_survives_a_bad_answer() -> None:
    answer = {
        "results": [
            {"content_id": "a", "urls": [{"appliance": "x"}, {"appliance": "y"}]},
            {"content_id": "b", "urls": [{"appliance": "z"}]},
        ]
    }
    assert answer_appliances(answer) == {"x", "y", "z"}
    assert answer_appliances({"results": [{"urls": None}]}) == set()
    assert answer_appliances([]) == set()


# -- the verdict -----------------------------------------------------------------------------


def row(kind: str, out: float | None) -> dict[str, Any]:
    return {"kind": kind, "target": "ams1-a", "out_of_steering_s": out}


def test_verdict_fails_on_a_slow_or_missing_exit_and_ignores_other_faults() -> None:
    from bench.player import SessionReport

    ok = SessionReport("t", "completed", 30, 0.1, 30, 0, 0, 0, 10, 1000)
    summary = summarise([ok])
    checks = verdict(summary, 0, [row("edge-kill", 1.5), row("edge-delay", None)], 2.0)
    assert all(c.ok for c in checks)
    assert len(checks) == 5  # 4 playback targets + the one exit
    for bad in (row("edge-stop", 2.5), row("edge-drain", None)):
        assert not all(c.ok for c in verdict(summary, 0, [bad], 2.0))
    assert not all(c.ok for c in verdict(summary, 1, [], 2.0))
    failed = summarise([ok, SessionReport("t", "failed", 3, None, 0, 0, 0, 3, 0, 0, "all")])
    assert not all(c.ok for c in verdict(failed, 0, [], 2.0))
    assert not all(c.ok for c in verdict(summarise([]), 0, [], 2.0))  # no load, no pass
    assert not all(c.ok for c in verdict(summary, 0, [], 2.0, origin_answers=1))
    assert set(KINDS) >= OUT_KINDS


# -- a short drill against a real fleet -------------------------------------------------------


@pytest.mark.slow
def test_a_short_drill_meets_its_targets(tmp_path: Path) -> None:
    """About 36 s of load: an edge hung, one drained, one killed (seed 2 places all three,
    in both sites), none felt by a viewer."""
    out = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--duration", "36", "--users", "4",
         "--seed", "2", "--faults", "edge-kill,edge-stop,edge-drain", "--hold-scale", "0.6",
         "--settle", "4", "--out", str(out), "--work", str(tmp_path / "fleet")],
        capture_output=True, text=True, timeout=110, check=False,
    )  # fmt: skip
    print(run.stdout)
    assert (out / "report.md").exists(), run.stderr
    doc = json.loads((out / "report.json").read_text())
    assert (out / "timeline.png").read_bytes().startswith(b"\x89PNG")
    kinds = {f["kind"] for f in doc["faults"]}
    assert kinds == {"edge-kill", "edge-stop", "edge-drain"}
    assert doc["sessions"]["sessions"] >= 4
    assert doc["sessions"]["failed"] == 0, doc["sessions"]["errors"]
    assert doc["wrong_bytes"] == 0, doc["wrong_examples"]
    for f in doc["faults"]:
        assert f["out_of_steering_s"] is not None, f
        assert f["out_of_steering_s"] <= doc["bound_s"], f
    assert doc["pass"] is True
    assert run.returncode == 0, run.stderr
