"""bench/hostile/verdicts.py: each phase against its round's unloaded phase, the verdict over rounds."""

from __future__ import annotations

import pytest

from bench.hostile.verdicts import Latency, Phase, judge, overall


def phase(attack: str, p99_ms: float, round_no: int, failed: int = 0, rss: float = 100) -> Phase:
    return Phase(
        attack=attack,
        tool="-",
        latency=Latency(3000, failed, p99_ms / 3, p99_ms, p99_ms * 2),
        rss_before_mib=rss,
        rss_peak_mib=rss,
        rss_after_mib=rss,
        conns_peak=1,
        conns_after=1,
        errors={},
        codes={},
        round=round_no,
    )


def rounds(*pairs: tuple[float, float], **extra: float) -> list[Phase]:
    """(unloaded p99, attack p99) per round, each attack judged against its own round."""
    out = []
    for i, (base_ms, attack_ms) in enumerate(pairs, start=1):
        base = phase("unloaded", base_ms, i)
        attacked = phase("all", attack_ms, i, **extra)  # type: ignore[arg-type]
        judge(attacked, base, 0.0, 128)
        out += [base, attacked]
    return out


def test_the_median_round_decides_the_latency_target() -> None:
    # One noisy round (4x) among two good ones passes; two bad ones fail.
    (v,) = overall(rounds((0.4, 0.6), (0.5, 2.0), (0.4, 0.7)))
    assert v.ok and v.attack == "all"
    assert v.ratios == pytest.approx((1.5, 4.0, 1.75))
    assert v.median_ratio == pytest.approx(1.75)
    (v,) = overall(rounds((0.4, 0.9), (0.5, 2.0), (0.4, 0.7)))
    assert not v.ok and "median round" in v.why[0]


def test_each_round_is_judged_against_its_own_unloaded_phase() -> None:
    # The machine got slower in round 2: 1.0 ms is within 2x of that round's 0.6 ms.
    (v,) = overall(rounds((0.3, 0.5), (0.6, 1.0)))
    assert v.ok
    assert v.ratios[1] == pytest.approx(1.0 / 0.6)


def test_a_failed_request_or_memory_in_any_round_fails_the_attack() -> None:
    (v,) = overall(rounds((0.4, 0.5), (0.4, 0.5), (0.4, 0.5), failed=1))
    assert not v.ok and any("normal requests failed" in w for w in v.why)
    phases = rounds((0.4, 0.5))
    phases[1].rss_peak_mib = 400  # +300 MiB over the unloaded phase's 100
    judge(phases[1], phases[0], 0.0, 128)
    (v,) = overall(phases)
    assert not v.ok and any("RSS" in w for w in v.why)


@pytest.mark.parametrize("where", [0, 1, 2])
def test_a_round_without_a_p99_fails_wherever_it_falls(where: int) -> None:
    """Too few answers to compute a p99 (the attack starved the normal client) is the worst
    round, not one that sorting may drop."""
    pairs = [(0.4, 0.5), (0.4, 0.5)]
    pairs.insert(where, (0.4, float("nan")))
    (v,) = overall(rounds(*pairs))
    assert v.ok  # one starved round of three: the median round is fine
    pairs = [(0.4, 0.5)]
    pairs.insert(min(where, 1), (0.4, float("nan")))
    pairs.insert(where, (0.4, float("nan")))
    (v,) = overall(rounds(*pairs))
    assert not v.ok
