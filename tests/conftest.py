"""Shared fixtures: tests start real servers on 127.0.0.1 port 0 and stop them afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.edge.edgeproc import EdgeProcess


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
