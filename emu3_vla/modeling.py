"""Build the Emu3 decoder and VQ tokenizer from a preset, using ``transformers``' own classes.

We never re-implement the network: the decoder is ``transformers.Emu3ForCausalLM`` and the vision
tokenizer ``transformers.Emu3VQVAE``, so weights move freely between this package and the
``Emu3-community/*-hf`` checkpoints. This module only chooses configurations and devices.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Emu3ForCausalLM, Emu3VQVAE

from emu3_vla.presets import ModelPreset, get_preset


def _as_preset(preset: ModelPreset | str) -> ModelPreset:
    return get_preset(preset) if isinstance(preset, str) else preset


def build_decoder(
    preset: ModelPreset | str,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    **config_overrides: Any,
) -> Emu3ForCausalLM:
    """A freshly initialised decoder. ``device="meta"`` builds the structure without allocating it.

    ``config_overrides`` go to :class:`transformers.Emu3TextConfig` (e.g.
    ``attn_implementation="eager"``).
    """
    preset = _as_preset(preset)
    config = preset.text_config(**config_overrides)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        model = Emu3ForCausalLM(config)
    if dtype is not None:
        model = model.to(dtype)
    return model


def build_vq(
    preset: ModelPreset | str,
    *,
    device: str | torch.device | None = None,
    seed: int | None = None,
    **config_overrides: Any,
) -> Emu3VQVAE:
    """A freshly initialised VQ tokenizer (eval mode, as Emu3 ships it frozen)."""
    preset = _as_preset(preset)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device or "cpu"):
        vq = Emu3VQVAE(preset.vq_config(**config_overrides))
    return vq.eval()


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters; works on meta-device models (nothing is allocated)."""
    return sum(p.numel() for p in module.parameters())
