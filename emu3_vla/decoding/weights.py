"""The decoder's weights laid out for fast greedy decoding: fused projections and a constraint-sized head.

Why a second layout of the same numbers:

* a decode step at batch 1-8 is a chain of matrix-vector products, so its time is the bytes it reads
  plus a few microseconds per kernel. Reading q/k/v as one ``(q + 2 kv, h)`` matrix and gate/up as
  one ``(2 i, h)`` matrix cuts the weight kernels per layer from 7 to 4, and each streams a longer
  contiguous block;
* greedy action decoding can only ever pick an action id or ``[EOA]``: the other rows of
  ``lm_head`` (183,597 of 184,622 for the 8.49 B model, 1.5 GB) produce logits the mask sets to
  ``-inf``. Computing only the allowed rows *is* the mask, fused into the head. The ids stay in
  ascending order, so the arg-max over the slice breaks ties exactly like the masked arg-max over the
  whole vocabulary.

The input embedding is never read in full (one row per token), so a step reads the layer weights and
the allowed head rows only: 13.97 GB of the 16.98 GB of parameters of ``emu3-8b``
(:func:`step_read_bytes`).

``share=True`` points the model's own ``q/k/v`` and ``gate/up`` parameters at row slices of the
fused tensors, so the model keeps working unchanged (same values) and memory does not double; a
second :class:`DecoderWeights` over the same model then finds the slices adjacent and reuses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import nn

# RoPE variants whose frequencies change with the sequence length; a precomputed table cannot follow them.
_LENGTH_DEPENDENT_ROPE = {"dynamic", "longrope"}


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Shapes and constants of one decoder, read off the model."""

    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    layers: int
    eps: float

    @property
    def groups(self) -> int:
        """Query heads per key/value head (grouped-query attention)."""
        return self.heads // self.kv_heads

    @property
    def q_size(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def scale(self) -> float:
        return self.head_dim**-0.5


@dataclasses.dataclass
class LayerWeights:
    """One decoder layer; biases are None for Emu3 (kept so configs with biases also work)."""

    input_norm: torch.Tensor
    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    o: torch.Tensor
    o_bias: torch.Tensor | None
    post_norm: torch.Tensor
    gate_up: torch.Tensor
    gate_up_bias: torch.Tensor | None
    down: torch.Tensor
    down_bias: torch.Tensor | None


@dataclasses.dataclass
class ActionHead:
    """The rows of ``lm_head`` a :class:`~emu3_vla.decoding.TokenSetConstraint` allows, ascending."""

    ids: torch.Tensor  # (A,) int64 vocabulary ids
    weight: torch.Tensor  # (A, hidden)
    bias: torch.Tensor | None
    stop_index: int | None  # position of the stop id inside ``ids``


@dataclasses.dataclass
class DecoderWeights:
    geometry: Geometry
    layers: list[LayerWeights]
    embed: torch.Tensor  # (V, hidden): the model's own table, gathered one row per token
    final_norm: torch.Tensor
    act: Callable[[torch.Tensor], torch.Tensor]
    inv_freq: torch.Tensor  # (head_dim / 2,) float32, the model's rotary buffer
    rope_scaling: float

    @classmethod
    def from_model(cls, model: nn.Module, *, share: bool = False) -> DecoderWeights:
        """Read an ``Emu3ForCausalLM`` (or a model with the same Llama-style structure)."""
        try:
            body, layers = model.model, model.model.layers
            rotary = body.rotary_emb
        except AttributeError as error:
            raise TypeError(
                "expected a transformers Emu3ForCausalLM (model.model.layers, model.lm_head); "
                f"got {type(model).__name__}"
            ) from error
        rope_type = getattr(rotary, "rope_type", "default")
        if rope_type in _LENGTH_DEPENDENT_ROPE:
            raise NotImplementedError(
                f"rope_type={rope_type!r} changes its frequencies with the sequence length; the fast decoder "
                "precomputes one table. Use decoder='plain' for this model."
            )
        config = model.config
        attn = layers[0].self_attn
        geometry = Geometry(
            hidden=int(config.hidden_size),
            heads=int(config.num_attention_heads),
            kv_heads=int(config.num_key_value_heads),
            head_dim=int(attn.head_dim),
            layers=len(layers),
            eps=float(layers[0].input_layernorm.variance_epsilon),
        )
        fused = []
        for layer in layers:
            a, m = layer.self_attn, layer.mlp
            fused.append(
                LayerWeights(
                    input_norm=layer.input_layernorm.weight.detach(),
                    qkv=_fuse([a.q_proj, a.k_proj, a.v_proj], share),
                    qkv_bias=_fuse_bias([a.q_proj, a.k_proj, a.v_proj]),
                    o=a.o_proj.weight.detach(),
                    o_bias=_bias(a.o_proj),
                    post_norm=layer.post_attention_layernorm.weight.detach(),
                    gate_up=_fuse([m.gate_proj, m.up_proj], share),
                    gate_up_bias=_fuse_bias([m.gate_proj, m.up_proj]),
                    down=m.down_proj.weight.detach(),
                    down_bias=_bias(m.down_proj),
                )
            )
        return cls(
            geometry=geometry,
            layers=fused,
            embed=body.embed_tokens.weight.detach(),
            final_norm=body.norm.weight.detach(),
            act=layers[0].mlp.act_fn,
            inv_freq=rotary.inv_freq.detach().float(),
            rope_scaling=float(getattr(rotary, "attention_scaling", 1.0)),
        )

    @property
    def device(self) -> torch.device:
        return self.embed.device

    @property
    def dtype(self) -> torch.dtype:
        return self.embed.dtype

    def rope_tables(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """cos / sin for positions ``[0, length)``, computed exactly as the model's rotary module does."""
        positions = torch.arange(length, device=self.inv_freq.device).float()
        freqs = positions[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos() * self.rope_scaling, emb.sin() * self.rope_scaling
        return cos.to(self.dtype), sin.to(self.dtype)


def action_head(model: nn.Module, ids: Sequence[int], stop_id: int | None) -> ActionHead:
    """The ``lm_head`` rows of ``ids`` (made ascending), copied once (8 MB for 1,025 rows of 4,096)."""
    head = model.lm_head
    vocab = int(head.weight.shape[0])
    ordered = sorted({int(i) for i in ids})
    if not ordered:
        raise ValueError("the head needs at least one allowed id")
    if ordered[0] < 0 or ordered[-1] >= vocab:
        raise ValueError(f"allowed ids must lie in [0, {vocab}); got [{ordered[0]}, {ordered[-1]}]")
    index = torch.tensor(ordered, dtype=torch.long, device=head.weight.device)
    bias = None if head.bias is None else head.bias.detach()[index].contiguous()
    stop_index = ordered.index(stop_id) if stop_id is not None and stop_id in ordered else None
    return ActionHead(index, head.weight.detach()[index].contiguous(), bias, stop_index)


def parameter_bytes(model: nn.Module) -> int:
    """Bytes of all parameters (the issue's bandwidth floor counts these per token)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())


def step_read_bytes(weights: DecoderWeights, head: ActionHead) -> int:
    """Weight bytes one decode step must read: every layer, the final norm and the head rows."""
    total = weights.final_norm.numel() * weights.final_norm.element_size()
    total += head.weight.numel() * head.weight.element_size()
    for layer in weights.layers:
        for tensor in dataclasses.astuple(layer):
            if tensor is not None:
                total += tensor.numel() * tensor.element_size()
    return total


# ----------------------------------------------------------------------------- fusing
def _bias(linear: nn.Linear) -> torch.Tensor | None:
    return None if linear.bias is None else linear.bias.detach()


def _fuse_bias(linears: Sequence[nn.Linear]) -> torch.Tensor | None:
    if all(linear.bias is None for linear in linears):
        return None
    return torch.cat(
        [
            linear.bias.detach() if linear.bias is not None else linear.weight.new_zeros(linear.weight.shape[0])
            for linear in linears
        ]
    )


def _fuse(linears: Sequence[nn.Linear], share: bool) -> torch.Tensor:
    """Stack the weights of ``linears`` along the output rows (a view if they are already adjacent)."""
    parts = [linear.weight.detach() for linear in linears]
    adjacent = _adjacent_view(parts)
    if adjacent is not None:
        return adjacent
    fused = torch.cat(parts, dim=0)
    if share:
        start = 0
        for linear, part in zip(linears, parts, strict=True):
            linear.weight.data = fused[start : start + part.shape[0]]
            start += part.shape[0]
    return fused


def _adjacent_view(parts: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """One view over ``parts`` if they are consecutive row blocks of one storage (an earlier ``share``)."""
    first = parts[0]
    if first.device.type == "meta" or not all(p.is_contiguous() for p in parts):
        return None
    if any(p.dtype != first.dtype or p.shape[1:] != first.shape[1:] for p in parts):
        return None
    storage = first.untyped_storage().data_ptr()
    offset = first.storage_offset()
    for part in parts:
        if part.untyped_storage().data_ptr() != storage or part.storage_offset() != offset:
            return None
        offset += part.numel()
    rows = sum(p.shape[0] for p in parts)
    return first.as_strided((rows, *first.shape[1:]), first.stride())
