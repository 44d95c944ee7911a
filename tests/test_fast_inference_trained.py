"""Parallel decoding on a briefly trained model: drafts are accepted, and the tokens are still exactly greedy.

A random model says little about acceptance. Here a 2-layer Emu3 decoder is fitted (100 AdamW steps,
a few seconds) on episodes shaped like policy windows: ``[BOS] instruction [BOA] previous chunk [EOA]
[BOA] next chunk [EOA]``, where each instruction selects a repeating action motif and a chunk length,
and the next chunk continues the previous one's phase. The trained model continues motifs (so drafts
looked up in the previous chunk are right) and ends chunks at learned lengths (so rows stop early,
at different steps).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emu3_vla.decoding import FastDecoder, action_constraint, decode
from emu3_vla.modeling import build_decoder
from emu3_vla.presets import get_preset

LAYOUT = get_preset("tiny").layout
FIRST_ACTION = LAYOUT.action_range.start
MOTIFS = [[FIRST_ACTION + 10 * k + i for i in range(period)] for k, period in enumerate((2, 3, 4, 5))]
CHUNK_LENGTHS = [6, 9, 12, 15]


def episode(rng: np.random.Generator) -> tuple[list[int], list[int]]:
    """(prompt up to the second [BOA], the chunk that follows it with its [EOA])."""
    k = int(rng.integers(len(MOTIFS)))
    motif, n, phase = MOTIFS[k], CHUNK_LENGTHS[k], int(rng.integers(len(MOTIFS[k])))
    previous = [motif[(phase + i) % len(motif)] for i in range(n)]
    following = [motif[(phase + n + i) % len(motif)] for i in range(n)]
    instruction = [LAYOUT.bos_id, 100 + k, int(rng.integers(200, 300))]
    prompt = [*instruction, LAYOUT.boa_id, *previous, LAYOUT.eoa_id, LAYOUT.boa_id]
    return prompt, [*following, LAYOUT.eoa_id]


@pytest.fixture(scope="module")
def trained():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = build_decoder(
        "tiny", seed=0, num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_key_value_heads=2
    )
    rng = np.random.default_rng(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(100):
        batch = [prompt + chunk for prompt, chunk in (episode(rng) for _ in range(16))]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), LAYOUT.pad_id)
        labels = torch.full((len(batch), width), -100)
        for i, seq in enumerate(batch):
            ids[i, : len(seq)] = labels[i, : len(seq)] = torch.tensor(seq)
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    yield model.eval(), loss.item()
    torch.set_num_threads(threads)


def test_training_reached_the_motifs(trained):
    model, loss = trained
    assert loss < 1.0  # from ~8.1 (uniform over 3,283 ids): the motifs were learned
    prompt, target = episode(np.random.default_rng(5))
    out = decode(model, [prompt], action_constraint(LAYOUT), pad_id=LAYOUT.pad_id, max_new_tokens=20)
    assert out.row(0)[:4] == target[:4]


@pytest.mark.parametrize("batch", [1, 2, 3, 4])
def test_parallel_decoding_accepts_drafts_and_stays_exact(trained, batch):
    model, _ = trained
    constraint = action_constraint(LAYOUT)
    rng = np.random.default_rng(100 + batch)
    prompts = [episode(rng)[0] for _ in range(batch)]
    ref = decode(model, prompts, constraint, pad_id=LAYOUT.pad_id, max_new_tokens=24)
    static = FastDecoder(model, constraint, pad_id=LAYOUT.pad_id, mode="static")
    parallel = FastDecoder(model, constraint, pad_id=LAYOUT.pad_id, mode="parallel", draft_tokens=6)
    for fast in (static, parallel):
        out = fast.decode(prompts, max_new_tokens=24, prefix_lengths=[3] * batch)
        assert torch.equal(out.tokens, ref.tokens) and torch.equal(out.lengths, ref.lengths)
        assert torch.equal(out.finished, ref.finished)
    assert bool(ref.finished.all()) and int(ref.lengths.max()) < 24  # every row stopped by itself
    assert static.stats.tokens_per_forward == 1.0
    assert parallel.stats.tokens_per_forward > 2.0  # several verified tokens per forward pass
    assert parallel.stats.decode_forwards < static.stats.decode_forwards


def test_rows_of_different_lengths_stop_at_their_own_step(trained):
    model, _ = trained
    rng = np.random.default_rng(9)
    episodes = [episode(rng) for _ in range(12)]
    prompts = [p for p, _ in episodes]
    ref = decode(model, prompts, action_constraint(LAYOUT), pad_id=LAYOUT.pad_id, max_new_tokens=24)
    assert len(set(ref.lengths.tolist())) > 1
    fast = FastDecoder(model, action_constraint(LAYOUT), pad_id=LAYOUT.pad_id, mode="parallel", draft_tokens=4)
    out = fast.decode(prompts, max_new_tokens=24)
    assert torch.equal(out.tokens, ref.tokens) and torch.equal(out.lengths, ref.lengths)
