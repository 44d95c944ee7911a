"""Parameter-efficient fine-tuning: LoRA on the decoder (``peft``) plus trainable action-token rows.

FAST tokens reuse the last 1,024 text ids, whose embeddings in a pretrained Emu3 carry rare-text
meanings; they must move for the model to read and write actions. So besides the LoRA adapters on
the attention and MLP projections, the rows of ``embed_tokens`` and ``lm_head`` that belong to the
action ids, ``[BOA]`` and ``[EOA]`` (and, for a model that reads state, the state-bin ids: the same
reuse of rare text ids) are trained (a gradient mask keeps every other row fixed; those
parameters sit in a no-weight-decay group, so AdamW never moves a row whose gradient is zero).

Two ways to save (``lora.save``):

* ``merged``: the adapters folded into the weights (``W + B A * scale``, computed without touching
  the training model) — a plain checkpoint any policy loads;
* ``adapter``: only the adapter (peft format) and the trainable rows, plus a note of the base model;
  :func:`load_adapter_checkpoint` rebuilds the merged model from the base when loading.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from emu3_vla.vocab import TokenLayout

ADAPTER_MARKER = "lora_adapter.json"
ROWS_FILE = "trainable_rows.safetensors"
ROW_PARAMS = ("model.embed_tokens.weight", "lm_head.weight")


def trainable_row_ids(layout: TokenLayout, *, with_state: bool = False) -> torch.Tensor:
    state = list(layout.state_range) if with_state else []
    return torch.tensor([*state, *layout.action_range, layout.boa_id, layout.eoa_id], dtype=torch.long)


def apply_lora(
    decoder: torch.nn.Module, lora_cfg: Any, layout: TokenLayout, *, with_state: bool = False
) -> torch.nn.Module:
    """Wrap ``decoder`` with LoRA adapters and make the action-token (and state-bin) rows trainable."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=int(lora_cfg.r),
        lora_alpha=int(lora_cfg.alpha),
        lora_dropout=float(lora_cfg.dropout),
        target_modules=list(lora_cfg.target_modules),
        bias="none",
    )
    model = get_peft_model(decoder, config)
    rows = trainable_row_ids(layout, with_state=with_state)
    for name in ROW_PARAMS:
        param = decoder.get_parameter(name)
        mask = torch.zeros(param.shape[0], 1, dtype=param.dtype, device=param.device)
        mask[rows] = 1
        param.requires_grad_(True)
        param.register_hook(lambda grad, m=mask: grad * m)
    return model


def base_decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The wrapped transformers model inside a peft model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The decoder's weights with every adapter folded in; the training model is left untouched."""
    base = base_decoder(model)
    state: dict[str, torch.Tensor] = {}
    lora_layers = {name: mod for name, mod in base.named_modules() if hasattr(mod, "get_delta_weight")}
    for name, tensor in base.state_dict().items():
        if ".lora_" in name:
            continue
        clean = name.replace(".base_layer.", ".")
        state[clean] = tensor.detach().cpu().clone()
    for name, mod in lora_layers.items():
        delta = mod.get_delta_weight(mod.active_adapters[0]).detach().cpu()
        key = f"{name}.weight"
        state[key] = (state[key].float() + delta.float()).to(state[key].dtype)
    return state


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Everything LoRA training changes (adapters and the two row-trainable matrices), for resume."""
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    missing = [n for n in state if n not in params]
    if missing:
        raise KeyError(f"LoRA state has parameters the model lacks: {missing[:3]}")
    with torch.no_grad():
        for name, tensor in state.items():
            params[name].copy_(tensor)


def save_adapter(
    model: torch.nn.Module, folder: Path, layout: TokenLayout, base: dict[str, Any], *, with_state: bool = False
) -> None:
    """Adapter-only checkpoint: peft adapter files, the trainable rows, and where the base comes from."""
    model.save_pretrained(folder / "adapter")
    rows = trainable_row_ids(layout, with_state=with_state)
    decoder = base_decoder(model)
    rows_by_param = {
        n.replace(".", "_"): decoder.get_parameter(n).detach()[rows].cpu().contiguous() for n in ROW_PARAMS
    }
    save_file(rows_by_param, str(folder / ROWS_FILE))
    (folder / ADAPTER_MARKER).write_text(json.dumps({"base": base, "rows": rows.tolist()}, indent=2) + "\n")


def load_adapter_checkpoint(folder: Path, base_model: torch.nn.Module) -> torch.nn.Module:
    """Apply an adapter checkpoint to its base decoder and return the merged plain decoder."""
    from peft import PeftModel

    meta = json.loads((folder / ADAPTER_MARKER).read_text())
    model = PeftModel.from_pretrained(base_model, folder / "adapter")
    merged = model.merge_and_unload()
    rows = torch.tensor(meta["rows"], dtype=torch.long)
    saved = load_file(str(folder / ROWS_FILE))
    with torch.no_grad():
        for name in ROW_PARAMS:
            merged.get_parameter(name)[rows] = saved[name.replace(".", "_")].to(merged.get_parameter(name).dtype)
    return merged
