"""Malformed token streams: relaxed decoding never raises, stays finite and in range, and flags them."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from action_tokenizer import (
    NEUTRAL_GRIPPER,
    BinningTokenizer,
    FastTokenizer,
    MalformedTokensError,
    binarize_gripper,
)
from action_tokenizer.synthetic import calvin_like_chunks

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CM_UNITS = np.array([0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0])  # CALVIN-like units, gripper -1/+1


@pytest.fixture(scope="module", params=["native", "reference"])
def setup(request):
    chunks = calvin_like_chunks(40, stride=2, seed=0) * CM_UNITS
    tok = FastTokenizer.fit(chunks, scale=25, mode=request.param)
    held_out = calvin_like_chunks(6, stride=10, seed=9) * CM_UNITS
    return tok, held_out, tok.encode(held_out)


def fitted_action_range(tok: FastTokenizer) -> tuple[np.ndarray, np.ndarray]:
    """The box every decoded action must lie in: the fitted value range mapped back to action units."""
    return tok.normalizer.inverse(tok.config.value_low), tok.normalizer.inverse(tok.config.value_high)


def check_safe(tok: FastTokenizer, actions: np.ndarray) -> None:
    low, high = fitted_action_range(tok)
    assert np.all(np.isfinite(actions))
    assert np.all(actions >= low - 1e-12) and np.all(actions <= high + 1e-12)
    grip = binarize_gripper(actions)[..., 6]
    assert set(np.unique(grip)) <= {-1.0, 1.0}


@SETTINGS
@given(data=st.data())
def test_truncated_streams_are_flagged_and_safe(setup, data):
    tok, _, ids = setup
    i = data.draw(st.integers(0, len(ids) - 1))
    cut = data.draw(st.integers(0, len(ids[i]) - 1))
    out = tok.decode([ids[i][:cut]])
    check_safe(tok, out.actions)
    assert out.malformed[0]
    assert out.issues["too_short"][0] or out.issues["empty"][0] or out.issues["invalid_bytes"][0]


@SETTINGS
@given(data=st.data())
def test_extended_streams_are_flagged_and_safe(setup, data):
    tok, _, ids = setup
    i = data.draw(st.integers(0, len(ids) - 1))
    extra = data.draw(st.lists(st.integers(0, tok.bpe.get_vocab_size() - 1), min_size=1, max_size=20))
    out = tok.decode([ids[i] + extra])
    check_safe(tok, out.actions)
    assert out.malformed[0]
    assert out.issues["too_long"][0] or out.issues["invalid_bytes"][0]
    # the extra tokens come after the chunk's own coefficients, so a well-formed prefix survives
    if not out.issues["invalid_bytes"][0]:
        np.testing.assert_array_equal(out.coefficients, tok.decode([ids[i]]).coefficients)


@SETTINGS
@given(data=st.data())
def test_one_replaced_id_decodes_safely_and_is_flagged_unless_it_is_a_valid_chunk(setup, data):
    tok, _, ids = setup
    i = data.draw(st.integers(0, len(ids) - 1))
    j = data.draw(st.integers(0, len(ids[i]) - 1))
    new = data.draw(st.integers(-3, tok.vocab_size + 3))
    stream = list(ids[i])
    stream[j] = new
    out = tok.decode([stream])
    check_safe(tok, out.actions)
    if not out.malformed[0]:
        # then the stream is a perfectly valid encoding of some in-range chunk
        coeffs, _, counts = tok.decode_coefficients([stream])
        assert counts[0] == 70
        assert np.all(coeffs >= tok._ranges(10, 7)[0]) and np.all(coeffs <= tok._ranges(10, 7)[1])
    if not 0 <= new < tok.bpe.get_vocab_size():
        assert out.issues["unknown_id"][0]


def test_replacing_an_id_with_one_of_another_length_is_always_flagged(setup):
    tok, _, ids = setup
    vocab = tok.bpe.get_vocab()
    byte_len = {i: len(t) for t, i in vocab.items()}  # byte-level symbols: one per byte
    longest = max(byte_len, key=byte_len.get)
    stream = list(ids[0])
    j = next(k for k, t in enumerate(stream) if byte_len[t] != byte_len[longest])
    stream[j] = longest
    out = tok.decode([stream])
    assert out.malformed[0]
    check_safe(tok, out.actions)


def test_streams_of_only_unknown_ids_or_nothing_decode_to_the_neutral_chunk(setup):
    tok, _, _ = setup
    out = tok.decode([[], [tok.vocab_size, -1, 10**6]])
    check_safe(tok, out.actions)
    assert out.issues["empty"].all() and out.issues["unknown_id"].tolist() == [False, True]
    np.testing.assert_array_equal(out.actions[..., 6], NEUTRAL_GRIPPER)  # a valid gripper, not 0
    centre = (tok.normalizer.low + tok.normalizer.high) / 2
    np.testing.assert_allclose(out.actions[..., :6], np.broadcast_to(centre[:6], (2, 10, 6)), atol=1e-12)
    assert out.counts() == {
        "chunks": 2,
        "malformed": 2,
        "empty": 2,
        "too_short": 0,
        "too_long": 0,
        "unknown_id": 1,
        "invalid_bytes": 0,
        "out_of_range": 0,
    }


def test_a_short_stream_keeps_its_dc_terms(setup):
    """Frequency-major order puts the chunk means first; losing the tail must not lose them."""
    tok, _, ids = setup
    full = tok.decode([ids[0]])
    for cut in range(1, len(ids[0])):
        out = tok.decode([ids[0][:cut]])
        if out.num_decoded[0] >= 7 and not out.issues["invalid_bytes"][0]:
            np.testing.assert_array_equal(out.coefficients[0, 0], full.coefficients[0, 0])
            np.testing.assert_allclose(out.actions.mean(axis=1), full.actions.mean(axis=1), atol=1e-9)
            return
    pytest.fail("no truncation kept all DC terms")


def test_every_single_id_replacement_decodes_safely(setup):
    """Exhaustive: each position of a stream replaced by each vocabulary id (and two unknown ids).

    The reference decodes some such swaps to coefficients in the thousands; here every result is
    finite and inside the fitted range, and the swaps that produce impossible coefficients are flagged.
    """
    tok, _, ids = setup
    stream = ids[0]
    candidates = [*range(tok.bpe.get_vocab_size()), -1, tok.vocab_size]
    batch = [[*stream[:j], new, *stream[j + 1 :]] for j in range(len(stream)) for new in candidates]
    out = tok.decode(batch)
    check_safe(tok, out.actions)
    low, high = tok._ranges(10, 7)
    assert np.all(out.coefficients >= low) and np.all(out.coefficients <= high)
    if tok.mode == "native":  # per-(frequency, dim) ranges; reference mode clamps to [min_token, max_token]
        assert out.issues["out_of_range"].any()
    assert out.issues["unknown_id"].sum() == 2 * len(stream)
    # an unflagged result is a valid stream: it re-encodes to exactly the coefficients it decoded to
    fine = np.flatnonzero(~out.malformed)
    again, _, _ = tok.decode_coefficients(tok.encode_coefficients(out.coefficients[fine]))
    np.testing.assert_array_equal(again, out.coefficients[fine])


def test_batches_mix_good_and_bad_streams_and_count_them(setup):
    tok, _, ids = setup
    batch = [ids[0], ids[1][:2], ids[2] + ids[2], [], ids[3]]
    out = tok.decode(batch)
    assert out.malformed.tolist() == [False, True, True, True, False]
    assert out.num_malformed == 3
    counts = out.counts()
    assert counts["chunks"] == 5 and counts["malformed"] == 3 and counts["empty"] == 1
    np.testing.assert_array_equal(out.actions[[0, 4]], tok.decode([ids[0], ids[3]]).actions)


def test_strict_mode_raises_with_the_chunk_and_the_problem(setup):
    tok, _, ids = setup
    tok.decode(ids, strict=True)  # well-formed streams pass
    with pytest.raises(MalformedTokensError, match=r"1 of 2 token streams are malformed: chunk 1: .*too_short"):
        tok.decode([ids[0], ids[1][:1]], strict=True)


def test_decode_accepts_arrays_and_tensors(setup):
    import torch

    tok, _, ids = setup
    same = [ids[0], ids[0]]
    as_array = np.array(same)
    ref = tok.decode(same).actions
    np.testing.assert_array_equal(tok.decode(as_array).actions, ref)
    np.testing.assert_array_equal(tok.decode(torch.as_tensor(as_array)).actions, ref)
    np.testing.assert_array_equal(tok.decode([np.asarray(ids[0]), torch.as_tensor(ids[0]).numpy()]).actions, ref)


@SETTINGS
@given(data=st.data())
def test_binning_malformed_streams_are_flagged_and_safe(data):
    chunks = calvin_like_chunks(4, seed=1) * CM_UNITS
    tok = BinningTokenizer.fit(chunks, n_bins=64)
    ids = tok.encode(chunks[:3])
    i = data.draw(st.integers(0, 2))
    kind = data.draw(st.sampled_from(["cut", "extend", "replace"]))
    stream = list(ids[i])
    if kind == "cut":
        stream = stream[: data.draw(st.integers(0, 69))]
    elif kind == "extend":
        stream += data.draw(st.lists(st.integers(0, 63), min_size=1, max_size=5))
    else:
        stream[data.draw(st.integers(0, 69))] = data.draw(st.sampled_from([-1, 64, 10**5]))
    out = tok.decode([stream])
    assert out.malformed[0]
    assert np.all(np.isfinite(out.actions))
    low, high = tok.normalizer.inverse(np.full(7, -1.0)), tok.normalizer.inverse(np.full(7, 1.0))
    assert np.all(out.actions >= low) and np.all(out.actions <= high)
    assert set(np.unique(binarize_gripper(out.actions)[..., 6])) <= {-1.0, 1.0}
