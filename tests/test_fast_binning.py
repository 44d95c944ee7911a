"""BinningTokenizer: the naive per-value baseline with FAST's interface."""

import numpy as np
import pytest

from action_tokenizer import BinningTokenizer, FastTokenizer, load_action_tokenizer
from action_tokenizer.synthetic import calvin_like_chunks


@pytest.fixture(scope="module")
def chunks() -> np.ndarray:
    return calvin_like_chunks(10, stride=5, seed=3) * np.array([0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0])


@pytest.mark.parametrize("n_bins", [64, 256])
def test_every_value_is_one_token_and_error_is_within_half_a_bin(chunks, n_bins):
    tok = BinningTokenizer.fit(chunks, n_bins=n_bins)
    ids = tok.encode(chunks)
    assert all(len(x) == 70 for x in ids)
    assert min(min(x) for x in ids) >= 0 and max(max(x) for x in ids) < n_bins
    out = tok.decode(ids, strict=True)
    inside = np.clip(chunks, tok.normalizer.low, tok.normalizer.high)
    err = np.abs(tok.normalizer.transform(out.actions) - tok.normalizer.transform(inside))
    assert err.max() <= 1.0 / n_bins + 1e-12  # half of a bin of width 2/n_bins
    assert err.max() > 0.25 / n_bins  # and the bound is not vacuous


def test_order_is_time_major(chunks):
    tok = BinningTokenizer.fit(chunks, n_bins=256, normalizer=None)
    chunk = np.zeros((1, 10, 7))
    chunk[0, 1, :] = 1.0  # step 1: all dims at the top bin
    ids = tok.encode(chunk)[0]
    assert ids[7:14] == [255] * 7 and ids[:7] == [128] * 7


def test_save_load_and_shared_loader(chunks, tmp_path):
    tok = BinningTokenizer.fit(chunks, n_bins=128)
    tok.save(tmp_path)
    again = load_action_tokenizer(tmp_path)
    assert isinstance(again, BinningTokenizer) and again.n_bins == 128 and again.vocab_size == 128
    assert again.normalizer == tok.normalizer
    ids = tok.encode(chunks)
    assert again.encode(chunks) == ids
    np.testing.assert_array_equal(again.decode(ids).actions, tok.decode(ids).actions)
    assert (again.save(tmp_path / "b") / "processor_config.json").read_bytes() == (
        tmp_path / "processor_config.json"
    ).read_bytes()
    with pytest.raises(ValueError, match="decodes the shape it was fitted on"):
        load_action_tokenizer(tmp_path, time_horizon=5)


def test_fast_needs_far_fewer_tokens_than_binning_at_similar_error(chunks):
    """The reason FAST exists, checked at 64 bins vs FAST at the scale of equal rounding step."""
    bins = BinningTokenizer.fit(chunks, n_bins=64)
    fast = FastTokenizer.fit(chunks, scale=32)  # step 1/32 ~ bin width 2/64
    n_fast = np.mean([len(x) for x in fast.encode(chunks)])
    n_bins = np.mean([len(x) for x in bins.encode(chunks)])
    assert n_bins == 70
    assert n_fast < n_bins / 2


def test_bad_shapes_are_rejected(chunks):
    tok = BinningTokenizer.fit(chunks, n_bins=64)
    with pytest.raises(ValueError, match=r"\(N, 10, 7\)"):
        tok.encode(chunks[:, :5])
    with pytest.raises(ValueError, match="at least 2"):
        BinningTokenizer.fit(chunks, n_bins=1)
