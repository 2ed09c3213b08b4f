"""Entity-tag lists (RFC 9110 §8.8.3, §13.1.1-2): commas in tags, W/, "*", OWS, garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgefleet.etags import entity_tags, none_match, strong_match, weak_match

# etagc = %x21 / %x23-7E / obs-text: everything visible but DQUOTE, commas included.
ETAGC = st.characters(
    codec="latin-1", exclude_characters='"\x7f', min_codepoint=0x21, max_codepoint=0xFF
)
OPAQUE = st.text(ETAGC, max_size=12).map(lambda s: f'"{s}"')
TAGS = st.tuples(st.booleans(), OPAQUE).map(lambda t: ("W/" if t[0] else "") + t[1])
OWS = st.text(" \t", max_size=2)


@pytest.mark.parametrize(
    ("header", "tags"),
    [
        ('"a"', ['"a"']),
        ('W/"a"', ['W/"a"']),
        ('"a,b"', ['"a,b"']),
        ('"a,b", W/"c,d" ,"e"', ['"a,b"', 'W/"c,d"', '"e"']),
        ('"a", W/"c, d"', ['"a"']),  # SP is not etagc: the member is skipped
        ('  ,, "x" ,\t,', ['"x"']),
        ("*", None),
        (" * ", None),
        ('"a", *', ['"a"']),  # "*" is only "*" alone
        ("abc", []),
        ('abc, "d"', ['"d"']),
        ('"unterminated, "z"', ['"z"']),
        ('"sp ace"', []),  # SP is not etagc
        ('w/"a"', []),  # the weak indicator is case-sensitive (%s"W/")
        ("", []),
    ],
)
def test_examples(header: str, tags: list[str] | None) -> None:
    assert entity_tags(header) == tags


@given(st.lists(st.tuples(TAGS, OWS, OWS, st.integers(0, 2)), max_size=6))
def test_any_list_of_tags_parses_back(members: list[tuple[str, str, str, int]]) -> None:
    """Tags joined by commas with OWS and empty elements (§5.6.1) come back in order."""
    header = ",".join(
        f"{before}{tag}{after}" + "," * empties for tag, before, after, empties in members
    )
    assert entity_tags(header) == [tag for tag, *_ in members]


@given(st.text(st.characters(codec="latin-1"), max_size=40))
def test_anything_parses_to_valid_tags_only(header: str) -> None:
    tags = entity_tags(header)
    if tags is None:
        assert header.strip(" \t") == "*"
        return
    for tag in tags:
        assert entity_tags(tag) == [tag]
        assert tag.removeprefix("W/")[0] == '"' and tag[-1] == '"'
        assert '"' not in tag.removeprefix("W/")[1:-1]


@given(st.lists(TAGS, max_size=4), TAGS)
def test_none_match_is_weak_comparison_over_the_list(tags: list[str], etag: str) -> None:
    header = ", ".join(tags)
    expected = any(t.removeprefix("W/") == etag.removeprefix("W/") for t in tags)
    assert none_match(header, etag) is expected
    assert none_match(", ".join([*tags, etag]), etag)
    assert none_match("*", etag)


def test_comparisons() -> None:
    # RFC 9110 §8.8.3.2's table.
    assert not strong_match('W/"1"', 'W/"1"') and weak_match('W/"1"', 'W/"1"')
    assert not strong_match('W/"1"', 'W/"2"') and not weak_match('W/"1"', 'W/"2"')
    assert not strong_match('W/"1"', '"1"') and weak_match('W/"1"', '"1"')
    assert strong_match('"1"', '"1"') and weak_match('"1"', '"1"')
