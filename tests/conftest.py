"""Shared fixtures: tests start real servers on 127.0.0.1 port 0 and stop them afterwards."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from tests.edge.edgeproc import EdgeProcess

# Two noisy cores: a slow example is not a failure. Speed is measured in bench/, never here.
settings.register_profile("edgefleet", deadline=None)
settings.load_profile("edgefleet")


@pytest.fixture
def edge_factory(tmp_path: Path) -> Iterator[Callable[..., EdgeProcess]]:
    """Start edge servers (stopped at teardown): `edge_factory(files, workers=1, ...)`."""
    started: list[EdgeProcess] = []

    def make(files: dict[str, bytes] | None = None, **kwargs: Any) -> EdgeProcess:
        edge = EdgeProcess(tmp_path / f"edge{len(started)}", files, **kwargs).start()
        started.append(edge)
        return edge

    yield make
    for edge in started:
        edge.stop()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`make demo` once per test session, as a user runs it (free ports, then stopped):
    (its data directory, everything it printed). The services' /metrics are saved under
    data/metrics/ just before it stops."""
    data = tmp_path_factory.mktemp("demo")
    result = subprocess.run(
        [sys.executable, "-m", "demo.fleet", "--data-dir", str(data), "--ports", "any",
         "--check", "--scrape", str(data / "metrics")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return data, result.stdout
