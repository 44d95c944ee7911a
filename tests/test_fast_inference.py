"""FastDecoder (static cache, fused head, prefix reuse, parallel verification) against plain greedy decoding.

The reference everywhere is :func:`emu3_vla.decoding.decode` with the same constraint: the dynamic
``transformers`` cache, left-padded batches, the full-vocabulary mask. "Exact" means the same tokens,
lengths and stop flags, row for row. Prompts are real policy prompts (SequenceBuilder: instruction,
two frames of static + wrist codes with [EOL], the previous chunk's actions, [BOA]).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from emu3_vla.data.sequence import SequenceBuilder, SequenceSpec
from emu3_vla.decoding import (
    DecoderWeights,
    FastDecoder,
    TokenSetConstraint,
    action_constraint,
    decode,
    parameter_bytes,
    step_read_bytes,
    text_constraint,
)
from emu3_vla.decoding.drafting import lookup_drafts
from emu3_vla.decoding.steps import DecodeBuffers, sequential_step, verify_step
from emu3_vla.decoding.weights import action_head
from emu3_vla.modeling import build_decoder
from emu3_vla.presets import get_preset
from emu3_vla.text_tokenizer import TextTokenizer

LAYOUT = get_preset("tiny").layout
INSTRUCTIONS = ["open the drawer", "turn on the led", "lift the red block from the sliding cabinet", "push"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models():
    return {seed: build_decoder("tiny", seed=seed).eval() for seed in (0, 1, 2)}


@pytest.fixture(scope="module")
def builder():
    return SequenceBuilder(LAYOUT, TextTokenizer.builtin_for(LAYOUT), SequenceSpec(views=("static", "gripper")))


def codes(rng) -> dict[str, np.ndarray]:
    return {"static": rng.integers(0, LAYOUT.codebook_size, (5, 5)), "gripper": rng.integers(0, 1024, (3, 3))}


def policy_prompts(builder, batch: int, seed: int) -> tuple[list[list[int]], list[int]]:
    """Prompts of different lengths: instructions differ, and odd rows carry a previous frame + actions."""
    rng = np.random.default_rng(seed)
    prompts, prefixes = [], []
    for b in range(batch):
        text = INSTRUCTIONS[(b + seed) % len(INSTRUCTIONS)]
        history = [(codes(rng), rng.integers(0, 1024, int(rng.integers(3, 12))))] if b % 2 else []
        prompts.append(builder.prompt(text, history, codes(rng)).tolist())
        prefixes.append(len(builder.instruction_ids(text)))
    return prompts, prefixes


def assert_same(out, ref) -> None:
    assert torch.equal(out.tokens, ref.tokens), f"\n{out.tokens}\n!=\n{ref.tokens}"
    assert torch.equal(out.lengths, ref.lengths)
    assert torch.equal(out.finished, ref.finished)


@pytest.mark.parametrize("mode", ["static", "parallel"])
@pytest.mark.parametrize("batch", [1, 2, 3, 4])
def test_fast_paths_reproduce_plain_greedy_decoding(models, builder, mode, batch):
    constraint = action_constraint(LAYOUT)
    for seed, model in models.items():
        prompts, prefixes = policy_prompts(builder, batch, seed)
        assert batch == 1 or len({len(p) for p in prompts}) > 1  # left padding is exercised
        ref = decode(model, prompts, constraint, pad_id=LAYOUT.pad_id, max_new_tokens=24)
        fast = FastDecoder(model, constraint, pad_id=LAYOUT.pad_id, mode=mode, draft_tokens=5)
        assert_same(fast.decode(prompts, max_new_tokens=24, prefix_lengths=prefixes), ref)
        assert fast.stats.decode_forwards <= 23
        if mode == "static":
            assert fast.stats.decode_forwards == int(ref.lengths.max()) - 1


@pytest.mark.parametrize("mode", ["static", "parallel"])
def test_rows_that_stop_early_match_plain_decoding(models, builder, mode):
    """Few allowed ids make [EOA] likely: rows stop at different steps, before and after min_new_tokens."""
    constraint = TokenSetConstraint(
        [1024, 1500, 2000], LAYOUT.eoa_id, LAYOUT.pad_id, LAYOUT.vocab_size, min_new_tokens=2
    )
    early = late = 0
    for seed, model in models.items():
        prompts, _ = policy_prompts(builder, 4, seed + 10)
        ref = decode(model, prompts, constraint, pad_id=LAYOUT.pad_id, max_new_tokens=20)
        out = FastDecoder(model, constraint, pad_id=LAYOUT.pad_id, mode=mode, draft_tokens=4).decode(
            prompts, max_new_tokens=20
        )
        assert_same(out, ref)
        early += int((ref.finished & (ref.lengths < 20)).sum())
        late += int((~ref.finished).sum())
    assert early > 0 and late > 0  # the check covered both kinds of rows


def test_consecutive_policy_steps_reuse_the_instruction_prefix(models, builder):
    """Three queries of two environments, each prompt carrying the previous query's actions."""
    model, constraint = models[1], action_constraint(LAYOUT)
    fast = {m: FastDecoder(model, constraint, pad_id=LAYOUT.pad_id, mode=m) for m in ("static", "parallel")}
    rng = np.random.default_rng(3)
    texts = INSTRUCTIONS[:2]
    history: list[list] = [[], []]
    for query in range(3):
        current = [codes(rng) for _ in texts]
        prompts = [builder.prompt(t, h, c).tolist() for t, h, c in zip(texts, history, current, strict=True)]
        prefixes = [len(builder.instruction_ids(t)) for t in texts]
        ref = decode(model, prompts, constraint, pad_id=LAYOUT.pad_id, max_new_tokens=16)
        for decoder in fast.values():
            assert_same(decoder.decode(prompts, max_new_tokens=16, prefix_lengths=prefixes), ref)
            assert decoder.stats.reused_prefix_tokens == (sum(prefixes) if query else 0)
        history = [
            [(c, LAYOUT.id_to_fast(np.array(ref.row(b)[:-1] if ref.finished[b] else ref.row(b))))]
            for b, c in enumerate(current)
        ]
    assert fast["static"].prefix_cache.hits == 4 and len(fast["static"].prefix_cache) == 2


def test_longer_prompts_grow_the_session_and_stay_exact(models, builder):
    model, constraint = models[2], action_constraint(LAYOUT)
    fast = FastDecoder(model, constraint, pad_id=LAYOUT.pad_id, mode="parallel", draft_tokens=3)
    short = [[LAYOUT.bos_id, 5, 6, LAYOUT.boa_id]]
    long, _ = policy_prompts(builder, 2, 7)
    for prompts in (short, long, short):
        ref = decode(model, prompts, constraint, pad_id=LAYOUT.pad_id, max_new_tokens=12)
        assert_same(fast.decode(prompts, max_new_tokens=12), ref)
    assert fast._sessions[1].buffers.capacity >= len(short[0]) + 12 + 3
    assert fast._sessions[2].buffers.capacity >= max(map(len, long)) + 12 + 3


def test_batch_buckets_pad_with_rows_that_are_born_done(models, builder):
    """3 environments run in the graphs of 4 (as on CUDA): the extra row changes nothing."""
    model, constraint = models[0], action_constraint(LAYOUT)
    fast = FastDecoder(model, constraint, pad_id=LAYOUT.pad_id, mode="parallel", batch_buckets=True)
    for batch in (3, 1, 4):
        prompts, prefixes = policy_prompts(builder, batch, batch)
        ref = decode(model, prompts, constraint, pad_id=LAYOUT.pad_id, max_new_tokens=10)
        assert_same(fast.decode(prompts, max_new_tokens=10, prefix_lengths=prefixes), ref)
    assert sorted(fast._sessions) == [1, 4] and fast.stats.bucket == 4


@pytest.mark.parametrize("mode", ["static", "parallel"])
def test_a_single_new_token_comes_from_the_prefill(models, mode):
    prompts = [[LAYOUT.bos_id, 3, 4, LAYOUT.boa_id], [LAYOUT.bos_id, LAYOUT.boa_id]]
    constraint = action_constraint(LAYOUT)
    ref = decode(models[1], prompts, constraint, pad_id=LAYOUT.pad_id, max_new_tokens=1)
    fast = FastDecoder(models[1], constraint, pad_id=LAYOUT.pad_id, mode=mode)
    assert_same(fast.decode(prompts, max_new_tokens=1), ref)
    assert fast.stats.decode_forwards == 0


def test_other_token_sets_work_too(models):
    """Nothing is specific to actions: text ids + [EOS] with min_new_tokens, batch of mixed lengths."""
    constraint = text_constraint(LAYOUT, TextTokenizer.builtin_for(LAYOUT), min_new_tokens=3)
    prompts = [[LAYOUT.bos_id, 7, 8, 9], [LAYOUT.bos_id, 300], [LAYOUT.bos_id, *range(40, 70)]]
    ref = decode(models[0], prompts, constraint, pad_id=LAYOUT.pad_id, max_new_tokens=10)
    for mode in ("static", "parallel"):
        out = FastDecoder(models[0], constraint, pad_id=LAYOUT.pad_id, mode=mode).decode(prompts, max_new_tokens=10)
        assert_same(out, ref)


# ------------------------------------------------------------------ device friendliness
SYNCING_OPS = {"aten::_local_scalar_dense", "aten::item", "aten::nonzero", "aten::masked_select", "aten::_unique2"}


class OpRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func._schema.name)
        return func(*args, **(kwargs or {}))


def test_steps_never_read_device_values_on_the_host(models):
    """What CUDA graphs need: no op of a step makes the host wait for a device result."""
    fast = FastDecoder(models[0], action_constraint(LAYOUT), pad_id=LAYOUT.pad_id, mode="parallel", draft_tokens=3)
    fast.decode([[LAYOUT.bos_id, 4, 5, LAYOUT.boa_id]], max_new_tokens=4)
    buffers = DecodeBuffers.allocate(fast.forward, 2, 64, 3)
    fns = fast.forward.step_functions(1, backend=None)
    for step in (sequential_step, verify_step):
        with OpRecorder() as recorder:
            step(buffers, fast.forward, fast.rule, fns)
        assert "aten::mm" in recorder.ops or "aten::addmm" in recorder.ops  # the recorder saw the step's ops
        assert not SYNCING_OPS & set(recorder.ops), SYNCING_OPS & set(recorder.ops)


def test_step_layers_trace_as_whole_graphs(models, builder):
    """torch.compile(fullgraph=True) of the step layers (aot_eager: tracing without code generation)
    succeeds and computes the same tokens: what the CUDA path compiles with Inductor."""
    prompts, prefixes = policy_prompts(builder, 2, 4)
    constraint = action_constraint(LAYOUT)
    ref = decode(models[0], prompts, constraint, pad_id=LAYOUT.pad_id, max_new_tokens=8)
    for mode in ("static", "parallel"):
        fast = FastDecoder(models[0], constraint, pad_id=LAYOUT.pad_id, mode=mode, compile="aot_eager")
        assert_same(fast.decode(prompts, max_new_tokens=8, prefix_lengths=prefixes), ref)
        assert fast.compile_error is None and fast._sessions[2].compiled


# ------------------------------------------------------------------------- drafting
def test_drafts_continue_the_latest_matching_context():
    pad = 0
    history = torch.tensor(
        [
            [9, 1, 2, 3, 4, 9, 1, 2, pad, pad, pad, pad],  # "9 1 2" seen before: continue with 3 4 9
            [5, 6, 5, 6, 5, 6, pad, pad, pad, pad, pad, pad],  # period 2 reaching the present: 5 6 5
            [7, 8, 1, 2, 3, pad, pad, pad, pad, pad, pad, pad],  # 3 never seen before: fallback
        ]
    )
    pos = torch.tensor([7, 5, 4])
    fallback = torch.tensor([[-1, -1, -1]] * 3)
    drafts, found = lookup_drafts(history, pos, fallback)
    assert drafts.tolist() == [[3, 4, 9], [5, 6, 5], [-1, -1, -1]]
    assert found.tolist() == [True, True, False]


def test_drafts_prefer_the_longest_context():
    # the present ends in "4 1"; "1" alone last occurred at slot 5 (then 8), "4 1" at slot 1 (then 2)
    history = torch.tensor([[4, 1, 2, 3, 3, 1, 8, 0, 4, 1]])
    drafts, _ = lookup_drafts(history, torch.tensor([9]), torch.zeros(1, 2, dtype=torch.long), ngram=2)
    assert drafts.tolist() == [[2, 3]]


# ------------------------------------------------------------------------- weights
def test_shared_weights_keep_the_model_exact_and_are_reused():
    model = build_decoder("tiny", seed=4).eval()
    ids = torch.tensor([[LAYOUT.bos_id, 11, 12, 13]])
    before = model(input_ids=ids).logits
    first = DecoderWeights.from_model(model, share=True)
    attn = model.model.layers[0].self_attn
    assert attn.k_proj.weight.untyped_storage().data_ptr() == first.layers[0].qkv.untyped_storage().data_ptr()
    torch.testing.assert_close(model(input_ids=ids).logits, before, rtol=0, atol=0)
    second = DecoderWeights.from_model(model, share=True)
    assert second.layers[0].qkv.data_ptr() == first.layers[0].qkv.data_ptr()  # no second copy
    assert second.layers[3].gate_up.data_ptr() == first.layers[3].gate_up.data_ptr()


def test_step_reads_only_layers_and_allowed_head_rows_of_emu3_8b():
    """Byte accounting of the bandwidth floor, on the meta device (nothing is allocated)."""
    preset = get_preset("emu3-8b")
    model = build_decoder(preset, device="meta", dtype=torch.bfloat16)
    weights = DecoderWeights.from_model(model)
    head = action_head(model, [*preset.layout.action_range, preset.layout.eoa_id], preset.layout.eoa_id)
    h, i, kv = preset.hidden_size, preset.intermediate_size, preset.num_key_value_heads * 128
    per_layer = 2 * h + (h + 2 * kv) * h + h * h + 2 * i * h + i * h
    expected = 2 * (preset.num_hidden_layers * per_layer + h + 1025 * h)
    assert step_read_bytes(weights, head) == expected
    assert round(parameter_bytes(model) / 1e9, 2) == 16.98  # the 17.0 GB
    assert round(expected / 1e9, 2) == 13.97
    assert head.stop_index == 1024


# ------------------------------------------------------------------------- errors
def test_clear_errors(models):
    model, constraint = models[0], action_constraint(LAYOUT)
    with pytest.raises(ValueError, match="unknown decoding mode"):
        FastDecoder(model, constraint, pad_id=LAYOUT.pad_id, mode="beam")
    with pytest.raises(TypeError, match="TokenSetConstraint"):
        from emu3_vla.decoding import GridConstraint

        FastDecoder(model, GridConstraint(LAYOUT, 2, 2), pad_id=LAYOUT.pad_id)
    with pytest.raises(ValueError, match="CUDA"):
        FastDecoder(model, constraint, pad_id=LAYOUT.pad_id, cuda_graphs=True)
    fast = FastDecoder(model, constraint, pad_id=LAYOUT.pad_id)
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        fast.decode([[1], []], max_new_tokens=3)
    with pytest.raises(ValueError, match="open-ended"):
        fast.decode([[1]])
    with pytest.raises(ValueError, match="2 prefix lengths for 1 prompts"):
        fast.decode([[1, 2]], max_new_tokens=3, prefix_lengths=[1, 1])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        fast.decode([[LAYOUT.vocab_size]], max_new_tokens=3)
    with pytest.raises(ValueError, match="exceeds the model's context"):
        fast.decode([[1] * 4090], max_new_tokens=10)
