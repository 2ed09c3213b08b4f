"""bench/chaos/watch.py: when a broken appliance left steering's answers (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from bench.chaos.schedule import Fault
from bench.chaos.watch import SteeringWatch, answer_appliances


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
