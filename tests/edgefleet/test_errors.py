"""The error body every service answers with: what one side builds the other reads back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.errors import ErrorBody, error_body, parse_error_body


@given(st.text(), st.none() | st.text())
def test_what_a_service_builds_a_client_reads(message: str, field: str | None) -> None:
    raw = error_body(message, field)
    assert json.loads(raw) == {"error": message, "field": field}  # field: null, never missing
    assert parse_error_body(raw) == ErrorBody(message, field)


@pytest.mark.parametrize(
    "raw",
    [b"<html>502 Bad Gateway</html>", b'{"error": 5}', b"[]", b'{"err', b"\xff", b"[" * 100_000],
)
def test_anything_else_is_not_an_error_body(raw: bytes) -> None:
    assert parse_error_body(raw) is None


def test_a_field_that_is_not_a_string_names_no_field() -> None:
    assert parse_error_body(b'{"error": "no", "field": 3}') == ErrorBody("no", None)
