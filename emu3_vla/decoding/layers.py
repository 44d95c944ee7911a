"""The decoder layer as two plain tensor functions, the same math as ``transformers``' Emu3 layer.

A layer is split where the KV cache is written::

    layer_in : x (+ previous MLP output) -> RMSNorm -> fused qkv product -> RoPE -> (queries, new keys/values)
    (the caller writes the new keys/values into the static cache at each row's positions)
    layer_out: attention over the cache -> o_proj + residual -> RMSNorm -> gate_up -> act * up -> down

Both take only tensors (the weights are arguments, not attributes), so one ``torch.compile`` of each
serves all layers, and the cache write stays an eager in-place ``index_put_`` that a CUDA graph
records as it is.

Grouped-query attention without copying keys: query head ``h = kv * G + g`` reads key head ``kv``
(as ``repeat_kv`` in transformers), so the queries are regrouped to ``(B, kv_heads, G * T, D)``
and each key/value head is read once. Two attention kernels, one function:

* :func:`sdpa_attention` (prefill, many queries): ``scaled_dot_product_attention`` with a boolean mask;
* :func:`split_attention` (decode / verify, a few queries): scores against every cache slot, softmax,
  then ``P @ V`` with the key axis cut into ``splits`` chunks that run in parallel and are summed.
  A fused attention kernel parallelises over (batch, heads, query blocks) only, which for one query
  and 8 key/value heads leaves all but 8 of 132 multiprocessors idle while it reads the cache.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from emu3_vla.decoding.weights import Geometry

Attention = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Emu3RMSNorm: normalise in float32, scale in the model's dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding in transformers' ``rotate_half`` convention (halves, not interleaved pairs)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def sdpa_attention(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, visible: torch.Tensor, scale: float):
    """``visible``: (B, 1, G*T, S) bool."""
    return F.scaled_dot_product_attention(q, keys, values, attn_mask=visible, scale=scale)


def split_attention(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor, scale: float, splits: int = 1
) -> torch.Tensor:
    """``bias``: (B, 1, G*T, S) float32, 0 where visible and -inf elsewhere; ``S`` divisible by ``splits``."""
    scores = torch.matmul(q, keys.transpose(-1, -2)).float() * scale + bias
    probs = torch.softmax(scores, dim=-1).to(values.dtype)
    if splits == 1:
        return torch.matmul(probs, values)
    batch, kv_heads, queries, slots = probs.shape
    chunk = slots // splits
    probs = probs.view(batch, kv_heads, queries, splits, chunk).transpose(2, 3)
    parts = torch.matmul(probs, values.view(batch, kv_heads, splits, chunk, values.shape[-1]))
    return parts.float().sum(dim=2).to(values.dtype)


class LayerFunctions(NamedTuple):
    layer_in: Callable
    layer_out: Callable
    final: Callable


def make_layer_functions(geometry: Geometry, act: Callable, attention: Callable) -> LayerFunctions:
    """The layer math closed over the shapes; ``attention(q, keys, values, mask, scale)``.

    Each layer's closing residual add is deferred to the next layer's input (``delta``), where a
    compiler fuses it into the RMSNorm instead of spending a kernel on it; ``final`` adds the last
    one and applies the final norm.
    """
    g = geometry

    def layer_in(x, delta, norm, qkv, qkv_bias, cos, sin):
        """x, delta (B, T, hidden); cos/sin (B, 1, T, D) -> x + delta, q (B, kv_heads, G*T, D),
        new keys/values (B, T, 2, kv_heads, D)."""
        x = x + delta
        batch, length, _ = x.shape
        fused = F.linear(rms_norm(x, norm, g.eps), qkv, qkv_bias)
        q, k, v = fused.split((g.q_size, g.kv_size, g.kv_size), dim=-1)
        q = rotate(q.view(batch, length, g.heads, g.head_dim).transpose(1, 2), cos, sin)
        k = rotate(k.view(batch, length, g.kv_heads, g.head_dim).transpose(1, 2), cos, sin)
        v = v.view(batch, length, g.kv_heads, g.head_dim)
        q = q.reshape(batch, g.kv_heads, g.groups * length, g.head_dim)
        return x, q, torch.stack((k.transpose(1, 2), v), dim=2)

    def layer_out(x, q, keys, values, mask, o, o_bias, norm, gate_up, gate_up_bias, down, down_bias):
        """-> (x after attention, the MLP's output still to be added)."""
        batch, length, _ = x.shape
        a = attention(q, keys, values, mask, g.scale)
        a = a.reshape(batch, g.heads, length, g.head_dim).transpose(1, 2).reshape(batch, length, g.q_size)
        x = x + F.linear(a, o, o_bias)
        gate, up = F.linear(rms_norm(x, norm, g.eps), gate_up, gate_up_bias).chunk(2, dim=-1)
        return x, F.linear(act(gate) * up, down, down_bias)

    def final(x, delta, norm):
        return rms_norm(x + delta, norm, g.eps)

    return LayerFunctions(layer_in, layer_out, final)
