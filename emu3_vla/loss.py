"""Weighted next-token cross-entropy, the only training objective of Emu3-VLA.

``loss = sum_i w_i * CE(logits_{i-1}, token_i) / sum_i w_i``: token ``i`` is predicted from
position ``i - 1`` and weighted by ``loss_weights[i]`` (0.5 vision, 1.0 action, 0 instruction and
padding; see :mod:`emu3_vla.data.sequence`). Normalising by the sum of weights (not the token count)
keeps the loss scale independent of how many vision tokens a window happens to have.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F

from emu3_vla.vocab import TokenLayout


@dataclasses.dataclass
class LossParts:
    """Sums (not means) so that gradient-accumulation micro-batches and processes add up exactly."""

    weighted_ce: torch.Tensor  # sum_i w_i * ce_i
    weight: torch.Tensor  # sum_i w_i
    action_ce: torch.Tensor  # sum of ce over weighted action tokens ([BOA], FAST ids, [EOA])
    action_count: torch.Tensor
    action_correct: torch.Tensor  # argmax hits among them

    def loss(self) -> torch.Tensor:
        return self.weighted_ce / self.weight.clamp_min(1e-8)


def action_token_mask(ids: torch.Tensor, layout: TokenLayout) -> torch.Tensor:
    """True on ``[BOA]``, FAST action ids and ``[EOA]``."""
    start, stop = layout.action_range.start, layout.action_range.stop
    return ((ids >= start) & (ids < stop)) | (ids == layout.boa_id) | (ids == layout.eoa_id)


def weighted_positions(loss_weights: torch.Tensor) -> torch.Tensor:
    """Sequence positions whose *next* token carries weight in some row, ``(K,)`` long, ascending.

    Only these positions need logits: with action-only labels that is ~15 % of a two-frame window,
    and skipping the output layer and the softmax everywhere else makes a CPU training step 1.38x
    faster (``bench/train_bench.py`` at the demo's sizes) and saves the ``(B, L, V)`` logits' memory
    (Emu3's vocabulary has 184 k ids). Pass the result as ``logits_to_keep`` to the decoder and as
    ``positions`` to :func:`weighted_next_token_loss`.
    """
    nxt = torch.cat([loss_weights[:, 1:], torch.zeros_like(loss_weights[:, :1])], dim=1)
    return torch.nonzero((nxt > 0).any(dim=0)).flatten()


def causal_attention_mask(attention_mask: torch.Tensor) -> torch.Tensor | None:
    """The mask to pass the decoder for a training batch: ``None`` when every row is right-padded.

    In a causal decoder a real token of a right-padded row attends only to earlier positions, all
    real, so the padding mask changes nothing but the outputs at pad positions, which carry no loss
    weight (gradients equal to ~1e-8). Without it SDPA runs its plain causal kernel instead of
    applying a materialised ``(B, 1, L, L)`` mask: 1.11x per CPU training step at the demo's sizes
    (``bench/train_bench.py``), and the flash kernel on GPU. A left-padded or gapped mask is
    returned as given.
    """
    mask = attention_mask.bool()
    right_padded = bool((mask[:, 1:] <= mask[:, :-1]).all()) and bool(mask[:, 0].all())
    return None if right_padded else attention_mask


def weighted_next_token_loss(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    loss_weights: torch.Tensor,
    layout: TokenLayout,
    positions: torch.Tensor | None = None,
) -> LossParts:
    """Cross-entropy parts for ``logits (B, L, V)``, ``input_ids (B, L)``, ``loss_weights (B, L)``.

    With ``positions`` (from :func:`weighted_positions`) the logits are ``(B, K, V)``, computed only
    at those positions; the result is the same as with full logits, since every other position has
    weight 0. Action statistics (CE, accuracy) are reported for weighted targets that are action
    tokens according to ``layout``, whatever their weight.
    """
    if input_ids.shape != loss_weights.shape:
        raise ValueError(
            f"shape mismatch: input_ids {tuple(input_ids.shape)}, loss_weights {tuple(loss_weights.shape)}"
        )
    expected = input_ids.shape if positions is None else (input_ids.shape[0], positions.numel())
    if tuple(logits.shape[:2]) != tuple(expected):
        raise ValueError(
            f"shape mismatch: logits {tuple(logits.shape)} for input_ids {tuple(input_ids.shape)}"
            + ("" if positions is None else f" and {positions.numel()} positions")
        )
    vocab = logits.shape[-1]
    # Position i predicts token i + 1; the last position predicts nothing (weight 0). Shifting the
    # targets instead of slicing the logits keeps the (B, L, V) logits uncopied (a view reshape),
    # and taking the cross-entropy at every kept position avoids gathering the weighted ones first.
    target = torch.cat([input_ids[:, 1:], input_ids[:, :1]], dim=1)
    w = torch.cat([loss_weights[:, 1:], torch.zeros_like(loss_weights[:, :1])], dim=1).float()
    if positions is not None:
        target, w = target[:, positions], w[:, positions]
    flat = logits.reshape(-1, vocab)
    ce = F.cross_entropy(flat.float(), target.reshape(-1), reduction="none").view_as(w)
    is_action = action_token_mask(target, layout) & (w > 0)
    with torch.no_grad():
        correct = (logits[is_action].argmax(-1) == target[is_action]).sum()
    return LossParts(
        weighted_ce=(ce * w).sum(),
        weight=w.sum(),
        action_ce=ce[is_action].sum().detach(),
        action_count=is_action.sum(),
        action_correct=correct,
    )


def model_weighted_loss(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    layout: TokenLayout,
    forward_context: Callable[[], AbstractContextManager] = nullcontext,
) -> LossParts:
    """One forward pass of a causal LM on a collated batch and its loss parts, with logits only at
    :func:`weighted_positions`: the training step of the trainer, caption tuning and the benchmark.

    ``forward_context`` wraps the forward pass only (e.g. bf16 autocast); the loss is taken in fp32.
    """
    keep = weighted_positions(batch["loss_weights"])
    mask = causal_attention_mask(batch["attention_mask"])
    with forward_context():
        logits = model(input_ids=batch["input_ids"], attention_mask=mask, logits_to_keep=keep).logits
    return weighted_next_token_loss(logits, batch["input_ids"], batch["loss_weights"], layout, positions=keep)
