"""The decoding core: constraints, samplers, left padding, the KV-cached loop and CFG (tiny random model)."""

from collections import Counter

import numpy as np
import pytest
import torch

from emu3_vla.checkpoint import Emu3Bundle
from emu3_vla.decoding import (
    GREEDY,
    GridConstraint,
    Sampler,
    TokenSetConstraint,
    action_constraint,
    decode,
    left_pad,
    row_generators,
    text_constraint,
)
from emu3_vla.generation import generation_prompt
from emu3_vla.vision_block import frame_body, parse_frames

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bundle():
    return Emu3Bundle.from_preset("tiny", seed=5, with_vq=False)


def ids(mask: torch.Tensor) -> list[int]:
    """The token ids a (V,) boolean mask allows."""
    return torch.nonzero(mask).flatten().tolist()


def walk(constraint, rng, batch=1, steps=None):
    """Drive a constraint with random allowed tokens (no model): what any model would be forced to write."""
    state = constraint.initial_state(batch, "cpu")
    out = []
    for _ in range(steps or constraint.max_new_tokens):
        allowed = constraint.allowed(state)
        tokens = torch.tensor([rng.choice(np.flatnonzero(row.numpy())) for row in allowed])
        out.append(tokens)
        state = constraint.advance(state, tokens)
    return torch.stack(out, dim=1), state


# ------------------------------------------------------------------ constraints
@pytest.mark.parametrize("with_eol", [True, False])
def test_grid_constraint_admits_exactly_the_block_structure(bundle, with_eol):
    layout = bundle.layout
    c = GridConstraint(layout, 3, 4, frames=2, with_eol=with_eol)
    assert c.max_new_tokens == 2 * (3 * (4 + with_eol) + 1) + 2
    tokens, state = walk(c, np.random.default_rng(0), batch=3)
    assert c.finished(state).all()
    for row in tokens.numpy():
        codes = parse_frames(row[:-2], layout, 3, 4, with_eol=with_eol)
        assert codes.shape == (2, 3, 4)
        expected = np.concatenate([frame_body(f, layout, with_eol=with_eol) for f in codes])
        assert np.array_equal(row[:-2], expected)
        assert row[-2:].tolist() == [layout.eov_id, layout.eos_id]
    # After the end only padding is allowed.
    assert c.allowed(state).sum(dim=1).tolist() == [1, 1, 1]
    assert c.allowed(state)[:, layout.pad_id].all()


def test_grid_constraint_allows_every_code_inside_a_row(bundle):
    layout = bundle.layout
    allowed = GridConstraint(layout, 2, 2).allowed(torch.tensor([0]))[0]
    assert ids(allowed) == list(layout.visual_range)


def test_token_set_constraint_stops_then_pads(bundle):
    layout = bundle.layout
    c = TokenSetConstraint([3, 5], stop_id=7, pad_id=layout.pad_id, vocab_size=layout.vocab_size, min_new_tokens=2)
    state = c.initial_state(2, "cpu")
    assert ids(c.allowed(state)[0]) == [3, 5]  # stop forbidden while too short
    state = c.advance(c.advance(state, torch.tensor([3, 5])), torch.tensor([5, 3]))
    assert ids(c.allowed(state)[0]) == [3, 5, 7]
    state = c.advance(state, torch.tensor([7, 3]))
    assert c.finished(state).tolist() == [True, False]
    assert ids(c.allowed(state)[0]) == [layout.pad_id]
    assert ids(c.allowed(state)[1]) == [3, 5, 7]


def test_text_and_action_constraints_cover_the_right_ranges(bundle):
    layout, tok = bundle.layout, bundle.text_tokenizer
    text = text_constraint(layout, tok).allowed(torch.tensor([0]))[0]
    assert ids(text) == [*range(tok.text_vocab_size()), layout.eos_id]
    act = action_constraint(layout, min_new_tokens=0).allowed(torch.tensor([0]))[0]
    assert ids(act) == [*layout.action_range, layout.eoa_id]


# --------------------------------------------------------------------- sampling
def test_sampler_rejects_bad_settings():
    with pytest.raises(ValueError, match="greedy=True"):
        Sampler(temperature=0)
    with pytest.raises(ValueError, match="top_p"):
        Sampler(top_p=1.5)
    with pytest.raises(ValueError, match="top_k"):
        Sampler(top_k=0)
    with pytest.raises(ValueError, match="one torch.Generator per row"):
        Sampler()(torch.zeros(2, 5), row_generators(0, 1, "cpu"))


def test_sampling_follows_the_softmax_and_its_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, float("-inf")]])
    probs = logits.softmax(-1)[0]
    gen = row_generators([1], 1, "cpu")
    draws = Counter(int(Sampler()(logits, gen)) for _ in range(6000))
    assert draws[3] == 0
    for token in range(3):
        assert abs(draws[token] / 6000 - float(probs[token])) < 0.03
    top2 = Counter(int(Sampler(top_k=2)(logits, gen)) for _ in range(500))
    assert set(top2) == {1, 2}
    # top-p 0.6: the mass above token 2 is 0, above token 1 is 0.665 >= 0.6, so only token 2 survives.
    assert {int(Sampler(top_p=0.6)(logits, gen)) for _ in range(200)} == {2}
    assert {int(Sampler(top_p=0.7)(logits, gen)) for _ in range(500)} == {1, 2}
    hot = Counter(int(Sampler(temperature=0.2)(logits, gen)) for _ in range(500))
    assert hot[2] > 450  # low temperature concentrates on the arg-max
    assert int(GREEDY(logits)) == 2


def test_a_rows_samples_do_not_depend_on_the_other_rows():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    together = Sampler(top_k=20)(logits, row_generators([7, 8, 9], 3, "cpu"))
    alone = Sampler(top_k=20)(logits[1:2], row_generators([8], 1, "cpu"))
    assert together[1] == alone[0]


def test_left_pad_masks_and_positions():
    ids, mask, pos = left_pad([[5, 6, 7], [9]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert pos.tolist() == [[0, 1, 2], [0, 0, 0]]
    with pytest.raises(ValueError, match="empty"):
        left_pad([[1], []], pad_id=0)


# ---------------------------------------------------------------- the decoding loop
def _prompts(bundle):
    tok, layout = bundle.text_tokenizer, bundle.layout
    texts = ["open the drawer", "lift the red block from the table and put it down", "go"]
    return [[layout.bos_id, *tok.encode(t)] for t in texts]


def _last_logits(decoder, ids):
    with torch.no_grad():
        return decoder(torch.tensor([ids])).logits[0, -1].float()


@pytest.mark.parametrize("sampler", [GREEDY, Sampler(temperature=1.3, top_k=200)])
def test_a_batched_row_gives_the_same_tokens_as_the_row_alone(bundle, sampler):
    layout = bundle.layout
    prompts = _prompts(bundle)
    assert len({len(p) for p in prompts}) == 3  # genuinely different lengths -> left padding
    constraint = text_constraint(layout, bundle.text_tokenizer)
    kwargs = {"pad_id": layout.pad_id, "sampler": sampler, "max_new_tokens": 12}
    batched = decode(bundle.decoder, prompts, constraint, seeds=[11, 12, 13], **kwargs)
    for i, prompt in enumerate(prompts):
        alone = decode(bundle.decoder, [prompt], constraint, seeds=[11 + i], **kwargs)
        assert batched.row(i) == alone.row(0), f"row {i} differs when batched"
    if not sampler.greedy:  # the seeds matter: another seed gives another continuation
        other = decode(bundle.decoder, prompts[:1], constraint, seeds=[99], **kwargs)
        assert other.row(0) != batched.row(0)


def test_cached_padded_steps_see_the_same_logits_as_a_full_forward(bundle):
    """KV cache, left padding, attention mask and position ids together: every step's logits of every
    row equal an uncached, unpadded forward pass over that row's prompt + generated tokens."""
    prompts = _prompts(bundle)
    out = decode(
        bundle.decoder,
        prompts,
        text_constraint(bundle.layout, bundle.text_tokenizer),
        pad_id=bundle.layout.pad_id,
        sampler=Sampler(),
        seeds=3,
        max_new_tokens=6,
        trace=True,
    )
    for row, prompt in enumerate(prompts):
        generated = out.row(row)
        for step in range(len(generated)):
            expected = _last_logits(bundle.decoder, prompt + generated[:step])
            torch.testing.assert_close(out.trace[step].cond_logits[row], expected, atol=1e-4, rtol=1e-4)


def test_cfg_step_equals_uncond_plus_scale_times_difference(bundle):
    layout, tok = bundle.layout, bundle.text_tokenizer
    cond = generation_prompt("push the blue block to the left", 2, 3, layout, tok)
    uncond = generation_prompt("", 2, 3, layout, tok)
    assert len(cond) != len(uncond)
    scale = 3.0
    out = decode(
        bundle.decoder,
        [cond],
        GridConstraint(layout, 2, 3),
        pad_id=layout.pad_id,
        sampler=Sampler(top_k=100),
        seeds=4,
        guidance_scale=scale,
        uncond_prompts=[uncond],
        trace=True,
    )
    generated = out.row(0)
    for step in range(4):  # separate, uncached, unpadded forward passes of each prompt
        c = _last_logits(bundle.decoder, cond + generated[:step])
        u = _last_logits(bundle.decoder, uncond + generated[:step])
        record = out.trace[step]
        torch.testing.assert_close(record.cond_logits[0], c, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(record.uncond_logits[0], u, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(record.guided_logits[0], u + scale * (c - u), atol=1e-3, rtol=1e-4)
        assert not torch.allclose(record.guided_logits[0], c, atol=1e-2)  # guidance changed something


def _reference_cfg_decode(bundle, cond, uncond, constraint, sampler, seed, scale):
    """Two separate, uncached forward passes per step (cond, uncond), combined by hand."""
    gens = row_generators([seed], 1, "cpu")
    state = constraint.initial_state(1, "cpu")
    tokens = []
    for _ in range(constraint.max_new_tokens):
        c = _last_logits(bundle.decoder, cond + tokens)
        u = _last_logits(bundle.decoder, uncond + tokens)
        logits = (u + scale * (c - u)).masked_fill(~constraint.allowed(state)[0], float("-inf"))[None]
        token = sampler(logits, None if sampler.greedy else gens)
        tokens.append(int(token[0]))
        state = constraint.advance(state, token)
    return tokens


@pytest.mark.parametrize("sampler", [GREEDY, Sampler(temperature=0.9, top_p=0.95)])
def test_batched_cfg_matches_two_separate_passes(bundle, sampler):
    layout, tok = bundle.layout, bundle.text_tokenizer
    prompts = ["turn on the lightbulb", "close the drawer please"]
    negative = "blurry"
    constraint = GridConstraint(layout, 2, 3)
    cond = [generation_prompt(p, 2, 3, layout, tok) for p in prompts]
    uncond = [generation_prompt(negative, 2, 3, layout, tok)] * 2
    out = decode(
        bundle.decoder,
        cond,
        constraint,
        pad_id=layout.pad_id,
        sampler=sampler,
        seeds=[21, 22],
        guidance_scale=2.5,
        uncond_prompts=uncond,
    )
    for i in range(2):
        expected = _reference_cfg_decode(bundle, cond[i], uncond[i], constraint, sampler, 21 + i, 2.5)
        assert out.row(i) == expected


def test_decode_argument_errors(bundle):
    layout = bundle.layout
    grid = GridConstraint(layout, 2, 2)
    prompt = [[layout.bos_id]]
    with pytest.raises(ValueError, match="uncond_prompts"):
        decode(bundle.decoder, prompt, grid, pad_id=layout.pad_id, guidance_scale=2.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        decode(bundle.decoder, prompt, text_constraint(layout, bundle.text_tokenizer), pad_id=layout.pad_id)
    with pytest.raises(ValueError, match="context of 4096"):
        decode(bundle.decoder, prompt, GridConstraint(layout, 64, 64), pad_id=layout.pad_id)


def test_decode_restores_training_mode(bundle):
    layout = bundle.layout
    bundle.decoder.train()
    try:
        decode(bundle.decoder, [[layout.bos_id]], GridConstraint(layout, 1, 1), pad_id=layout.pad_id)
        assert bundle.decoder.training
    finally:
        bundle.decoder.eval()


def test_action_length_constraint_fills_exactly_the_chunk():
    from emu3_vla.decoding import ActionLengthConstraint
    from emu3_vla.vocab import TokenLayout

    layout = TokenLayout.emu3()
    counts = [1, 2, 3, 0]  # FAST id 3 decodes to nothing: never allowed
    c = ActionLengthConstraint(layout, counts, total=4)
    ids = [int(layout.fast_to_id(i)) for i in range(4)]
    state = c.initial_state(3, "cpu")
    allowed = c.allowed(state)[0]
    assert [bool(allowed[i]) for i in ids] == [True, True, True, False] and not allowed[layout.eoa_id]
    state = c.advance(state, torch.tensor([ids[2], ids[1], ids[0]]))  # 3, 2, 1 coefficients written
    masks = c.allowed(state)
    assert [bool(masks[0, i]) for i in ids] == [True, False, False, False]  # one left: only 1-wide ids
    assert [bool(masks[1, i]) for i in ids] == [True, True, False, False]
    assert not masks[:, layout.eoa_id].any()
    state = c.advance(state, torch.tensor([ids[0], ids[1], ids[2]]))  # 4, 4, 4
    masks = c.allowed(state)
    assert masks[:, layout.eoa_id].all() and int(masks.sum()) == 3  # only [EOA]
    state = c.advance(state, torch.full((3,), layout.eoa_id))
    assert c.finished(state).all() and c.allowed(state)[:, layout.pad_id].all()
    with pytest.raises(ValueError, match="single coefficient"):
        ActionLengthConstraint(layout, [2, 3], total=4)
