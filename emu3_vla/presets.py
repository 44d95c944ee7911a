"""Named model sizes: decoder and VQ tokenizer configurations that share one token layout.

``emu3-8b`` is the released Emu3 configuration (8.49 B parameters, docs/design.md section 2-3). The
smaller presets keep the architecture and the layout's structure and shrink widths, depths, the
text range and the codebook, so that the same code trains on two CPU cores (``tiny``), on one GPU
in minutes (``small``) or benchmarks a 1-2 B model (``emu3-1b``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from transformers import Emu3TextConfig, Emu3VQVAEConfig

from emu3_vla.vocab import TokenLayout

# All presets below the real model use the shipped 1,024-id BPE plus 1,024 action ids.
PRESET_TEXT_SIZE = 2048


@dataclasses.dataclass(frozen=True)
class ModelPreset:
    """Everything needed to build a decoder + VQ tokenizer pair from scratch."""

    name: str
    layout: TokenLayout
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    rope_theta: float
    attention_dropout: float
    vq: dict[str, Any]
    description: str = ""

    def text_config(self, **overrides: Any) -> Emu3TextConfig:
        """The ``transformers`` decoder config; ``overrides`` win (e.g. attention implementation)."""
        layout = self.layout
        kwargs: dict[str, Any] = {
            "vocab_size": layout.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "rope_parameters": {"rope_type": "default", "rope_theta": self.rope_theta},
            "attention_dropout": self.attention_dropout,
            "pad_token_id": layout.pad_id,
            "bos_token_id": layout.bos_id,
            "eos_token_id": layout.eos_id,
            "tie_word_embeddings": False,
        }
        kwargs.update(overrides)
        return Emu3TextConfig(**kwargs)

    def vq_config(self, **overrides: Any) -> Emu3VQVAEConfig:
        kwargs = {**self.vq, "codebook_size": self.layout.codebook_size, **overrides}
        return Emu3VQVAEConfig(**kwargs)


def _vq(base: int, mult: tuple[int, ...], res: int, attn: tuple[int, ...], embed: int) -> dict[str, Any]:
    # The middle block's attention runs on the deepest feature map, so its width must match it.
    return {
        "embed_dim": embed,
        "latent_channels": embed,
        "base_channels": base,
        "channel_multiplier": list(mult),
        "num_res_blocks": res,
        "attn_resolutions": list(attn),
        "hidden_size": base * mult[-1],
        "num_attention_heads": 1,
        "temporal_downsample_factor": 4,
    }


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in [
        ModelPreset(
            name="tiny",
            layout=TokenLayout(text_size=PRESET_TEXT_SIZE, codebook_size=1024),
            hidden_size=128,
            intermediate_size=352,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_theta=10_000.0,
            attention_dropout=0.0,
            vq=_vq(base=32, mult=(1, 1, 2, 2), res=1, attn=(), embed=4),
            description="~1.6 M-parameter decoder and a small VQ; trains on 2 CPU cores (tests, CPU demo)",
        ),
        ModelPreset(
            name="small",
            layout=TokenLayout(text_size=PRESET_TEXT_SIZE, codebook_size=4096),
            hidden_size=512,
            intermediate_size=1408,
            num_hidden_layers=8,
            num_attention_heads=8,
            num_key_value_heads=4,
            max_position_embeddings=4096,
            rope_theta=10_000.0,
            attention_dropout=0.0,
            vq=_vq(base=64, mult=(1, 2, 2, 4), res=2, attn=(), embed=4),
            description="~30 M-parameter decoder; the calvin34 recipe on one GPU in minutes (bench/gpu_all.sh)",
        ),
        ModelPreset(
            name="emu3-1b",
            layout=TokenLayout.emu3(),
            hidden_size=2048,
            intermediate_size=5632,
            num_hidden_layers=20,
            num_attention_heads=16,
            num_key_value_heads=8,
            max_position_embeddings=9216,
            rope_theta=1_000_000.0,
            attention_dropout=0.1,
            vq=_vq(base=256, mult=(1, 2, 2, 4), res=2, attn=(3,), embed=4),
            description="1.7 B parameters with the real Emu3 vocabulary; training throughput benchmark",
        ),
        ModelPreset(
            name="emu3-8b",
            layout=TokenLayout.emu3(),
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            max_position_embeddings=9216,
            rope_theta=1_000_000.0,
            attention_dropout=0.1,
            vq=_vq(base=256, mult=(1, 2, 2, 4), res=2, attn=(3,), embed=4),
            description="the released Emu3 configuration: 8.49 B parameters, vocabulary 184,622",
        ),
    ]
}


def get_preset(name: str) -> ModelPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(f"unknown model preset {name!r}; choose one of {sorted(PRESETS)}") from None
