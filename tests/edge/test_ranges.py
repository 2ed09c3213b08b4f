"""Range requests against RFC 9110 §14.1-14.3: examples, edge cases and properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge import ranges
from edge.ranges import (
    COALESCE_GAP,
    DEFAULT_MAX_RANGES,
    EXCESSIVE,
    FULL,
    UNSATISFIABLE,
    Satisfiable,
    evaluate,
    parse_path_range,
)

# -- RFC 9110 §14.1.2 examples, on a 10000-byte representation ------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-499", ((0, 499),)),  # the first 500 bytes
        ("bytes=500-999", ((500, 999),)),  # the second 500 bytes
        ("bytes=-500", ((9500, 9999),)),  # the final 500 bytes
        ("bytes=9500-", ((9500, 9999),)),  # the final 500 bytes, open-ended
        ("bytes=0-0,-1", ((0, 0), (9999, 9999))),  # first and last bytes only
        # "other valid (but not canonical) specifications of the second 500 bytes"
        ("bytes=500-600,601-999", ((500, 999),)),
        ("bytes=500-700,601-999", ((500, 999),)),
    ],
)
def test_rfc_9110_examples(header: str, expected: tuple[tuple[int, int], ...]) -> None:
    assert evaluate(header, 10_000) == Satisfiable(expected)


def test_no_range_header_sends_the_whole_representation() -> None:
    assert evaluate(None, 10_000) is FULL


@pytest.mark.parametrize("unit", ["bytes", "BYTES", "Bytes", "bYtEs"])
def test_range_unit_is_case_insensitive(unit: str) -> None:
    assert evaluate(f"{unit}=0-9", 100) == Satisfiable(((0, 9),))


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-9,20-29",
        "bytes=0-9, 20-29",
        "bytes=0-9 ,\t20-29",
        "bytes=0-9,,20-29",
        "bytes=,0-9, ,20-29,",
        "bytes= 0-9,20-29 ",
    ],
)
def test_whitespace_and_empty_list_elements_are_accepted(header: str) -> None:
    # §5.6.1.2: OWS around commas, and empty list elements, MUST be accepted. Ranges 10 bytes
    # apart are within COALESCE_GAP, so they come back as one part.
    assert evaluate(header, 1000) == Satisfiable(((0, 29),))


@pytest.mark.parametrize(
    "header",
    [
        "bytes=5-2",  # last < first: an invalid int-range (§14.1.1)
        "bytes=",
        "bytes=,",
        "bytes",
        "bytes 0-9",
        "bytes =0-9",
        "bytes= 0 -9",
        "bytes=0-9-",
        "bytes=--5",
        "bytes=-",
        "bytes=a-b",
        "bytes=0x10-0x20",
        "bytes=+1-5",
        "bytes=1-+5",
        "bytes=\u0661-\u0662",  # Arabic-Indic digits: not DIGIT
        "bytes=0-9;20-29",
        "bytes=0-9,garbage",
        "=0-9",
    ],
)
def test_invalid_syntax_is_ignored_with_200(header: str) -> None:
    assert ranges.parse(header) is None
    assert evaluate(header, 10_000) is FULL


@pytest.mark.parametrize("header", ["items=0-9", "none", "pages=1-2", "bits=0-9"])
def test_unknown_unit_is_ignored(header: str) -> None:
    # §14.2: "An origin server MUST ignore a Range header field that contains a range unit it
    # does not understand."
    assert evaluate(header, 10_000) is FULL


@pytest.mark.parametrize(
    "header",
    ["bytes=10000-", "bytes=10000-20000", "bytes=-0", "bytes=-0,10000-10001", "bytes=20000-"],
)
def test_unsatisfiable(header: str) -> None:
    assert evaluate(header, 10_000) is UNSATISFIABLE


def test_unsatisfiable_specs_are_dropped_when_another_is_satisfiable() -> None:
    assert evaluate("bytes=20000-,-0,5-9", 10_000) == Satisfiable(((5, 9),))


@pytest.mark.parametrize("header", ["bytes=0-", "bytes=0-0", "bytes=-1", "bytes=-100"])
def test_zero_length_representation_is_never_satisfiable(header: str) -> None:
    assert evaluate(header, 0) is UNSATISFIABLE


def test_last_pos_beyond_the_end_is_clamped() -> None:
    assert evaluate("bytes=9990-20000", 10_000) == Satisfiable(((9990, 9999),))


def test_suffix_longer_than_representation_selects_all_of_it() -> None:
    assert evaluate("bytes=-20000", 10_000) == Satisfiable(((0, 9999),))


def test_huge_numbers() -> None:
    nineteen = "9" * 19
    assert evaluate(f"bytes=0-{nineteen}", 100) == Satisfiable(((0, 99),))
    assert evaluate(f"bytes={nineteen}-", 100) is UNSATISFIABLE
    assert evaluate(f"bytes=-{nineteen}", 100) == Satisfiable(((0, 99),))
    # Beyond 19 digits the header is ignored rather than turned into huge integers.
    assert evaluate(f"bytes=0-{'9' * 20}", 100) is FULL
    assert evaluate(f"bytes=0-{'9' * 5000}", 100) is FULL


def test_more_than_max_ranges_is_refused() -> None:
    many = ",".join(f"{i * 1000}-{i * 1000}" for i in range(DEFAULT_MAX_RANGES + 1))
    assert evaluate(f"bytes={many}", 10**6) is EXCESSIVE
    allowed = ",".join(f"{i * 1000}-{i * 1000}" for i in range(DEFAULT_MAX_RANGES))
    decision = evaluate(f"bytes={allowed}", 10**6)
    assert isinstance(decision, Satisfiable)
    assert len(decision.ranges) == DEFAULT_MAX_RANGES
    assert evaluate("bytes=0-0,5000-5000,9000-9000", 10**6, max_ranges=2) is EXCESSIVE
    # An unknown unit is still ignored, however many dashes it holds (§14.2: MUST ignore).
    assert evaluate("items=" + many, 10**6) is FULL


def test_ranges_adding_up_to_more_than_the_representation_are_refused() -> None:
    # The "Apache Killer" shape: overlapping ranges asking for more than the file (§15.5.17).
    assert evaluate("bytes=0-99,0-99", 150) is EXCESSIVE
    assert evaluate("bytes=0-,0-", 10_000) is EXCESSIVE
    assert evaluate("bytes=0-0,-1", 1) is EXCESSIVE
    # Exactly the length is still fine.
    assert evaluate("bytes=0-49,-50", 100) == Satisfiable(((0, 99),))


def test_distant_ranges_are_separate_parts_in_request_order() -> None:
    decision = evaluate("bytes=5000-5099,0-99,9000-", 10_000)
    assert decision == Satisfiable(((5000, 5099), (0, 99), (9000, 9999)))


def test_coalesced_part_takes_the_position_of_its_earliest_spec() -> None:
    # 9000- and 8950-8999 merge; the merged part comes where 8950-8999 (second) was asked.
    decision = evaluate("bytes=0-9,8950-8999,500-599,9000-", 10_000)
    assert decision == Satisfiable(((0, 9), (8950, 9999), (500, 599)))


def test_coalesce_gap_boundary() -> None:
    # A gap of exactly COALESCE_GAP bytes is merged; one more byte keeps two parts.
    merged = evaluate(f"bytes=0-9,{10 + COALESCE_GAP}-{19 + COALESCE_GAP}", 10_000)
    assert merged == Satisfiable(((0, 19 + COALESCE_GAP),))
    apart = evaluate(f"bytes=0-9,{11 + COALESCE_GAP}-{20 + COALESCE_GAP}", 10_000)
    assert apart == Satisfiable(((0, 9), (11 + COALESCE_GAP, 20 + COALESCE_GAP)))


# -- the Open Connect path form /c/{id}/range/{first}-{last} --------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0-0", (0, 0)),
        ("0-499", (0, 499)),
        ("500-999", (500, 999)),
        ("007-010", (7, 10)),
        ("9" * 19 + "-" + "9" * 19, (int("9" * 19), int("9" * 19))),
    ],
)
def test_parse_path_range(text: str, expected: tuple[int, int]) -> None:
    assert parse_path_range(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-",
        "5-",
        "-5",
        "10-5",
        "a-b",
        "1-2-3",
        " 1-2",
        "1 -2",
        "+1-2",
        "1-" + "9" * 20,
        "1_0-20",
    ],
)
def test_parse_path_range_rejects(text: str) -> None:
    assert parse_path_range(text) is None


# -- properties --------------------------------------------------------------------------------

Spec = tuple[int | None, int | None]


@st.composite
def range_headers(draw: st.DrawFn) -> tuple[int, list[Spec], str]:
    """(length, specs, header): well-formed specs of all three kinds, written loosely."""
    length = draw(st.integers(0, 10**6))
    position = st.one_of(
        st.integers(0, length + 200),
        st.integers(max(0, length - 200), length + 200),
        st.integers(0, 10**19 - 1 - 300),  # 19 digits at most, even plus a short length
    )
    short = st.tuples(position, st.integers(0, 300)).map(lambda p: (p[0], p[0] + p[1]))
    spec = st.one_of(
        # first-last, short: several of them make multipart answers, so weigh them more
        short,
        short,
        st.tuples(position, position).map(lambda p: (min(p), max(p))),  # first-last
        st.tuples(position, st.none()),  # first-
        st.tuples(st.none(), st.integers(0, 300) | position),  # -suffix
    )
    count = draw(st.integers(1, 8) | st.integers(DEFAULT_MAX_RANGES - 1, DEFAULT_MAX_RANGES + 3))
    specs: list[Spec] = draw(st.lists(spec, min_size=count, max_size=count))
    unit = draw(st.sampled_from(["bytes", "BYTES", "Bytes"]))
    ows = st.sampled_from(["", " ", "\t", "  "])
    parts = []
    for first, last in specs:
        text = f"{'' if first is None else first}-{'' if last is None else last}"
        if draw(st.booleans()):
            parts.append("")  # an empty list element
        parts.append(draw(ows) + text + draw(ows))
    return length, specs, f"{unit}={','.join(parts)}"


def _satisfiable(specs: list[Spec], length: int) -> list[tuple[int, int]]:
    """The satisfiable specs resolved to inclusive positions, straight from §14.1.1/§14.1.2."""
    out = []
    for first, last in specs:
        if first is None:
            assert last is not None
            if last > 0 and length > 0:
                out.append((max(0, length - last), length - 1))
        elif first < length:
            out.append((first, length - 1 if last is None else min(last, length - 1)))
    return out


def _union(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for first, last in sorted(intervals):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return [(a, b) for a, b in merged]


def _check_parts(parts: tuple[tuple[int, int], ...], length: int) -> None:
    assert parts
    for first, last in parts:
        assert 0 <= first <= last <= length - 1
    ordered = sorted(parts)
    for (_, last), (first, _) in itertools.pairwise(ordered):
        # Neither overlapping nor within COALESCE_GAP of each other (those would be merged).
        assert first - last - 1 > COALESCE_GAP


def _render(specs: list[Spec]) -> str:
    return "bytes=" + ",".join(
        f"{'' if first is None else first}-{'' if last is None else last}" for first, last in specs
    )


@given(range_headers())
def test_any_well_formed_header_follows_rfc_9110(case: tuple[int, list[Spec], str]) -> None:
    _check_against_rfc(*case)


@given(
    st.integers(10_000, 10**6).flatmap(
        lambda length: st.tuples(
            st.just(length),
            st.lists(
                st.tuples(st.integers(0, length + 100), st.integers(0, 300)).map(
                    lambda p: (p[0], p[0] + p[1])
                ),
                min_size=2,
                max_size=8,
            ),
        )
    )
)
def test_many_short_ranges_follow_rfc_9110(case: tuple[int, list[Spec]]) -> None:
    length, specs = case
    _check_against_rfc(length, specs, _render(specs))


def _check_against_rfc(length: int, specs: list[Spec], header: str) -> None:
    decision = evaluate(header, length)
    wanted = _satisfiable(specs, length)
    if len(specs) > DEFAULT_MAX_RANGES:
        assert decision is EXCESSIVE
    elif not wanted:
        assert decision is UNSATISFIABLE
    elif sum(last - first + 1 for first, last in wanted) > length:
        assert decision is EXCESSIVE
    else:
        assert isinstance(decision, Satisfiable)
        _check_parts(decision.ranges, length)
        requested = _union(wanted)
        sent = _union(list(decision.ranges))
        # Every requested byte is sent...
        for first, last in requested:
            assert any(a <= first and last <= b for a, b in sent)
        # ...and every byte sent that was not requested fills a gap of at most COALESCE_GAP
        # between two requested ranges inside one part.
        for a, b in sent:
            inside = [r for r in requested if a <= r[0] and r[1] <= b]
            assert inside[0][0] == a
            assert inside[-1][1] == b
            for (_, last), (first, _) in itertools.pairwise(inside):
                assert first - last - 1 <= COALESCE_GAP


@given(st.integers(0, 10**6), st.text(max_size=80))
def test_any_text_gives_a_valid_decision(length: int, header: str) -> None:
    decision = evaluate(header, length)
    if isinstance(decision, Satisfiable):
        _check_parts(decision.ranges, length)
        assert sum(last - first + 1 for first, last in decision.ranges) <= length
    else:
        assert decision in (FULL, UNSATISFIABLE, EXCESSIVE)
    if not header[:6].lower().startswith("bytes="):
        assert decision is FULL


@given(st.integers(0, 10**6), st.text(alphabet="0123456789-, \t", max_size=40))
def test_any_range_like_text_gives_a_valid_decision(length: int, tail: str) -> None:
    decision = evaluate("bytes=" + tail, length)
    if isinstance(decision, Satisfiable):
        _check_parts(decision.ranges, length)
    else:
        assert decision in (FULL, UNSATISFIABLE, EXCESSIVE)


@given(st.integers(0, 10**12), st.integers(0, 10**12))
def test_path_range_round_trip(a: int, b: int) -> None:
    first, last = min(a, b), max(a, b)
    assert parse_path_range(f"{first}-{last}") == (first, last)
    if first != last:
        assert parse_path_range(f"{last}-{first}") is None


def test_the_dash_count_shortcut_agrees_with_parsing() -> None:
    """A header with more dashes than max_ranges is refused without being parsed; empty list
    elements (allowed by RFC 9110 §5.6.1) and suffix specs count as they should."""
    ok = "bytes=0-0,,, 10-10 ,-5"  # 3 specs, 3 dashes
    assert isinstance(evaluate(ok, 1000, max_ranges=3), Satisfiable)
    assert evaluate(ok + ",20-20", 1000, max_ranges=3) is EXCESSIVE
    hostile = "bytes=" + ",".join(f"{i}-{i + 100}" for i in range(1100))
    assert evaluate(hostile, 1 << 25, max_ranges=16) is EXCESSIVE
