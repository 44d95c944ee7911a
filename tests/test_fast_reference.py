"""Compatibility with the public FAST processor (physical-intelligence/fast on the HF hub).

Nothing is downloaded: the tests build a folder in the public format themselves, with the public
processor's algorithm written out below against the same libraries it uses (``tokenizers``'
``ByteLevelBPETokenizer`` + ``BpeTrainer``, saved through ``transformers.PreTrainedTokenizerFast``),
and check that our loader reproduces its token ids and decoded chunks.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.fft import dct, idct
from tokenizers import ByteLevelBPETokenizer
from tokenizers.trainers import BpeTrainer
from transformers import PreTrainedTokenizerFast

from action_tokenizer import FastTokenizer, MalformedTokensError, binarize_gripper, load_action_tokenizer
from action_tokenizer.synthetic import calvin_like_chunks

SCALE, VOCAB = 10, 1024


def public_fit(chunks: np.ndarray, scale: float, vocab_size: int) -> tuple[PreTrainedTokenizerFast, int]:
    """The public processor's ``fit``, step by step."""
    coeffs = [dct(a, axis=0, norm="ortho").flatten() for a in chunks]
    rounded = np.around(np.concatenate(coeffs) * scale)
    min_token, max_token = int(rounded.min()), int(rounded.max())
    assert max_token - min_token <= vocab_size
    strings = ("".join(map(chr, (np.around(c * scale) - min_token).astype(int))) for c in coeffs)
    bpe = ByteLevelBPETokenizer()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=[chr(i) for i in range(max_token - min_token + 1)],
        max_token_length=10000,
    )
    bpe._tokenizer.train_from_iterator(strings, trainer=trainer)  # as the public processor does
    return PreTrainedTokenizerFast(tokenizer_object=bpe, clean_up_tokenization_spaces=False), min_token


def public_encode(hf: PreTrainedTokenizerFast, min_token: int, chunks: np.ndarray, scale: float) -> list[list[int]]:
    coeffs = np.around(dct(chunks, axis=1, norm="ortho") * scale)
    out = []
    for elem in coeffs:
        text = "".join(map(chr, np.maximum(elem.flatten() - min_token, 0).astype(int)))
        out.append(hf(text)["input_ids"])
    return out


def public_decode(hf, min_token: int, tokens, horizon: int, dim: int, scale: float) -> np.ndarray:
    chunks = []
    for ids in tokens:
        try:
            values = np.array(list(map(ord, hf.decode(ids)))) + min_token
            values = values.reshape(-1, dim)
            assert values.shape == (horizon, dim)
        except Exception:  # the public processor prints and substitutes zeros
            values = np.zeros((horizon, dim))
        chunks.append(idct(values / scale, axis=0, norm="ortho"))
    return np.stack(chunks)


@pytest.fixture(scope="module")
def public(tmp_path_factory) -> tuple[Path, PreTrainedTokenizerFast, int]:
    """A folder laid out like physical-intelligence/fast: processor_config.json + HF tokenizer files."""
    folder = tmp_path_factory.mktemp("public_fast")
    hf, min_token = public_fit(calvin_like_chunks(30, stride=2, seed=0), SCALE, VOCAB)
    hf.save_pretrained(folder)
    config = {
        "action_dim": None,
        "auto_map": {"AutoProcessor": "processing_action_tokenizer.UniversalActionProcessor"},
        "min_token": min_token,
        "processor_class": "UniversalActionProcessor",
        "scale": SCALE,
        "time_horizon": None,
        "vocab_size": VOCAB,
    }
    (folder / "processor_config.json").write_text(json.dumps(config, indent=2))
    return folder, hf, min_token


@pytest.fixture(scope="module")
def held_out() -> np.ndarray:
    return calvin_like_chunks(8, stride=7, seed=11)


def test_public_folder_loads_in_reference_mode(public):
    folder = public[0]
    tok = load_action_tokenizer(folder)
    assert isinstance(tok, FastTokenizer) and tok.mode == "reference" and tok.normalizer is None
    assert tok.time_horizon is None and tok.action_dim is None
    with pytest.raises(ValueError, match="pass time_horizon= and action_dim="):
        tok.decode([[1, 2]])
    tok = load_action_tokenizer(folder, time_horizon=10, action_dim=7)
    assert (tok.time_horizon, tok.action_dim) == (10, 7)


def test_token_ids_match_the_public_processor(public, held_out):
    folder, hf, min_token = public
    tok = load_action_tokenizer(folder)
    assert tok.encode(held_out) == public_encode(hf, min_token, held_out, SCALE)


def test_well_formed_streams_decode_exactly_like_the_public_processor(public, held_out):
    folder, hf, min_token = public
    tok = load_action_tokenizer(folder, time_horizon=10, action_dim=7)
    ids = public_encode(hf, min_token, held_out, SCALE)
    ours = tok.decode(ids)
    assert ours.num_malformed == 0
    np.testing.assert_array_equal(ours.actions, public_decode(hf, min_token, ids, 10, 7, SCALE))
    # the time horizon can also be given per call
    per_call = load_action_tokenizer(folder).decode(ids, time_horizon=10, action_dim=7)
    np.testing.assert_array_equal(per_call.actions, ours.actions)


def test_our_reference_mode_fit_trains_the_same_tokenizer(public):
    _, hf, min_token = public
    tok = FastTokenizer.fit(calvin_like_chunks(30, stride=2, seed=0), scale=SCALE, normalizer=None, mode="reference")
    assert tok.config.min_token == min_token
    assert tok.bpe.get_vocab() == hf.backend_tokenizer.get_vocab()
    ours = json.loads(tok.bpe.to_str())["model"]["merges"]
    theirs = json.loads(hf.backend_tokenizer.to_str())["model"]["merges"]
    assert ours == theirs


def test_reference_mode_folders_we_save_are_readable_by_transformers(tmp_path, held_out):
    tok = FastTokenizer.fit(calvin_like_chunks(20, stride=3, seed=4), scale=SCALE, normalizer=None, mode="reference")
    tok.save(tmp_path)
    config = json.loads((tmp_path / "processor_config.json").read_text())
    assert {"scale", "vocab_size", "min_token", "time_horizon", "action_dim"} <= set(config)
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"), clean_up_tokenization_spaces=False)
    assert public_encode(hf, config["min_token"], held_out, SCALE) == tok.encode(held_out)


def test_malformed_streams_are_repaired_where_the_public_processor_zeroes_them(public, held_out):
    folder, hf, min_token = public
    tok = load_action_tokenizer(folder, time_horizon=10, action_dim=7)
    ids = public_encode(hf, min_token, held_out[:1], SCALE)[0]
    cut = [ids[: len(ids) // 2]]
    theirs = public_decode(hf, min_token, cut, 10, 7, SCALE)
    assert not theirs.any()  # all zeros, gripper 0: neither open nor closed
    ours = tok.decode(cut)
    assert ours.malformed[0] and ours.issues["too_short"][0]
    full = tok.decode([ids])
    np.testing.assert_array_equal(ours.coefficients[0, 0], full.coefficients[0, 0])  # DC terms kept
    assert np.all(np.isin(binarize_gripper(ours.actions)[..., 6], [-1.0, 1.0]))
    with pytest.raises(MalformedTokensError):
        tok.decode(cut, strict=True)


def test_reference_alphabet_loses_unseen_bytes(public):
    """A weakness of the public format, reproduced by reference mode and absent from native mode.

    The public fit seeds BPE with ``chr(0) .. chr(max - min)`` although its byte-level pre-tokenizer
    sees UTF-8 *bytes* mapped to other symbols; a coefficient whose bytes never occurred at fit is
    silently dropped at encode. Native mode seeds the alphabet with every byte its range can need.
    """
    folder, hf, min_token = public
    tok = load_action_tokenizer(folder, time_horizon=10, action_dim=7)
    fit = calvin_like_chunks(30, stride=2, seed=0)
    native = FastTokenizer.fit(fit, scale=SCALE, normalizer=None)
    levels = np.linspace(-1, 1, 401)
    chunks = np.repeat(levels[:, None, None], 10, axis=1).repeat(7, axis=2)
    chunks[..., 6] = 1.0
    lost = tok.decode(public_encode(hf, min_token, chunks, SCALE)).malformed
    assert lost.any()  # the public processor's own round trip breaks on some in-range chunks
    assert native.decode(native.encode(chunks)).num_malformed == 0
