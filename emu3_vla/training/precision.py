"""Mixed precision for training: which dtype the forward pass runs in, and CPU bf16 done right.

On CUDA, bf16 autocast is the standard choice. On a CPU it pays only where the cores multiply bf16
natively (Intel AMX): there the projections and MLPs of the tiny preset run about 2.4x faster, but
PyTorch's CPU flash-attention kernel is *slower* in bf16 than in fp32 (measured on the demo's
473-token windows: attention forward + backward 205 ms in fp32, 268 ms in bf16), which ate most of
the gain (a step 4-11 % faster). :data:`SDPA_FP32` is SDPA with its inputs upcast to fp32 and
autocast off: the projections keep bf16, attention keeps fp32 (a step 1.39x as fast as fp32,
``bench/precision_bench.py``). The name is set on the model for training only; it is not
saved with checkpoints (transformers drops the attention implementation from ``config.json``).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from emu3_vla.training.config import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "native")
SDPA_FP32 = "sdpa_fp32"


def _sdpa_fp32(module, query, key, value, attention_mask, **kwargs):
    """SDPA in fp32 whatever the autocast dtype; the output goes back in the query's dtype."""
    with torch.autocast(device_type=query.device.type, enabled=False):
        out, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )
    return out.to(query.dtype), weights


AttentionInterface.register(SDPA_FP32, _sdpa_fp32)


def cpu_has_native_bf16() -> bool:
    """Whether ``precision=native`` trains in bf16 on this CPU: only with AMX tiles. AVX512-BF16 alone
    (e.g. AMD EPYC Zen 4) runs the calvin34 step 1.45x as fast as fp32, but the one calvin34 model
    trained that way scored well below fp32 ones in closed loop (docs/experiments.md section 12);
    until that is understood, bf16 there is an explicit ``precision=bf16``. With AMX the full calvin34
    recipe trained in bf16 landed within about one standard error of its fp32 figures (section 20:
    SR@1 45.0 % against 43.5 %, 200 chains 0.80 against 0.90)."""
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:  # pragma: no cover - older torch
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16`` for a configured precision.

    ``auto``: bf16 on CUDA, fp32 on CPU (bit-for-bit the classic recipe); ``native``: bf16 where the
    hardware computes it natively (CUDA, CPUs with AMX), else fp32 - what the CPU demo uses.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision in ("fp32", "bf16"):
        return precision
    if device.type == "cuda":
        return "bf16"
    if precision == "native" and device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast_context(precision: str, device: torch.device) -> AbstractContextManager:
    """The forward pass's context for a resolved precision (``fp32`` or ``bf16``)."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return nullcontext()


def prepare_for_precision(model: torch.nn.Module, precision: str, device: torch.device) -> bool:
    """Switch a decoder on SDPA to :data:`SDPA_FP32` when it trains in bf16 on a CPU; True if switched."""
    config = getattr(model, "config", None)
    if precision != "bf16" or device.type != "cpu" or config is None:
        return False
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(SDPA_FP32)
    return True
