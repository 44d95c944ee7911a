"""FastTokenizer: round trip within the rounding bound, exact integer round trip, persistence, errors."""

import json

import numpy as np
import pytest

from action_tokenizer import (
    ActionNormalizer,
    FastTokenizer,
    load_action_tokenizer,
    rounding_error_bound,
)
from action_tokenizer.dct import dct_matrix, quantize
from action_tokenizer.synthetic import calvin_like_chunks

SCALE = 25.0


@pytest.fixture(scope="module")
def fit_chunks() -> np.ndarray:
    return calvin_like_chunks(40, stride=2, seed=0)


@pytest.fixture(scope="module")
def tok(fit_chunks) -> FastTokenizer:
    # The synthetic chunks are already in [-1, 1]: no normaliser, so the bound applies in data units.
    return FastTokenizer.fit(fit_chunks, scale=SCALE, normalizer=None)


def test_fit_records_shape_and_ids_stay_in_the_vocabulary(tok, fit_chunks):
    assert (tok.time_horizon, tok.action_dim, tok.vocab_size) == (10, 7, 1024)
    ids = tok.encode(fit_chunks)
    assert len(ids) == len(fit_chunks)
    flat = np.concatenate([np.asarray(x) for x in ids])
    assert flat.min() >= 0 and flat.max() < 1024
    assert max(len(x) for x in ids) <= tok.max_stream_length()


def test_round_trip_error_is_bounded_by_the_rounding_step(tok, fit_chunks):
    """Orthonormal DCT: RMSE per chunk <= 0.5/scale, L2 <= sqrt(T*D)*0.5/scale, per value <= L1-column bound."""
    out = tok.decode(tok.encode(fit_chunks), strict=True)
    err = out.actions - fit_chunks
    bound = rounding_error_bound(10, 7, SCALE)
    rmse = np.sqrt(np.mean(err**2, axis=(1, 2)))
    l2 = np.sqrt(np.sum(err**2, axis=(1, 2)))
    assert rmse.max() <= bound.rmse + 1e-12
    assert l2.max() <= bound.l2 + 1e-12
    assert np.abs(err).max() <= bound.per_value + 1e-12
    # the bound is not vacuous: typical rounding error is 1/(scale*sqrt(12)), well above a tenth of it
    assert np.sqrt(np.mean(err**2)) > 0.1 * bound.rmse


def test_per_value_bound_is_the_l1_norm_of_the_inverse_dct_columns():
    c = dct_matrix(10)
    np.testing.assert_allclose(c @ c.T, np.eye(10), atol=1e-12)  # orthonormal
    bound = rounding_error_bound(10, 7, 10.0)
    assert bound.per_value == pytest.approx(0.05 * np.abs(c).sum(axis=0).max())
    assert bound.per_value <= np.sqrt(10) * 0.05
    # attained: rounding errors of +-0.5 with the signs of one column of C give exactly that error
    t = int(np.abs(c).sum(axis=0).argmax())
    err = idct_of(np.sign(c[:, t]) * 0.5 / 10.0)
    assert abs(err[t]) == pytest.approx(bound.per_value)


def idct_of(coeffs: np.ndarray) -> np.ndarray:
    return dct_matrix(len(coeffs)).T @ coeffs


def test_exact_integer_round_trip_of_the_dct_coefficients(tok, fit_chunks):
    coeffs = tok.quantize(fit_chunks)
    np.testing.assert_array_equal(coeffs, quantize(fit_chunks, SCALE))  # fitted data is never clamped
    decoded, issues, counts = tok.decode_coefficients(tok.encode_coefficients(coeffs))
    np.testing.assert_array_equal(decoded, coeffs)
    assert not any(v.any() for v in issues.values())
    assert np.all(counts == 70)


def test_flattening_is_frequency_major(tok):
    """The first D characters of a chunk's string are its D DC terms."""
    coeffs = np.zeros((1, 10, 7), dtype=np.int64)
    coeffs[0, 0, :] = [3, -2, 1, 0, 0, 0, 5]
    text = tok.bpe.decode(tok.encode_coefficients(coeffs)[0])
    values = tok.characters.to_values(np.array([ord(ch) for ch in text]))
    np.testing.assert_array_equal(values[:7], [3, -2, 1, 0, 0, 0, 5])
    assert not values[7:].any()


def test_native_format_compresses_better_than_the_reference_format(fit_chunks):
    held_out = calvin_like_chunks(10, stride=10, seed=5)
    native = FastTokenizer.fit(fit_chunks, scale=10, normalizer=None)
    reference = FastTokenizer.fit(fit_chunks, scale=10, normalizer=None, mode="reference")
    n_native = np.mean([len(x) for x in native.encode(held_out)])
    n_reference = np.mean([len(x) for x in reference.encode(held_out)])
    assert n_native < 0.95 * n_reference


def test_normaliser_is_fitted_applied_and_inverted(fit_chunks):
    scales = np.array([0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0])
    raw = fit_chunks * scales  # CALVIN-like units; the gripper stays -1/+1
    tok = FastTokenizer.fit(raw, scale=SCALE)
    assert tok.normalizer is not None and tok.normalizer.passthrough_dims == (6,)
    out = tok.decode(tok.encode(raw), strict=True)
    half_span = (tok.normalizer.high - tok.normalizer.low) / 2
    half_span[6] = 1.0
    inside = np.clip(raw, tok.normalizer.low, tok.normalizer.high)
    inside[..., 6] = raw[..., 6]
    err = np.abs(out.actions - inside) / half_span
    assert err.max() <= rounding_error_bound(10, 7, SCALE).per_value + 1e-9


def test_fit_is_deterministic_and_accepts_an_iterator(fit_chunks, tmp_path):
    a = FastTokenizer.fit(fit_chunks, scale=SCALE, normalizer=None).save(tmp_path / "a")
    b = FastTokenizer.fit(iter(np.array_split(fit_chunks, 7)), scale=SCALE, normalizer=None).save(tmp_path / "b")
    for name in ("processor_config.json", "tokenizer.json"):
        assert (a / name).read_text() == (b / name).read_text()


def test_save_load_round_trip_is_readable_and_identical(tok, fit_chunks, tmp_path):
    tok.save(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    for field in ("scale", "vocab_size", "min_token", "time_horizon", "action_dim"):
        assert field in config
    assert config["scale"] == SCALE and config["time_horizon"] == 10 and config["action_dim"] == 7
    assert len((tmp_path / "processor_config.json").read_text().splitlines()) < 80  # tables stay compact
    json.loads((tmp_path / "tokenizer.json").read_text())
    again = load_action_tokenizer(tmp_path)
    assert isinstance(again, FastTokenizer) and again.mode == "native"
    ids = tok.encode(fit_chunks[:200])
    assert again.encode(fit_chunks[:200]) == ids
    np.testing.assert_array_equal(again.decode(ids).actions, tok.decode(ids).actions)


@pytest.mark.parametrize("mode", ["native", "reference"])
def test_saving_a_loaded_tokenizer_reproduces_the_folder_byte_for_byte(fit_chunks, tmp_path, mode):
    """Caches fingerprint a tokenizer by the files it saves, so load -> save must be the identity."""
    first = FastTokenizer.fit(fit_chunks * 0.3, scale=SCALE, mode=mode).save(tmp_path / "a")
    second = FastTokenizer.load(first).save(tmp_path / "b")
    for name in ("processor_config.json", "tokenizer.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_normaliser_travels_with_the_folder(fit_chunks, tmp_path):
    raw = fit_chunks * 0.05
    raw[..., 6] = fit_chunks[..., 6]
    tok = FastTokenizer.fit(raw, scale=10)
    tok.save(tmp_path)
    again = FastTokenizer.load(tmp_path)
    assert again.normalizer == tok.normalizer
    np.testing.assert_array_equal(again.decode(tok.encode(raw[:50])).actions, tok.decode(tok.encode(raw[:50])).actions)


def test_given_normaliser_is_used_as_is(fit_chunks):
    norm = ActionNormalizer.fit(fit_chunks, passthrough_dims=[6])
    tok = FastTokenizer.fit(fit_chunks, scale=10, normalizer=norm)
    assert tok.normalizer is norm
    with pytest.raises(ValueError, match="normaliser is for 7-d"):
        FastTokenizer.fit(fit_chunks[..., :6], normalizer=norm)


def test_clamp_range_is_the_fitted_range_with_a_margin(tok, fit_chunks):
    coeffs = quantize(fit_chunks, SCALE)
    seen_low, seen_high = coeffs.min(axis=0), coeffs.max(axis=0)
    margin = np.ceil(0.1 * (seen_high - seen_low)) + 1
    np.testing.assert_array_equal(tok.config.coefficient_low, seen_low - margin)
    np.testing.assert_array_equal(tok.config.coefficient_high, seen_high + margin)
    assert (tok.config.min_token, tok.config.max_token) == (coeffs.min(), coeffs.max())  # public meaning


def test_unseen_coefficients_are_clamped_to_the_fitted_range(tok):
    wild = np.zeros((1, 10, 7))
    wild[0, ::2, :] = 1.0  # alternating: high-frequency energy the smooth fit data never had
    wild[0, 1::2, :] = -1.0
    coeffs = tok.quantize(wild)
    assert np.all(coeffs <= tok.config.coefficient_high) and np.all(coeffs >= tok.config.coefficient_low)
    assert np.any(coeffs != quantize(wild, SCALE))
    out = tok.decode(tok.encode(wild), strict=True)
    np.testing.assert_array_equal(out.coefficients, coeffs)


def test_time_horizon_and_action_dim_can_be_overridden_when_loading(tok, tmp_path):
    tok.save(tmp_path)
    again = FastTokenizer.load(tmp_path, time_horizon=5)
    assert again.time_horizon == 5 and again.action_dim == 7
    short = calvin_like_chunks(3, horizon=5, stride=50, seed=2)
    out = again.decode(again.encode(short), strict=True)
    assert out.actions.shape == short.shape
    assert np.sqrt(np.mean((out.actions - short) ** 2)) <= 0.5 / SCALE


def test_bad_input_gets_a_clear_error(tok):
    with pytest.raises(ValueError, match=r"chunk\[None\]"):
        tok.encode(np.zeros((10, 7)))
    with pytest.raises(ValueError, match="fitted on 7-d"):
        tok.encode(np.zeros((2, 10, 6)))
    bad = np.zeros((2, 10, 7))
    bad[1, 3, 3] = np.inf
    with pytest.raises(ValueError, match=r"chunks \[1\] contain NaN or inf"):
        tok.encode(bad)
    with pytest.raises(ValueError, match="wrap a single stream"):
        tok.decode([1, 2, 3])
    with pytest.raises(ValueError, match="too wide|too small"):
        FastTokenizer.fit(np.full((4, 10, 7), 1000.0) * np.arange(4)[:, None, None], scale=100, normalizer=None)
    with pytest.raises(ValueError, match="unknown FAST mode"):
        FastTokenizer.fit(np.zeros((4, 10, 7)), mode="fancy")


def test_missing_folder_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="processor_config.json"):
        load_action_tokenizer(tmp_path)
    (tmp_path / "processor_config.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="neither an emu3-vla action tokenizer"):
        load_action_tokenizer(tmp_path)
