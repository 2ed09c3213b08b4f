"""Manifest documents: the fast check (control's) agrees with parse_manifest, field for field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.fleet import FieldError
from edgefleet.manifests import canonical_manifest, manifest_to_doc, parse_manifest

GOOD_FILE = {"id": "a.mp4", "size": 3, "checksum": "0" * 32, "sources": ["b", "c"]}
# Values that are right for some field and wrong for others.
ODD = st.sampled_from(
    [
        None,
        True,
        -1,
        0,
        7,
        1.5,
        "",
        "a.mp4",
        "b",
        "me",
        "x y",
        "0" * 32,
        "A" * 32,
        [],
        ["b"],
        ["me"],
        ["b", 3],
        {},
        {"id": "z"},
    ]
)
KEYS = ("id", "size", "checksum", "sources")


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """A valid manifest of a few files, then a few fields replaced by odd values."""
    files = [
        {
            **GOOD_FILE,
            "id": f"f{i}.mp4",
            "sources": draw(st.lists(st.sampled_from("bcd"), max_size=3)),
        }
        for i in range(draw(st.integers(0, 4)))
    ]
    doc: dict[str, Any] = {"appliance": "me", "generation": 3, "created_at": 1.0, "files": files}
    for _ in range(draw(st.integers(0, 2))):
        if files and draw(st.booleans()):
            f = draw(st.sampled_from(files))
            if not isinstance(f, dict):
                continue
            key = draw(st.sampled_from(KEYS))
            if draw(st.booleans()):
                f[key] = draw(ODD)
            else:
                f.pop(key, None)
        elif files and draw(st.booleans()):
            files[draw(st.integers(0, len(files) - 1))] = draw(ODD)
        else:
            doc[draw(st.sampled_from(["appliance", "generation", "created_at", "files"]))] = draw(
                ODD
            )
    return doc


@given(documents())
@settings(max_examples=400, deadline=None)
def test_canonical_manifest_agrees_with_parse_manifest(doc: Any) -> None:
    try:
        expected = parse_manifest(doc)
    except FieldError as exc:
        with pytest.raises(FieldError) as err:
            canonical_manifest(doc)
        assert (err.value.field, str(err.value)) == (exc.field, str(exc))
        return
    head, text, sources = canonical_manifest(doc)
    assert (head.appliance, head.generation, head.created_at) == (
        expected.appliance,
        expected.generation,
        expected.created_at,
    )
    assert text == json.dumps(manifest_to_doc(expected), separators=(",", ":"))
    assert sources == expected.source_names()


def test_canonical_text_drops_unknown_and_served_fields() -> None:
    doc = {
        "appliance": "me",
        "generation": 2,
        "created_at": 5,
        "files": [{"sources": ["b"], "checksum": "0" * 32, "size": 1, "id": "a", "x": 1}],
        "source_urls": {"b": "http://127.0.0.1:1"},
    }
    _, text, sources = canonical_manifest(doc)
    assert text == (
        '{"appliance":"me","generation":2,"created_at":5.0,'
        '"files":[{"id":"a","size":1,"checksum":"00000000000000000000000000000000","sources":["b"]}]}'
    )
    assert sources == {"b"}
