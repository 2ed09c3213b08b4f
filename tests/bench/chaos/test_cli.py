"""bench/chaos/cli.py: the options."""

from __future__ import annotations

import pytest

from bench.chaos.cli import parse_args


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
