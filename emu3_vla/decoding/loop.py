"""The decoding core: a KV-cached token loop with per-row constraints, a sampler and optional CFG.

One step of :func:`decode`::

    logits  = model(last tokens, KV cache)                 # (R, V), R = B rows, or 2B with CFG
    guided  = uncond + scale * (cond - uncond)             # CFG, on raw logits (B, V)
    masked  = guided where constraint.allowed(state) else -inf
    token   = sampler(masked, per-row generators)          # (B,)
    state   = constraint.advance(state, token)

**CFG convention.** Classifier-free guidance is applied to the *logits* (not log-probabilities),
before the constraint mask and before temperature / top-k / top-p. ``scale = 1`` is plain
conditional decoding. The unconditional prompts (an empty or negative prompt) run as extra rows of
the same batch, so a guided step costs one forward pass; each unconditional row is fed the tokens
its conditional row produced, as in Emu3's reference generation.

**Batching.** Prompts of different lengths are left-padded; the attention mask hides the padding
and position ids count only real tokens (``cumsum(mask) - 1``), so a row's logits do not depend on
how much padding it received: a row batched with others gives the same tokens as the row alone
(up to float rounding in the matrix products). The prompt is prefilled once; every later step
feeds one token per row. Rows that finish keep receiving the pad id (their constraint allows
nothing else) until every row is done or ``max_new_tokens`` is reached.

The loop knows nothing about images, text or actions: that lives in the constraint, so the
policy's action decoding and a faster GPU loop can reuse or replace each part separately.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedModel

from emu3_vla.decoding.constraints import Constraint
from emu3_vla.decoding.sampling import GREEDY, Sampler, row_generators


@dataclasses.dataclass
class StepTrace:
    """What one decoding step saw (recorded only with ``trace=True``; costs ``V`` floats per row)."""

    cond_logits: torch.Tensor  # (B, V) the model's logits for the prompts
    uncond_logits: torch.Tensor | None  # (B, V) for the unconditional prompts, with CFG
    guided_logits: torch.Tensor  # (B, V) after CFG, before the mask
    allowed: torch.Tensor  # (B, V) bool, the constraint's mask
    tokens: torch.Tensor  # (B,) the chosen tokens


@dataclasses.dataclass
class DecodeOutput:
    """Generated tokens of each row (after the prompt), padded with ``pad_id`` after a row finished."""

    tokens: torch.Tensor  # (B, T) int64
    finished: torch.Tensor  # (B,) bool: the constraint reached its end (e.g. EOS was produced)
    lengths: torch.Tensor  # (B,) tokens produced before padding, the stop token included
    trace: list[StepTrace] | None = None

    def row(self, i: int) -> list[int]:
        """Row ``i``'s tokens without the trailing padding."""
        return self.tokens[i, : int(self.lengths[i])].tolist()


def left_pad(
    prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts of any lengths -> ``input_ids``, ``attention_mask`` and ``position_ids``, left-padded."""
    if not prompts:
        raise ValueError("no prompts to decode")
    lengths = [len(p) for p in prompts]
    if min(lengths) == 0:
        raise ValueError(f"prompt {lengths.index(0)} is empty; every prompt needs at least one token (e.g. [BOS])")
    width = max(lengths)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
        mask[i, width - len(p) :] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)


def _cache_argument(model: PreTrainedModel) -> str:
    """transformers renamed ``past_key_values`` to ``cache``; pass whichever this version takes."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def check_context(model: PreTrainedModel, prompt_length: int, max_new_tokens: int) -> None:
    """Raise if prompt + generation would not fit the model's positions."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and prompt_length + max_new_tokens > limit:
        raise ValueError(
            f"the longest prompt ({prompt_length} tokens) plus {max_new_tokens} new tokens exceeds the model's "
            f"context of {limit} positions; use a smaller image/video size, fewer frames or a shorter prompt"
        )


@torch.no_grad()
def decode(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    constraint: Constraint,
    *,
    pad_id: int,
    sampler: Sampler = GREEDY,
    seeds: int | Sequence[int] = 0,
    max_new_tokens: int | None = None,
    guidance_scale: float | None = None,
    uncond_prompts: Sequence[Sequence[int]] | None = None,
    trace: bool = False,
) -> DecodeOutput:
    """Generate after each prompt until its constraint finishes or ``max_new_tokens`` is reached.

    Args:
        model: a causal LM taking ``input_ids``, ``attention_mask``, ``position_ids`` and a KV cache
            (``transformers.Emu3ForCausalLM``). Run in eval mode for the duration of the call.
        prompts: token ids per row; rows may differ in length.
        constraint: allowed-token rule (its state is per row).
        pad_id: filler for left padding and for finished rows.
        sampler: greedy or sampling settings.
        seeds: per-row seeds for sampling (an int ``s`` means ``s + row``); ignored when greedy.
        max_new_tokens: defaults to ``constraint.max_new_tokens`` (required if that is None).
        guidance_scale: CFG scale; needs ``uncond_prompts`` (one per prompt). None: no CFG.
        trace: record each step's logits and mask (:class:`StepTrace`) for inspection.
    """
    batch = len(prompts)
    if max_new_tokens is None:
        max_new_tokens = constraint.max_new_tokens
        if max_new_tokens is None:
            raise ValueError("this constraint is open-ended: pass max_new_tokens")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    guided = guidance_scale is not None
    if guided:
        if uncond_prompts is None or len(uncond_prompts) != batch:
            raise ValueError("classifier-free guidance needs one unconditional prompt per prompt (uncond_prompts)")
    elif uncond_prompts is not None:
        raise ValueError("uncond_prompts were given without guidance_scale")
    rows = list(prompts) + (list(uncond_prompts) if guided else [])

    device = _device_of(model)
    input_ids, attention, positions = left_pad(rows, pad_id, device)
    check_context(model, max(len(r) for r in rows), max_new_tokens)
    generators = None if sampler.greedy else row_generators(seeds, batch, device)
    cache_arg = _cache_argument(model)
    cache = DynamicCache(config=model.config)

    was_training = model.training
    model.eval()
    try:
        logits = model(
            input_ids=input_ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{cache_arg: cache},
        ).logits[:, -1]
        next_position = positions[:, -1] + 1
        state = constraint.initial_state(batch, device)
        lengths = torch.zeros(batch, dtype=torch.long, device=device)
        produced: list[torch.Tensor] = []
        steps: list[StepTrace] | None = [] if trace else None
        for step in range(max_new_tokens):
            logits = logits.float()
            cond, uncond = (logits[:batch], logits[batch:]) if guided else (logits, None)
            mixed = uncond + guidance_scale * (cond - uncond) if guided else cond
            allowed = constraint.allowed(state)
            lengths += ~constraint.finished(state)
            masked = mixed.masked_fill(~allowed, float("-inf"))
            tokens = masked.argmax(dim=-1) if sampler.greedy else sampler(masked, generators)
            produced.append(tokens)
            if steps is not None:
                record = (cond, uncond, mixed, allowed, tokens)
                steps.append(StepTrace(*(None if t is None else t.cpu() for t in record)))
            state = constraint.advance(state, tokens)
            if step == max_new_tokens - 1 or bool(constraint.finished(state).all()):
                break
            feed = tokens.repeat(2) if guided else tokens
            attention = torch.cat([attention, attention.new_ones(len(rows), 1)], dim=1)
            logits = model(
                input_ids=feed[:, None],
                attention_mask=attention,
                position_ids=next_position[:, None],
                use_cache=True,
                **{cache_arg: cache},
            ).logits[:, -1]
            next_position = next_position + 1
    finally:
        model.train(was_training)

    tokens = torch.stack(produced, dim=1)
    finished = constraint.finished(state)
    return DecodeOutput(tokens.cpu(), finished.cpu(), lengths.cpu(), steps)
