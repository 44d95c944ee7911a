"""FAST says when it lost information: encode reports clamped chunks, decode marks saturated ones.

A chunk beyond the range fitted at encode still turns into a well-formed stream, so nothing but
``encode_with_report`` can tell it from an ordinary one. Out-of-range chunks here are built so that
the ground truth is known: values far outside the fitted data, and gripper shapes no fit chunk has
(closed for just two steps, toggling every step), which at scale 50 put a high-frequency
coefficient of the gripper outside its fitted range. The public processor keeps those; native mode
clamps them, which is what the report must say.
"""

import numpy as np
import pytest

from action_tokenizer import (
    ISSUE_KINDS,
    BinningTokenizer,
    DecodeResult,
    EncodeResult,
    FastTokenizer,
    rounding_error_bound,
)
from action_tokenizer.dct import quantize
from action_tokenizer.synthetic import calvin_like_chunks

T, D, SCALE = 10, 7, 50.0
ROUNDING = rounding_error_bound(T, D, SCALE).per_value
CM_UNITS = np.array([0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0])  # CALVIN-like units, gripper -1/+1
PULSE = np.array([1, 1, 1, 1, -1, -1, 1, 1, 1, 1.0])  # gripper closed for two steps only
CHATTER = np.tile([1.0, -1.0], T // 2)  # gripper toggling every step


def with_gripper(chunks: np.ndarray, track: np.ndarray) -> np.ndarray:
    out = chunks.copy()
    out[..., 6] = track
    return out


@pytest.fixture(scope="module")
def raw_fit() -> np.ndarray:
    return calvin_like_chunks(40, stride=2, seed=0)


@pytest.fixture(scope="module")
def tok(raw_fit) -> FastTokenizer:
    """No normaliser: the out-of-range values reach the tokenizer unclipped, in data units."""
    return FastTokenizer.fit(raw_fit, scale=SCALE, normalizer=None)


@pytest.fixture(scope="module")
def batch(raw_fit) -> tuple[np.ndarray, np.ndarray]:
    """Fit chunks (in range by construction) interleaved with out-of-range ones; returns (chunks, is_out)."""
    inside = raw_fit[::97][:8]
    far = inside[:3] * 4.0  # every continuous dim far beyond anything fitted
    far[..., 6] = inside[:3, :, 6]
    pulse = with_gripper(inside[3:5], PULSE)
    chatter = with_gripper(inside[5:7], CHATTER)
    chunks = np.concatenate([inside[:4], far, inside[4:], pulse, chatter])
    is_out = np.array([False] * 4 + [True] * 3 + [False] * 4 + [True] * 4)
    return chunks, is_out


def normalised_error(tok: FastTokenizer | BinningTokenizer, decoded: np.ndarray, chunks: np.ndarray) -> np.ndarray:
    """Per chunk, the largest |decoded - input| of any value, in normalised units."""
    if tok.normalizer is not None:
        # decoded values lie inside [-1, 1], where transform inverts inverse exactly
        decoded, chunks = tok.normalizer.transform(decoded), tok.normalizer.transform(chunks)
    return np.abs(decoded - chunks).max(axis=(1, 2))


def test_the_report_flags_exactly_the_out_of_range_chunks(tok, batch):
    chunks, is_out = batch
    report = tok.encode_with_report(chunks)
    assert isinstance(report, EncodeResult)
    assert report.ids == tok.encode(chunks)  # the ids callers get are unchanged
    assert report.clamped.tolist() == is_out.tolist()
    assert report.num_clamped_chunks == is_out.sum()
    assert np.all(report.num_clamped[is_out] > 0) and np.all(report.num_clamped[~is_out] == 0)
    assert np.all(report.max_clamp_steps[is_out] >= 1) and np.all(report.max_clamp_steps[~is_out] == 0)
    # the gripper shapes stay within [-1, 1]: only their coefficients are out of range, no value is
    gripper_only = np.flatnonzero(is_out)[-4:]
    assert np.all(report.num_clipped_values[gripper_only] == 0)
    assert np.all(report.num_clipped_values[~is_out] == 0)
    assert report.counts() == {
        "chunks": len(chunks),
        "clamped_chunks": int(is_out.sum()),
        "clamped": int(report.num_clamped.sum()),
        "clipped_values": int(report.num_clipped_values.sum()),
    }


def test_clamp_count_and_distance_match_the_fitted_range(tok, batch):
    """Independent of the implementation: unclamped coefficients against the fitted table."""
    chunks, _ = batch
    report = tok.encode_with_report(chunks)
    exact = quantize(chunks, SCALE)
    low, high = tok.config.coefficient_low, tok.config.coefficient_high
    distance = np.maximum(np.maximum(low - exact, exact - high), 0)
    np.testing.assert_array_equal(report.num_clamped, np.count_nonzero(distance, axis=(1, 2)))
    np.testing.assert_array_equal(report.max_clamp_steps, distance.max(axis=(1, 2)))


def test_in_range_chunks_stay_within_the_rounding_bound_and_clamped_ones_within_the_reported_bound(tok, batch):
    chunks, is_out = batch
    report = tok.encode_with_report(chunks)
    out = tok.decode(report.ids, strict=True)  # a clamped chunk is still a well-formed stream
    err = normalised_error(tok, out.actions, chunks)
    assert report.rounding_bound == pytest.approx(ROUNDING)
    np.testing.assert_allclose(report.error_bound[~is_out], ROUNDING)
    assert np.all(err[~is_out] <= ROUNDING + 1e-12)
    # the clamped chunks lost more than rounding, and the reported bound explains all of it
    assert np.all(err[is_out] > ROUNDING)
    assert np.all(err[is_out] <= report.error_bound[is_out] + 1e-12)
    assert np.all(err[is_out] >= 0.5 * report.error_bound[is_out])  # and is not vacuous


def test_decode_marks_the_clamped_chunks_as_saturated_but_not_malformed(tok, batch):
    chunks, is_out = batch
    out = tok.decode(tok.encode(chunks))
    assert isinstance(out, DecodeResult)
    assert out.saturated.tolist() == is_out.tolist()
    assert out.num_saturated == is_out.sum()
    assert not out.malformed.any() and out.num_malformed == 0
    assert set(out.issues) == set(ISSUE_KINDS) and "saturated" not in out.counts()
    assert out.counts()["malformed"] == 0
    low, high = tok.config.coefficient_low, tok.config.coefficient_high
    on_edge = ((out.coefficients == low) | (out.coefficients == high)).any(axis=(1, 2))
    assert on_edge.tolist() == is_out.tolist()


def test_held_out_gripper_shapes_in_calvin_units_are_reported_in_action_units():
    """The issue's case: with a fitted normaliser, at scale 50, a held-out gripper comes back ~0.15 off."""
    fit = calvin_like_chunks(40, stride=2, seed=0) * CM_UNITS
    tok = FastTokenizer.fit(fit, scale=SCALE)
    held_out = calvin_like_chunks(8, stride=5, seed=9) * CM_UNITS
    odd = np.concatenate([with_gripper(held_out[:3], PULSE), with_gripper(held_out[3:6], CHATTER)])
    chunks = np.concatenate([held_out, odd])
    is_out = np.arange(len(chunks)) >= len(held_out)
    report = tok.encode_with_report(chunks)
    out = tok.decode(report.ids)
    assert report.clamped.tolist() == is_out.tolist()
    assert out.saturated.tolist() == is_out.tolist()
    gripper_err = np.abs(out.actions - chunks)[..., 6].max(axis=1)  # a pass-through dim: action units
    assert np.all(gripper_err[~is_out] <= ROUNDING + 1e-12)
    assert np.all(gripper_err[is_out] > 0.1) and np.all(gripper_err[is_out] <= report.error_bound[is_out] + 1e-12)
    err = normalised_error(tok, out.actions, chunks)
    assert np.all(err <= report.error_bound + 1e-12)


def test_the_reference_format_keeps_the_gripper_and_its_report_says_so(raw_fit, batch):
    """Reference mode does not clamp to a per-coefficient range: the gripper shapes survive, unflagged.

    Its far-out values are still lost (dropped coefficients, clipped values) and reported, and its
    decode marks nothing saturated (its range edges are ordinary coefficients)."""
    chunks, is_out = batch
    tok = FastTokenizer.fit(raw_fit, scale=SCALE, normalizer=None, mode="reference")
    report = tok.encode_with_report(chunks)
    assert report.ids == tok.encode(chunks)
    far = np.arange(len(chunks)) < 0
    far[4:7] = True
    assert report.clamped.tolist() == far.tolist()
    out = tok.decode(report.ids)
    assert not out.saturated.any()
    err = normalised_error(tok, out.actions, chunks)
    assert np.all(err[~far] <= ROUNDING + 1e-12)
    np.testing.assert_allclose(report.error_bound[~far], ROUNDING)
    assert np.all(err[far] > ROUNDING) and np.all(err[far] <= report.error_bound[far] + 1e-12)
    assert is_out[~far].any()  # the gripper shapes native mode clamps are among the unflagged here


def test_a_stream_naming_a_bound_is_saturated_and_filled_coefficients_never_are():
    """Fit on a gripper that is always closed: the neutral (open) gripper's DC term lies outside the
    fitted range, so the neutral fill of a short stream is clamped onto the bound. Only coefficients
    read from the stream may mark a chunk."""
    fit = calvin_like_chunks(20, stride=3, seed=4)
    fit[..., 6] = -1.0
    tok = FastTokenizer.fit(fit, scale=SCALE, normalizer=None)
    low, high = tok.config.coefficient_low, tok.config.coefficient_high
    assert tok._neutral_coefficients(T, D)[0, 6] == high[0, 6]  # the premise: the fill sits on the bound
    ids = tok.encode(fit[:3])
    out = tok.decode([ids[0], ids[1][:1], []])
    assert out.issues["too_short"][1] and out.issues["empty"][2]
    assert out.saturated.tolist() == [False, False, False]
    # a well-formed stream naming a bound coefficient: saturated, not malformed, strict does not raise
    coeffs = tok.quantize(fit[:2])
    coeffs[0, T - 1, 2] = low[T - 1, 2]
    coeffs[1, 0, 6] = high[0, 6]
    named = tok.decode(tok.encode_coefficients(coeffs), strict=True)
    assert named.saturated.tolist() == [True, True] and not named.malformed.any()


def test_a_corrupted_stream_with_out_of_range_coefficients_is_both_malformed_and_saturated(tok, batch):
    chunks, _ = batch
    coeffs = tok.quantize(chunks[:1])
    coeffs[0, T - 1, 0] = tok.config.coefficient_high[T - 1, 0] + 50  # what no encode produces
    out = tok.decode(tok.encode_coefficients(coeffs))
    assert out.issues["out_of_range"][0] and out.malformed[0] and out.saturated[0]


def test_binning_reports_saturated_bins_alike():
    """The baseline saturates at its outer bins: same report, same decode flag (gripper dims excluded)."""
    fit = calvin_like_chunks(10, stride=5, seed=3) * 0.5
    tok = BinningTokenizer.fit(fit, n_bins=64, normalizer=None)
    inside = fit[:4]
    far = fit[4:6] * 6.0  # continuous dims beyond [-1, 1]
    far[..., 6] = fit[4:6, :, 6]
    grip = fit[6:8].copy()
    grip[..., 6] *= 4.0  # the gripper beyond [-1, 1]: clamped, but its edge bins are its normal place
    chunks = np.concatenate([inside, far, grip])
    is_out = np.array([False] * 4 + [True] * 4)
    report = tok.encode_with_report(chunks)
    assert report.ids == tok.encode(chunks)
    assert report.clamped.tolist() == is_out.tolist()
    beyond = np.maximum(np.abs(chunks) - 1.0, 0.0)
    np.testing.assert_array_equal(report.num_clamped, np.count_nonzero(beyond, axis=(1, 2)))
    np.testing.assert_allclose(report.max_clamp_steps, beyond.max(axis=(1, 2)) * 64 / 2)
    out = tok.decode(report.ids, strict=True)
    err = normalised_error(tok, out.actions, chunks)
    assert np.all(err[~is_out] <= report.rounding_bound + 1e-12) and report.rounding_bound == 1 / 64
    assert np.all(err[is_out] > report.rounding_bound) and np.all(err <= report.error_bound + 1e-12)
    assert out.saturated.tolist() == [False] * 4 + [True, True, False, False]
    assert not out.malformed.any()


@pytest.mark.parametrize("kind", ["fast", "binning"])
def test_both_tokenizers_report_nothing_for_their_own_fit_data(raw_fit, kind):
    fit = raw_fit[::7] * 0.9
    tok = FastTokenizer.fit(fit, scale=SCALE) if kind == "fast" else BinningTokenizer.fit(fit, n_bins=128)
    report = tok.encode_with_report(fit)
    assert report.ids == tok.encode(fit)
    assert not report.clamped.any() and report.num_clamped_chunks == 0
    np.testing.assert_allclose(report.error_bound, report.rounding_bound)
    out = tok.decode(report.ids)
    assert np.all(normalised_error(tok, out.actions, fit) <= report.rounding_bound + 1e-12)
    if kind == "fast":
        assert not out.saturated.any()


def test_decode_result_saturated_defaults_to_false_and_checks_its_shape():
    actions = np.zeros((2, T, D))
    issues = {k: np.zeros(2, dtype=bool) for k in ISSUE_KINDS}
    plain = DecodeResult(actions=actions, issues=issues, num_decoded=np.zeros(2, dtype=np.int64))
    assert plain.saturated.tolist() == [False, False] and plain.num_saturated == 0
    with pytest.raises(ValueError, match="one flag per chunk"):
        DecodeResult(actions=actions, issues=issues, num_decoded=np.zeros(2), saturated=np.zeros(3, dtype=bool))
