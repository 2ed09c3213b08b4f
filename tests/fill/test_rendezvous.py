"""Rendezvous scores: planner (numpy and scalar) and steering agree bit for bit."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fill.rendezvous import (
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
def test_fill_and_steering_scores_are_identical(contents: list[str], name: str, w: float) -> None:
    seed = appliance_seed(name)
    bases = [content_hash(c) for c in contents]
    vector = hrw_scores(np.array(bases, dtype=np.uint64), seed, w)
    for c, b, v in zip(contents, bases, vector.tolist(), strict=True):
        scalar = hrw_score(b, seed, w)
        assert scalar == v
        assert steering_score(c.encode(), seed, w) == scalar
        assert scalar > 0


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
