"""FAST ids land in the last 1,024 text ids of both the real Emu3 layout and the tiny preset's."""

import numpy as np
import pytest
import torch

from action_tokenizer import BinningTokenizer, FastTokenizer
from action_tokenizer.synthetic import calvin_like_chunks
from emu3_vla.presets import get_preset
from emu3_vla.vocab import TokenLayout, TokenRangeError

LAYOUTS = {"emu3": TokenLayout.emu3(), "tiny": get_preset("tiny").layout}


@pytest.fixture(scope="module")
def encoded() -> list[list[int]]:
    chunks = calvin_like_chunks(20, stride=3, seed=0)
    tok = FastTokenizer.fit(chunks, scale=50)
    assert tok.vocab_size == 1024
    return tok.encode(chunks)


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_fast_ids_map_into_the_action_range_and_back(encoded, name):
    layout = LAYOUTS[name]
    fast = np.concatenate([np.asarray(x) for x in encoded])
    assert fast.max() > 512  # the ids really use the upper part of the vocabulary
    llm = layout.fast_to_id(fast)
    assert llm.min() >= layout.action_range.start and llm.max() < layout.action_range.stop
    assert np.all(layout.is_action_id(llm))
    np.testing.assert_array_equal(layout.id_to_fast(llm), fast)
    as_tensor = layout.fast_to_id(torch.as_tensor(fast))
    np.testing.assert_array_equal(as_tensor.numpy(), llm)
    assert llm.max() == layout.last_text_id - fast.min()


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_binning_ids_fit_the_action_range_too(name):
    layout = LAYOUTS[name]
    chunks = calvin_like_chunks(2, seed=1)
    ids = np.concatenate(BinningTokenizer.fit(chunks, n_bins=256).encode(chunks))
    llm = layout.fast_to_id(ids)
    assert np.all(layout.is_action_id(llm))
    np.testing.assert_array_equal(layout.id_to_fast(llm), ids)


def test_an_id_beyond_the_vocabulary_is_rejected_by_the_layout():
    with pytest.raises(TokenRangeError):
        TokenLayout.emu3().fast_to_id(np.array([0, 1024]))
