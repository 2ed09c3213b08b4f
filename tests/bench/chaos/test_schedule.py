"""bench/chaos/schedule.py: the seeded fault schedule (pure)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.chaos.schedule import HOLD_S, KINDS, make_schedule

EDGES = ["ams1-a", "ams1-b", "lon1-a", "lon1-b"]
STEERING = ["steering-1", "steering-2"]


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
