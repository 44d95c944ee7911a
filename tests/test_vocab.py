"""The token layout: every real Emu3 id, the preset structure, and the id mappings."""

import numpy as np
import pytest
import torch

from emu3_vla.presets import PRESETS, get_preset
from emu3_vla.text_tokenizer import TextTokenizer
from emu3_vla.vocab import TokenLayout, TokenRangeError, extra_token, visual_token

# docs/design.md section 2, id by id.
REAL_IDS = {
    "pad_id": 151643,
    "im_start_id": 151644,
    "im_end_id": 151645,
    "extra_base": 151646,
    "boa_id": 151844,
    "eoa_id": 151845,
    "eol_id": 151846,
    "eof_id": 151847,
    "bos_id": 151849,
    "eos_id": 151850,
    "sot_id": 151851,
    "sov_id": 151852,
    "eov_id": 151853,
    "visual_base": 151854,
    "vocab_size": 184622,
    "last_text_id": 151642,
}


@pytest.mark.parametrize(("attr", "value"), sorted(REAL_IDS.items()))
def test_real_layout_reproduces_every_id(attr, value):
    assert getattr(TokenLayout.emu3(), attr) == value


def test_real_layout_ranges():
    layout = TokenLayout.emu3()
    assert layout.action_range == range(150619, 151643)
    assert layout.visual_range == range(151854, 184622)
    assert layout.extra_id(204) == 151850
    assert layout.code_to_id(32767) == 184621
    assert layout.fast_to_id(0) == 151642
    assert layout.fast_to_id(1023) == 150619


def real_vocabulary_map(layout: TokenLayout) -> dict[str, int]:
    vocab = {f"text{i}": i for i in range(0, layout.text_size, 997)}
    vocab.update(layout.special_tokens())
    vocab.update({visual_token(c): layout.code_to_id(c) for c in range(layout.codebook_size)})
    return vocab


@pytest.mark.parametrize("layout", [TokenLayout.emu3(), get_preset("tiny").layout])
def test_layout_recovered_from_vocabulary_map(layout):
    assert TokenLayout.from_vocabulary_map(real_vocabulary_map(layout)) == layout


def test_vocabulary_map_with_a_shifted_control_token_is_rejected():
    vocab = real_vocabulary_map(TokenLayout.emu3())
    vocab[extra_token(198)] += 1
    with pytest.raises(ValueError, match="extra_198"):
        TokenLayout.from_vocabulary_map(vocab)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_share_the_structure(name):
    layout = get_preset(name).layout
    assert layout.action_range.stop == layout.text_size == layout.pad_id
    assert len(layout.action_range) == 1024
    assert layout.sov_id == layout.sot_id + 1 == layout.extra_base + 206
    assert layout.vocab_size == layout.visual_base + layout.codebook_size
    ids = sorted(layout.control_ids().values())
    assert len(set(ids)) == len(ids) and all(layout.text_size <= i < layout.visual_base for i in ids)


@pytest.mark.parametrize("layout", [TokenLayout.emu3(), get_preset("tiny").layout])
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_round_trips(layout, kind):
    codes = np.arange(layout.codebook_size)
    fast = np.arange(1024)
    if kind == "torch":
        codes, fast = torch.as_tensor(codes), torch.as_tensor(fast)
    ids = layout.code_to_id(codes)
    assert bool((layout.id_to_code(ids) == codes).all())
    assert bool(layout.is_visual_id(ids).all())
    action_ids = layout.fast_to_id(fast)
    assert bool((layout.id_to_fast(action_ids) == fast).all())
    assert bool(layout.is_action_id(action_ids).all())
    assert int(action_ids.min()) == layout.action_range.start and int(action_ids.max()) == layout.last_text_id


@pytest.mark.parametrize(
    ("method", "bad"),
    [("code_to_id", -1), ("code_to_id", 1024), ("id_to_code", 5), ("fast_to_id", 1024), ("id_to_fast", 2048)],
)
def test_out_of_range_ids_raise(method, bad):
    layout = get_preset("tiny").layout
    with pytest.raises(TokenRangeError, match="outside"):
        getattr(layout, method)(bad)
    with pytest.raises(TokenRangeError):
        getattr(layout, method)(np.array([0, bad]) if method != "id_to_code" else np.array([bad]))


def test_layout_save_load(tmp_path):
    layout = get_preset("tiny").layout
    layout.save(tmp_path / "layout.json")
    assert TokenLayout.load(tmp_path / "layout.json") == layout


def test_builtin_text_tokenizer_stays_below_the_action_ids():
    layout = get_preset("tiny").layout
    tok = TextTokenizer.builtin_for(layout)
    text = "push the sliding door to the left side"
    ids = tok.encode(text)
    assert ids and max(ids) < layout.action_range.start
    assert tok.decode(ids) == text
    # Control, action and visual ids are dropped when decoding, not rendered as text.
    assert tok.decode([layout.bos_id, *ids, layout.fast_to_id(3), layout.code_to_id(7)]) == text
    assert tok.decode(tok.encode("ünïcode 25*25")) == "ünïcode 25*25"
