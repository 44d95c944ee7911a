"""Golden tests of the VLA sequence layout and its loss weights (docs/design.md section 5)."""

import numpy as np
import pytest
import torch

from emu3_vla.data.sequence import IGNORE_INDEX, SequenceBuilder, SequenceSpec, SequenceTooLong, collate
from emu3_vla.loss import causal_attention_mask, model_weighted_loss, weighted_next_token_loss, weighted_positions
from emu3_vla.modeling import build_decoder
from emu3_vla.presets import get_preset
from emu3_vla.text_tokenizer import TextTokenizer

LAYOUT = get_preset("tiny").layout
TEXT = TextTokenizer.builtin_for(LAYOUT)

STATIC = np.array([[0, 1, 2], [3, 4, 5]])
WRIST = np.array([[7, 8]])
OBS = [{"static": STATIC, "gripper": WRIST}, {"static": STATIC + 10, "gripper": WRIST + 10}]
ACTIONS = [[5, 1000], [0]]


def test_tiny_layout_control_ids_used_below():
    # The golden sequence below spells ids out; these are the tiny preset's control ids.
    assert LAYOUT.control_ids() == {
        "pad": 2048, "bos": 2254, "eos": 2255, "sov": 2257, "sot": 2256, "eov": 2258,
        "eol": 2251, "eof": 2252, "boa": 2249, "eoa": 2250,
    }  # fmt: skip
    assert LAYOUT.visual_base == 2259 and LAYOUT.fast_to_id(0) == 2047


def test_golden_sequence_token_by_token():
    seq = SequenceBuilder(LAYOUT, TEXT).build("open the drawer", OBS, ACTIONS)
    instr = TEXT.encode("open the drawer")
    meta23, meta12 = TEXT.encode("2*3"), TEXT.encode("1*2")
    expected = [
        2254, *instr,                                                     # [BOS] instruction
        2257, *meta23, 2256, 2259, 2260, 2261, 2251, 2262, 2263, 2264, 2251, 2252, 2258,  # static t
        2257, *meta12, 2256, 2266, 2267, 2251, 2252, 2258,                 # wrist t
        2249, 2042, 1047, 2250,                                           # [BOA] 5 1000 [EOA]
        2257, *meta23, 2256, 2269, 2270, 2271, 2251, 2272, 2273, 2274, 2251, 2252, 2258,  # static t+10
        2257, *meta12, 2256, 2276, 2277, 2251, 2252, 2258,                 # wrist t+10
        2249, 2047, 2250,                                                 # [BOA] 0 [EOA]
    ]  # fmt: skip
    assert seq.input_ids.tolist() == expected
    n_instr = 1 + len(instr)
    vis = (3 + len(meta23) + 9) + (3 + len(meta12) + 4)
    expected_w = [0.0] * n_instr + [0.5] * vis + [1.0] * 4 + [0.5] * vis + [1.0] * 3
    assert seq.loss_weights.tolist() == expected_w
    assert (seq.labels[:n_instr] == IGNORE_INDEX).all() and (seq.labels[n_instr:] == seq.input_ids[n_instr:]).all()


def test_weights_by_token_class():
    seq = SequenceBuilder(LAYOUT, TEXT).build("lift the red block", OBS, ACTIONS)
    ids, w = seq.input_ids, seq.loss_weights
    is_action = LAYOUT.is_action_id(ids) | (ids == LAYOUT.boa_id) | (ids == LAYOUT.eoa_id)
    assert (w[LAYOUT.is_visual_id(ids)] == 0.5).all()
    assert (w[is_action] == 1.0).all()
    assert set(w[~is_action & (w > 0)].tolist()) == {0.5}  # structure tokens of vision blocks
    assert (w[: 1 + len(TEXT.encode("lift the red block"))] == 0).all()


def test_layout_without_eol_and_action_only_ablation():
    spec = SequenceSpec(with_eol=False, vision_weight=0.0)
    seq = SequenceBuilder(LAYOUT, TEXT, spec).build("x", OBS, ACTIONS)
    assert LAYOUT.eol_id not in seq.input_ids.tolist()
    assert set(seq.input_ids[seq.loss_weights > 0].tolist()) == {2249, 2042, 1047, 2250, 2047}


def test_prompt_matches_the_training_prefix():
    builder = SequenceBuilder(LAYOUT, TEXT)
    seq = builder.build("open the drawer", OBS, ACTIONS)
    prompt = builder.prompt("open the drawer", [(OBS[0], ACTIONS[0])], OBS[1])
    assert prompt[-1] == LAYOUT.boa_id
    assert seq.input_ids[: len(prompt)].tolist() == prompt.tolist()
    first = builder.prompt("open the drawer", [], OBS[0])
    assert seq.input_ids[: len(first)].tolist() == first.tolist()


def test_errors_are_explicit():
    builder = SequenceBuilder(LAYOUT, TEXT, SequenceSpec(max_length=20))
    with pytest.raises(SequenceTooLong, match="max_length is 20"):
        builder.build("x", OBS, ACTIONS)
    with pytest.raises(ValueError, match="2 frames"):
        builder.build("x", OBS[:1], ACTIONS)
    with pytest.raises(KeyError, match="gripper"):
        builder.observation_ids({"static": STATIC})


def test_instruction_is_truncated_not_the_window():
    spec = SequenceSpec(max_instruction_tokens=3)
    seq = SequenceBuilder(LAYOUT, TEXT, spec).build("a very long instruction " * 10, OBS, ACTIONS)
    assert (seq.loss_weights[:4] == 0).all() and seq.loss_weights[4] == 0.5


def test_collate_pads_right_with_zero_weight():
    builder = SequenceBuilder(LAYOUT, TEXT)
    a = builder.build("open the drawer", OBS, ACTIONS)
    b = builder.build("open", OBS, ACTIONS)
    batch = collate([a, b], LAYOUT.pad_id, pad_to_multiple_of=8)
    assert batch["input_ids"].shape[1] % 8 == 0 and batch["input_ids"].shape[1] >= len(a)
    assert batch["attention_mask"][1].sum() == len(b)
    assert (batch["input_ids"][1, len(b) :] == LAYOUT.pad_id).all()
    assert (batch["loss_weights"][1, len(b) :] == 0).all() and (batch["labels"][1, len(b) :] == IGNORE_INDEX).all()


def test_weighted_loss_equals_hand_computation():
    torch.manual_seed(0)
    ids = torch.tensor([[5, 2259, 2260, 2249, 2047, 2250], [5, 2261, 2249, 2040, 2250, 2048]])
    weights = torch.tensor([[0, 0.5, 0.5, 1, 1, 1], [0, 0.5, 1, 1, 1, 0]])
    logits = torch.randn(2, 6, LAYOUT.vocab_size)
    parts = weighted_next_token_loss(logits, ids, weights, LAYOUT)
    total, wsum, act, n_act = 0.0, 0.0, 0.0, 0
    for b in range(2):
        for i in range(1, 6):
            w = float(weights[b, i])
            if w == 0:
                continue
            logp = torch.log_softmax(logits[b, i - 1], -1)[ids[b, i]]
            total += -w * float(logp)
            wsum += w
            if int(ids[b, i]) in (2249, 2250) or 1024 <= int(ids[b, i]) < 2048:
                act += -float(logp)
                n_act += 1
    assert parts.loss().item() == pytest.approx(total / wsum, rel=1e-5)
    assert parts.action_ce.item() == pytest.approx(act, rel=1e-5) and int(parts.action_count) == n_act == 6


def test_logits_at_weighted_positions_only_give_the_same_loss():
    """The trainer's fast path: the decoder computes logits only where a weighted token comes next."""
    torch.manual_seed(0)
    ids = torch.tensor([[5, 2259, 2260, 2249, 2047, 2250, 7], [5, 9, 9, 2249, 2040, 2250, 2048]])
    weights = torch.tensor([[0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 1, 1, 0.0]])
    keep = weighted_positions(weights)
    assert keep.tolist() == [2, 3, 4]  # position i predicts token i + 1: union over the batch
    logits = torch.randn(2, 7, LAYOUT.vocab_size)
    full = weighted_next_token_loss(logits, ids, weights, LAYOUT)
    part = weighted_next_token_loss(logits[:, keep], ids, weights, LAYOUT, positions=keep)
    assert part.loss().item() == pytest.approx(full.loss().item(), rel=1e-6)
    assert int(part.action_count) == int(full.action_count) and int(part.action_correct) == int(full.action_correct)
    with pytest.raises(ValueError, match="3 positions"):
        weighted_next_token_loss(logits, ids, weights, LAYOUT, positions=keep)


def test_right_padded_batches_train_without_a_padding_mask():
    right = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert causal_attention_mask(right) is None
    assert causal_attention_mask(torch.ones(2, 3, dtype=torch.long)) is None
    left = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    gapped = torch.tensor([[1, 0, 1, 1]])
    assert causal_attention_mask(left) is left and causal_attention_mask(gapped) is gapped


def _loss_and_grads(batch, mask_given: bool):
    model = build_decoder("tiny", seed=0)
    if mask_given:  # what the trainer did before: the padding mask handed to the decoder
        keep = weighted_positions(batch["loss_weights"])
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
        loss = weighted_next_token_loss(
            logits, batch["input_ids"], batch["loss_weights"], LAYOUT, positions=keep
        ).loss()
    else:
        loss = model_weighted_loss(model, batch, LAYOUT).loss()
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters()}


def test_training_loss_without_the_padding_mask_equals_the_masked_one():
    # Rows of different lengths, so the batch has pads; the causal kernel must give the masked
    # result at every weighted position (and a decoder that ignored causality would not).
    builder = SequenceBuilder(LAYOUT, TEXT, SequenceSpec())
    seqs = [
        builder.build("open the drawer", OBS, ACTIONS),
        builder.build("turn on the led", OBS, [[3, 4, 5, 6, 7], [8, 9, 10]]),
    ]
    batch = collate(seqs, LAYOUT.pad_id)
    assert (batch["attention_mask"] == 0).any()
    masked_loss, masked = _loss_and_grads(batch, mask_given=True)
    loss, grads = _loss_and_grads(batch, mask_given=False)
    torch.testing.assert_close(loss, masked_loss)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, masked[name], rtol=1e-4, atol=1e-6, msg=name)


def test_blind_ablation_keeps_the_layout_and_drops_the_pixels():
    seeing = SequenceBuilder(LAYOUT, TEXT).build("x", OBS, ACTIONS)
    blind = SequenceBuilder(LAYOUT, TEXT, SequenceSpec(blind=True)).build("x", OBS, ACTIONS)
    assert len(blind) == len(seeing) and np.array_equal(blind.loss_weights, seeing.loss_weights)
    visual = LAYOUT.is_visual_id(blind.input_ids)
    assert set(blind.input_ids[visual].tolist()) == {LAYOUT.code_to_id(0)}
    assert np.array_equal(blind.input_ids[~visual], seeing.input_ids[~visual])
