"""Property tests: any smooth or noisy chunk in [-1, 1] round-trips within the rounding bound."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from action_tokenizer import FastTokenizer, binarize_gripper, rounding_error_bound
from action_tokenizer.dct import dct_matrix, quantize
from action_tokenizer.synthetic import calvin_like_chunks

T, D, SCALE = 10, 7, 25.0
BOUND = rounding_error_bound(T, D, SCALE)


def extreme_chunks() -> np.ndarray:
    """For each frequency k, the chunks +-sign(C[k]) that maximise |coefficient k| over [-1, 1]^T.

    Adding them to the fit data makes the fitted coefficient range the full range any chunk in
    [-1, 1] can produce, so no property example below gets clamped at encode.
    """
    signs = np.sign(dct_matrix(T))
    signs[signs == 0] = 1
    chunks = np.repeat(signs[:, :, None], D, axis=2)
    return np.concatenate([chunks, -chunks])


@pytest.fixture(scope="module")
def tok() -> FastTokenizer:
    # Native mode only: the reference format cannot promise this (see test_fast_reference.py,
    # test_reference_alphabet_loses_unseen_bytes).
    fit = np.concatenate([calvin_like_chunks(30, stride=2, seed=0), extreme_chunks()])
    return FastTokenizer.fit(fit, scale=SCALE, normalizer=None)


@st.composite
def gripper_tracks(draw) -> np.ndarray:
    start = draw(st.sampled_from([-1.0, 1.0]))
    switch = draw(st.integers(0, T))  # T: no switch inside the chunk
    track = np.full(T, start)
    track[switch:] *= -1
    return track


@st.composite
def smooth_chunks(draw) -> np.ndarray:
    """Each continuous dim: a few low-frequency cosines (under 1.5 cycles per chunk), clipped to [-1, 1]."""
    k = draw(st.integers(1, 3))
    params = draw(hnp.arrays(np.float64, (D - 1, k, 3), elements=st.floats(0.0, 1.0)))
    t = np.arange(T)[None, :, None]
    amp, freq, phase = params[..., 0][:, None], 1.5 * params[..., 1][:, None] / T, 2 * np.pi * params[..., 2][:, None]
    offset = draw(st.floats(-0.5, 0.5))
    cont = np.clip(offset + (amp * np.cos(2 * np.pi * freq * t + phase)).sum(axis=2), -1, 1)
    return np.concatenate([cont.T, draw(gripper_tracks())[:, None]], axis=1)


@st.composite
def noisy_chunks(draw) -> np.ndarray:
    """White noise anywhere in [-1, 1]: the worst case for compression, not for correctness."""
    cont = draw(hnp.arrays(np.float64, (T, D - 1), elements=st.floats(-1.0, 1.0, allow_subnormal=False)))
    return np.concatenate([cont, draw(gripper_tracks())[:, None]], axis=1)


def check_round_trip(tok: FastTokenizer, chunks: np.ndarray) -> None:
    ids = tok.encode(chunks)
    assert all(0 <= i < tok.vocab_size for x in ids for i in x)
    out = tok.decode(ids, strict=True)
    np.testing.assert_array_equal(out.coefficients, quantize(chunks, SCALE))  # BPE is lossless
    err = out.actions - chunks
    assert np.sqrt(np.mean(err**2, axis=(1, 2))).max() <= BOUND.rmse + 1e-12
    assert np.abs(err).max() <= BOUND.per_value + 1e-12
    assert np.all(out.actions >= -1) and np.all(out.actions <= 1)
    np.testing.assert_array_equal(binarize_gripper(out.actions)[..., 6], chunks[..., 6])


@settings(max_examples=80, deadline=None)
@given(chunks=st.lists(smooth_chunks(), min_size=1, max_size=6))
def test_smooth_chunks_round_trip_within_the_bound(tok, chunks):
    check_round_trip(tok, np.stack(chunks))


@settings(max_examples=80, deadline=None)
@given(chunks=st.lists(noisy_chunks(), min_size=1, max_size=6))
def test_noisy_chunks_round_trip_within_the_bound(tok, chunks):
    check_round_trip(tok, np.stack(chunks))


@settings(max_examples=40, deadline=None)
@given(coeffs=hnp.arrays(np.int64, (3, T, D), elements=st.integers(-20, 20)))
def test_any_in_range_integer_coefficients_round_trip_exactly(tok, coeffs):
    low, high = tok._ranges(T, D)
    coeffs = np.clip(coeffs, low, high)
    decoded, issues, _ = tok.decode_coefficients(tok.encode_coefficients(coeffs))
    np.testing.assert_array_equal(decoded, coeffs)
    assert not any(v.any() for v in issues.values())
