"""One forward pass of the decoder over a static KV cache: tokens at given positions -> head logits.

The cache holds each row's tokens at the slot equal to their position (no left padding: a row's
first token sits in slot 0), so the only mask any query needs is causal in slot space::

    query at position p of row b may read slot s  <=>  s <= p

Slots above a row's current position may hold stale keys (a rejected draft, a padding token of the
prefill, an earlier episode): the mask never lets a query see them, and they are overwritten before
they come into view. That is what makes speculative verification free of rollback and lets prefill
right-pad rows of different lengths.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F

from emu3_vla.decoding.layers import LayerFunctions, make_layer_functions, sdpa_attention, split_attention
from emu3_vla.decoding.weights import ActionHead, DecoderWeights

log = logging.getLogger(__name__)


def _raise_recompile_limit(minimum: int = 64) -> None:
    """Each (batch bucket, tokens per step) shape is one compiled variant of the same three functions."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name) and getattr(dynamo_config, name) < minimum:
            setattr(dynamo_config, name, minimum)


class DecoderForward:
    """Embedding -> layers over the static cache -> final norm -> logits of the allowed ids only."""

    def __init__(self, weights: DecoderWeights, head: ActionHead, *, max_positions: int) -> None:
        self.weights = weights
        self.head = head
        self.cos, self.sin = weights.rope_tables(max_positions)
        self._prefill_fns = make_layer_functions(weights.geometry, weights.act, sdpa_attention)
        self._step_fns: dict[tuple[int, str | None], LayerFunctions] = {}

    def step_functions(self, splits: int, backend: str | None) -> LayerFunctions:
        """Layer functions for decode / verify steps, compiled with ``torch.compile(backend=...)`` unless None."""
        key = (splits, backend)
        if key not in self._step_fns:
            attention = functools.partial(split_attention, splits=splits)
            fns = make_layer_functions(self.weights.geometry, self.weights.act, attention)
            if backend is not None:
                _raise_recompile_limit()
                fns = LayerFunctions(*(torch.compile(f, backend=backend, dynamic=False, fullgraph=True) for f in fns))
            self._step_fns[key] = fns
        return self._step_fns[key]

    def hidden(
        self,
        kv: torch.Tensor,
        ids: torch.Tensor,
        positions: torch.Tensor,
        rows: torch.Tensor,
        *,
        key_len: int,
        step_fns: LayerFunctions | None = None,
    ) -> torch.Tensor:
        """Run ``ids`` (B, T) at ``positions`` (B, T); write their keys/values into ``kv``.

        ``kv``: (layers, 2, B, kv_heads, capacity, D); ``rows``: (B, 1) row indices; queries read
        slots ``[0, key_len)``. ``step_fns`` selects the decode kernels (additive-bias split
        attention); None runs the prefill kernels (SDPA with a boolean mask).
        """
        w, g = self.weights, self.weights.geometry
        x = F.embedding(ids, w.embed)
        cos, sin = self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)
        slots = torch.arange(key_len, device=ids.device)
        visible = (slots.view(1, 1, -1) <= positions.unsqueeze(-1)).repeat(1, g.groups, 1).unsqueeze(1)
        if step_fns is None:
            fns = self._prefill_fns
            mask = visible
        else:
            fns = step_fns
            mask = torch.zeros(visible.shape, dtype=torch.float32, device=ids.device).masked_fill_(
                ~visible, float("-inf")
            )
        delta = torch.zeros_like(x)  # a tensor, not None: one compiled variant serves every layer
        for i, lw in enumerate(w.layers):
            x, q, new_kv = fns.layer_in(x, delta, lw.input_norm, lw.qkv, lw.qkv_bias, cos, sin)
            layer_kv = kv[i]
            layer_kv[:, rows, :, positions] = new_kv  # advanced indices first: (B, T, 2, kv_heads, D)
            x, delta = fns.layer_out(
                x,
                q,
                layer_kv[0, :, :, :key_len],
                layer_kv[1, :, :, :key_len],
                mask,
                lw.o,
                lw.o_bias,
                lw.post_norm,
                lw.gate_up,
                lw.gate_up_bias,
                lw.down,
                lw.down_bias,
            )
        return fns.final(x, delta, w.final_norm)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., hidden) -> (..., A) float32 logits of the head's ids, as ``lm_head(h).float()`` would give."""
        return F.linear(hidden, self.head.weight, self.head.bias).float()
