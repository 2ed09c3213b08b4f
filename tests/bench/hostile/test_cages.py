"""bench/hostile/cages.py: the attackers' CPU cgroup, against directories laid out as cgroup hierarchies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.hostile import cages as cages_module
from bench.hostile.cages import Cages


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
    monkeypatch.setattr(cages_module, "CGROUP_ROOT", tmp_path)
    cages = Cages(25)
    first, second = cages.cage(), cages.cage()
    assert first is not None and first == second  # shared: 25 % for all of them together
    assert (first / "cpu.cfs_period_us").read_text() == str(cages_module.CGROUP_PERIOD_US)
    assert (first / "cpu.cfs_quota_us").read_text() == str(cages_module.CGROUP_PERIOD_US // 4)
    assert (first / "cpu.idle").read_text() == "1"
    assert "25 % of one core" in cages.describe()


def test_without_a_cgroup_hierarchy_the_attackers_run_uncapped(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setattr(cages_module, "CGROUP_ROOT", tmp_path)  # neither v1 cpu nor v2 here
    cages = Cages(25)
    assert cages.cage() is None
    assert "uncapped: no cgroup cpu controller" in cages.describe()


def test_an_attacker_that_cannot_be_moved_makes_the_report_say_uncapped(
    tmp_path: Path, monkeypatch: Any
) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1")
    monkeypatch.setattr(cages_module, "CGROUP_ROOT", tmp_path)
    cages = Cages(25)
    path = cages.cage()
    assert path is not None
    (path / "cgroup.procs").mkdir()  # writing the pid now fails, as on a refused delegation
    cages.enter(12345, "slowloris")
    assert "uncapped: cannot move slowloris" in cages.describe()
