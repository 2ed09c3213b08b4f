"""bench/hostile/options.py: the command line."""

from __future__ import annotations

import pytest

from bench.hostile import options


def test_a_cap_the_kernel_would_refuse_is_refused_up_front() -> None:
    with pytest.raises(SystemExit):
        options.parse_args(["--attacker-cpu", "5"])
    assert options.parse_args(["--attacker-cpu", "0"]).attacker_cpu == 0
    assert options.parse_args([]).attacker_cpu == 25
