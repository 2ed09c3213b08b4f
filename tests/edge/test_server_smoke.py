"""The simplest end-to-end check: a signed GET returns the file, an unsigned one is refused."""

from __future__ import annotations

from collections.abc import Callable

from tests.edge.edgeproc import EdgeProcess, request


def test_signed_get_returns_file_and_unsigned_is_403(
    edge_factory: Callable[..., EdgeProcess],
) -> None:
    data = bytes(range(256)) * 100
    edge = edge_factory({"a.bin": data})
    status, headers, body = request(edge.port, edge.url("a.bin"))
    assert status == 200
    assert body == data
    assert headers["accept-ranges"] == "bytes"
    status, _, body = request(edge.port, "/c/a.bin")
    assert status == 403
    assert body.startswith(b"missing token")
