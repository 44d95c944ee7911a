"""Save and load a complete Emu3 model: decoder, VQ tokenizer, token layout and text tokenizer.

Two folder formats load through :meth:`Emu3Bundle.load`:

* **ours** (what :meth:`Emu3Bundle.save` writes; safetensors throughout)::

      emu3_vla.json          format marker, preset name, token layout
      decoder/               Emu3ForCausalLM.save_pretrained (config.json + model.safetensors)
      vq/                    Emu3VQVAE.save_pretrained (optional: a decoder-only bundle has none)
      tokenizer.json         text tokenizer

* **transformers' Emu3** (``Emu3ForConditionalGeneration``, e.g. ``Emu3-community/Emu3-Gen-hf``
  downloaded by the user): its text model becomes the decoder, its ``vqmodel`` the VQ tokenizer
  and its ``vocabulary_map`` the layout (every special id is checked).

Anything missing or unreadable raises :class:`CheckpointError` naming the path and the part.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import Emu3ForCausalLM, Emu3VQVAE

from emu3_vla.modeling import build_decoder, build_vq
from emu3_vla.presets import get_preset
from emu3_vla.text_tokenizer import TextTokenizer
from emu3_vla.vision import VisionTokenizer
from emu3_vla.vocab import TokenLayout

MARKER = "emu3_vla.json"
FORMAT_VERSION = 1


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers draws a progress bar for every weight file it reads or writes ("Loading weights",
    "Writing model shards"); a training run that saves every 500 steps, and every evaluation worker that
    loads a checkpoint, would print them all. Off while we load or save, restored afterwards."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


class CheckpointError(RuntimeError):
    """A checkpoint folder is missing, incomplete or corrupt. The message names path and part."""


@dataclasses.dataclass
class Emu3Bundle:
    """The pieces of an Emu3 model that always travel together."""

    decoder: Emu3ForCausalLM
    vq: Emu3VQVAE | None
    layout: TokenLayout
    text_tokenizer: TextTokenizer
    preset: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    # ------------------------------------------------------------------ build
    @classmethod
    def from_preset(
        cls,
        name: str,
        *,
        seed: int = 0,
        with_vq: bool = True,
        device: str | torch.device = "cpu",
        decoder_overrides: dict[str, Any] | None = None,
    ) -> Emu3Bundle:
        """Random weights of a named preset (the starting point of training from scratch);
        ``decoder_overrides`` change the decoder's shape (e.g. ``hidden_size``, ``num_hidden_layers``)
        while keeping the preset's token layout and VQ tokenizer."""
        preset = get_preset(name)
        decoder = build_decoder(preset, seed=seed, device=device, **dict(decoder_overrides or {}))
        vq = build_vq(preset, seed=seed + 1, device=device) if with_vq else None
        return cls(decoder, vq, preset.layout, TextTokenizer.builtin_for(preset.layout), preset=name)

    def vision_tokenizer(self, views: dict | None = None) -> VisionTokenizer:
        if self.vq is None:
            raise CheckpointError("this model was saved without a VQ tokenizer (no vq/ folder)")
        return VisionTokenizer(self.vq, views)

    # ------------------------------------------------------------------- save
    @quiet_transformers()
    def save(
        self,
        folder: str | Path,
        extra_writer: Callable[[Path], None] | None = None,
        *,
        decoder_state_dict: dict[str, torch.Tensor] | None = None,
        decoder_weights: bool = True,
    ) -> Path:
        """Write the bundle atomically: into a temporary sibling folder, then renamed into place.

        ``extra_writer(tmp_folder)`` may add files (e.g. the action tokenizer) before the rename, so
        that they appear together with the weights or not at all. ``decoder_state_dict`` replaces the
        decoder's own weights (a full state dict gathered from a sharded or adapted model).
        ``decoder_weights=False`` writes only the decoder's config (adapter-only checkpoints, whose
        ``extra_writer`` adds the adapter and a note of the base model)."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            if decoder_weights:
                self.decoder.save_pretrained(tmp / "decoder", safe_serialization=True, state_dict=decoder_state_dict)
            else:
                self.decoder.config.save_pretrained(tmp / "decoder")
            if self.vq is not None:
                self.vq.save_pretrained(tmp / "vq", safe_serialization=True)
            self.text_tokenizer.save(tmp)
            marker = {
                "format": "emu3-vla",
                "version": FORMAT_VERSION,
                "preset": self.preset,
                "builtin_text_tokenizer": self.text_tokenizer.builtin,
                "layout": self.layout.to_dict(),
                "extra": self.extra,
            }
            if extra_writer is not None:
                extra_writer(tmp)
            (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            if folder.exists():
                old = folder.with_name(f".{folder.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(folder, old)
                os.replace(tmp, folder)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return folder

    # ------------------------------------------------------------------- load
    @classmethod
    @quiet_transformers()
    def load(
        cls,
        folder: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        load_vq: bool = True,
    ) -> Emu3Bundle:
        folder = Path(folder)
        if not folder.exists():
            raise CheckpointError(f"checkpoint folder {folder} does not exist")
        if not folder.is_dir():
            raise CheckpointError(f"checkpoint path {folder} is a file, expected a folder")
        if (folder / MARKER).is_file():
            return cls._load_ours(folder, device=device, dtype=dtype, load_vq=load_vq)
        if (folder / "config.json").is_file():
            return cls._load_transformers(folder, device=device, dtype=dtype, load_vq=load_vq)
        raise CheckpointError(
            f"{folder} is not an Emu3 checkpoint: it has neither {MARKER} (emu3-vla format) nor "
            "config.json (transformers Emu3 format)"
        )

    @classmethod
    def _load_ours(cls, folder: Path, *, device: Any, dtype: Any, load_vq: bool) -> Emu3Bundle:
        try:
            marker = json.loads((folder / MARKER).read_text())
            layout = TokenLayout.from_dict(marker["layout"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{folder / MARKER} is unreadable or incomplete: {err}") from err
        decoder = _load_decoder(folder, device, dtype)
        vq = None
        if load_vq and (folder / "vq").exists():
            vq = _load_pretrained(Emu3VQVAE, folder / "vq", device, None).eval()
        try:
            text = TextTokenizer.from_folder(folder, layout, builtin=bool(marker.get("builtin_text_tokenizer")))
        except Exception as err:
            raise CheckpointError(f"text tokenizer in {folder} is missing or corrupt: {err}") from err
        if decoder.config.vocab_size != layout.vocab_size:
            raise CheckpointError(
                f"{folder}: decoder vocabulary {decoder.config.vocab_size} does not match the layout's "
                f"{layout.vocab_size}"
            )
        return cls(decoder, vq, layout, text, preset=marker.get("preset"), extra=marker.get("extra", {}))

    @classmethod
    def _load_transformers(cls, folder: Path, *, device: Any, dtype: Any, load_vq: bool) -> Emu3Bundle:
        from transformers import Emu3ForConditionalGeneration

        try:
            config = json.loads((folder / "config.json").read_text())
        except json.JSONDecodeError as err:
            raise CheckpointError(f"{folder / 'config.json'} is not valid JSON: {err}") from err
        if config.get("model_type") != "emu3":
            raise CheckpointError(
                f"{folder / 'config.json'} has model_type={config.get('model_type')!r}; expected 'emu3' "
                "(an Emu3ForConditionalGeneration checkpoint such as Emu3-community/Emu3-Gen-hf)"
            )
        vocab_map = config.get("vocabulary_map")
        if not vocab_map:
            raise CheckpointError(f"{folder / 'config.json'} has no vocabulary_map")
        try:
            layout = TokenLayout.from_vocabulary_map(vocab_map)
        except ValueError as err:
            raise CheckpointError(f"{folder}: {err}") from err
        _check_weight_files(folder)
        full = Emu3ForConditionalGeneration.from_pretrained(folder, dtype=dtype or "auto", device_map=device)
        with torch.device("meta"):  # a shell: its modules are replaced by the loaded ones below
            decoder = Emu3ForCausalLM(full.config.text_config)
        decoder.model = full.model.text_model
        decoder.lm_head = full.lm_head
        decoder.config = full.config.text_config
        vq = full.model.vqmodel.eval() if load_vq else None
        try:
            text = TextTokenizer.from_folder(folder, layout)
        except FileNotFoundError as err:
            raise CheckpointError(f"{folder}: {err}") from err
        return cls(decoder, vq, layout, text, preset=None, extra={"source": str(folder)})


def _load_decoder(folder: Path, device: Any, dtype: Any) -> Emu3ForCausalLM:
    """The decoder of one of our folders: its weights, or its base model plus a LoRA adapter."""
    from emu3_vla.training.lora import ADAPTER_MARKER, load_adapter_checkpoint

    marker = folder / ADAPTER_MARKER
    if not marker.is_file():
        return _load_pretrained(Emu3ForCausalLM, folder / "decoder", device, dtype)
    base = json.loads(marker.read_text())["base"]
    if base.get("checkpoint"):
        decoder = Emu3Bundle.load(base["checkpoint"], load_vq=False, dtype=dtype).decoder
    elif base.get("preset"):
        decoder = build_decoder(base["preset"], seed=int(base.get("seed", 0)))
    else:
        raise CheckpointError(f"{marker} names no base model (checkpoint or preset)")
    try:
        return load_adapter_checkpoint(folder, decoder).to(device)
    except Exception as err:
        raise CheckpointError(f"could not apply the LoRA adapter in {folder}: {err}") from err


@quiet_transformers()
def load_vq(folder: str | Path, *, device: str | torch.device = "cpu") -> Emu3VQVAE:
    """The VQ tokenizer of a folder written by ``emu3-vla train-vq`` (``vq/``), of an emu3-vla
    checkpoint, or of a transformers Emu3 checkpoint."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"VQ tokenizer folder {folder} does not exist")
    if (folder / "vq").is_dir():
        return _load_pretrained(Emu3VQVAE, folder / "vq", device, None).eval()
    bundle = Emu3Bundle.load(folder, device=device)
    if bundle.vq is None:
        raise CheckpointError(f"{folder} holds no VQ tokenizer")
    return bundle.vq


def _check_weight_files(folder: Path) -> None:
    """Open every safetensors header so a truncated download fails here with its file name."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder} has no *.safetensors weight files")
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as handle:
                handle.keys()
        except Exception as err:
            raise CheckpointError(f"weight file {f} is corrupt or truncated: {err}") from err


def _load_pretrained(cls: Any, folder: Path, device: Any, dtype: Any) -> Any:
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is missing (expected a saved {cls.__name__})")
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}/config.json is missing")
    _check_weight_files(folder)
    try:
        model = cls.from_pretrained(folder, dtype=dtype or torch.float32)
    except Exception as err:
        raise CheckpointError(f"could not load {cls.__name__} from {folder}: {err}") from err
    return model.to(device)
