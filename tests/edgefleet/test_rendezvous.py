"""Rendezvous scores (edgefleet/rendezvous.py): the planner's numpy scores and the scalar
scores steering uses per request are equal (==) for every file, appliance and weight."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edgefleet.rendezvous import (
    appliance_seed,
    content_hash,
    hrw_score,
    hrw_scores,
    portable_ln,
    portable_ln_array,
)
from steering.ranking import hrw_score as steering_score

ids = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=40
)


@given(st.lists(ids, min_size=1, max_size=50), ids, st.floats(min_value=0.01, max_value=100.0))
@settings(max_examples=200)
def test_planner_scores_are_identical_scalar_and_vectorised(
    contents: list[str], name: str, w: float
) -> None:
    seed = appliance_seed(name)
    bases = [content_hash(c) for c in contents]
    vector = hrw_scores(np.array(bases, dtype=np.uint64), seed, w)
    for b, v in zip(bases, vector.tolist(), strict=True):
        scalar = hrw_score(b, seed, w)
        assert scalar == v
        assert scalar > 0


@given(
    st.lists(ids, min_size=1, max_size=20),
    st.lists(st.tuples(ids, st.floats(min_value=0.01, max_value=100.0)), min_size=2, max_size=12),
)
@settings(max_examples=200)
def test_planner_and_steering_scores_are_identical(
    contents: list[str], appliances: list[tuple[str, float]]
) -> None:
    """The planner's numpy scores and steering's per-request scores are the same floats, so
    both put a file's appliances in the same order, ties included (what placement and
    steering must agree on)."""
    seeds = [(appliance_seed(n), w) for n, w in appliances]
    bases = np.array([content_hash(c) for c in contents], dtype=np.uint64)
    planner = np.stack([hrw_scores(bases, s, w) for s, w in seeds]).T.tolist()
    for c, row in zip(contents, planner, strict=True):
        steering = [steering_score(c.encode(), s, w) for s, w in seeds]
        assert steering == row
        order = sorted(range(len(seeds)), key=lambda j: (-row[j], j))
        assert order == sorted(range(len(seeds)), key=lambda j: (-steering[j], j))


@given(
    st.lists(st.integers(min_value=0, max_value=2**64 - 1), min_size=1, max_size=50),
    st.integers(min_value=0, max_value=2**64 - 1),
    st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False),
)
@settings(max_examples=300)
def test_scalar_and_vectorised_scores_are_identical_for_any_hash_and_weight(
    bases: list[int], seed: int, w: float
) -> None:
    vector = hrw_scores(np.array(bases, dtype=np.uint64), seed, w).tolist()
    assert [hrw_score(b, seed, w) for b in bases] == vector


def test_portable_ln_is_accurate_and_vectorises_exactly() -> None:
    rng = np.random.default_rng(5)
    h = np.concatenate([rng.random(100_000), [2.0**-53, 0.5, 1 - 2.0**-53, 0.7071067811865476]])
    scalar = np.array([portable_ln(x) for x in h.tolist()])
    assert np.array_equal(portable_ln_array(h), scalar)
    exact = np.array([math.log(x) for x in h.tolist()])
    assert np.max(np.abs(scalar - exact) / np.abs(exact)) < 1e-11


def test_weight_scales_the_score_and_shares_follow_weights() -> None:
    bases = np.array([content_hash(f"f{i}.mp4") for i in range(60_000)], dtype=np.uint64)
    assert hrw_score(123, 7, 2.0) == 2 * hrw_score(123, 7, 1.0)
    weights = [1.0, 2.0, 3.0]
    scores = np.stack(
        [hrw_scores(bases, appliance_seed(f"a{j}"), w) for j, w in enumerate(weights)]
    )
    shares = np.bincount(scores.argmax(axis=0), minlength=3) / len(bases)
    for share, w in zip(shares, weights, strict=True):
        assert abs(share - w / sum(weights)) < 0.01
