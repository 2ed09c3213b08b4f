"""bench/hostile/httpread.py over a real socket pair."""

from __future__ import annotations

import socket

import pytest

from bench.hostile.httpread import read_response


def test_a_response_in_pieces_leaves_what_follows_it_in_the_buffer() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\n")
        b.sendall(b"\r\nhel")
        b.sendall(b"loHTTP/1.1")
        status, body, rest = read_response(a, b"")
        assert (status, body, rest) == (206, b"hello", b"HTTP/1.1")


def test_a_connection_closed_early_is_an_error() -> None:
    for sent in (b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc"):
        a, b = socket.socketpair()
        with a:
            b.sendall(sent)
            b.close()
            with pytest.raises(ConnectionError):
                read_response(a, b"")
