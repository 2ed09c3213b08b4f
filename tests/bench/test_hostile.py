"""bench/hostile.py's pure parts: the verdict over rounds, and the attackers' CPU cages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import hostile
from bench.hostile import Cages, Latency, Phase, judge, overall


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


def test_uncapped_attackers_get_no_cgroup_and_the_report_says_so() -> None:
    cages = Cages(0)
    assert cages.cage() is None
    assert "uncapped" in cages.describe()
    cages.close()


def test_cages_write_one_shared_capped_idle_group(tmp_path: Path, monkeypatch: Any) -> None:
    """Against a directory laid out as a cgroup v1 `cpu` hierarchy (the kernel's files are
    plain files here): one group for every attacker, quota = percent of the period, idle."""
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    monkeypatch.setattr(hostile, "CGROUP_ROOT", tmp_path)
    cages = hostile.Cages(25)
    first, second = cages.cage(), cages.cage()
    assert first is not None and first == second  # shared: 25 % for all of them together
    assert (first / "cpu.cfs_period_us").read_text() == str(hostile.CGROUP_PERIOD_US)
    assert (first / "cpu.cfs_quota_us").read_text() == str(hostile.CGROUP_PERIOD_US // 4)
    assert (first / "cpu.idle").read_text() == "1"
    assert "25 % of one core" in cages.describe()


def test_without_a_cgroup_hierarchy_the_attackers_run_uncapped(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(hostile, "CGROUP_ROOT", tmp_path)  # neither v1 cpu nor v2 here
    cages = hostile.Cages(25)
    assert cages.cage() is None
    assert "uncapped: no cgroup cpu controller" in cages.describe()


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


def test_a_cap_the_kernel_would_refuse_is_refused_up_front() -> None:
    with pytest.raises(SystemExit):
        hostile.parse_args(["--attacker-cpu", "5"])
    assert hostile.parse_args(["--attacker-cpu", "0"]).attacker_cpu == 0
    assert hostile.parse_args([]).attacker_cpu == 25


def test_an_attacker_that_cannot_be_moved_makes_the_report_say_uncapped(
    tmp_path: Path, monkeypatch: Any
) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    monkeypatch.setattr(hostile, "CGROUP_ROOT", tmp_path)
    cages = hostile.Cages(25)
    path = cages.cage()
    assert path is not None
    (path / "cgroup.procs").mkdir()  # writing the pid now fails, as on a refused delegation
    cages.enter(12345, "slowloris")
    assert "uncapped: cannot move slowloris" in cages.describe()
