"""A trained vision-language-action model: everything a policy needs, saved in one folder.

On top of an :class:`~emu3_vla.checkpoint.Emu3Bundle` (decoder, VQ tokenizer, layout, text
tokenizer) a VLA checkpoint carries the action tokenizer it was trained with (``action_tokenizer/``)
and the sequence settings (camera views and their sizes, frames per window, chunk length, vision
block format) under ``extra["vla"]`` in ``emu3_vla.json``. Loading it gives back exactly the
token layout the model was trained on, so a policy cannot silently disagree with training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from action_tokenizer import load_action_tokenizer
from emu3_vla.checkpoint import CheckpointError, Emu3Bundle
from emu3_vla.data.sequence import SequenceBuilder, SequenceSpec
from emu3_vla.vision import ViewSpec, VisionTokenizer

ACTION_TOKENIZER_DIR = "action_tokenizer"


@dataclasses.dataclass
class VLAModel:
    bundle: Emu3Bundle
    action_tokenizer: Any  # action_tokenizer.ActionTokenizer (FAST or binning)
    spec: SequenceSpec
    views: dict[str, ViewSpec]

    def __post_init__(self) -> None:
        missing = [v for v in self.spec.views if v not in self.views]
        if missing:
            raise ValueError(f"sequence views {missing} have no size in views {sorted(self.views)}")
        vocab = int(self.action_tokenizer.vocab_size)
        if vocab > self.bundle.layout.action_vocab_size:
            raise ValueError(
                f"the action tokenizer has {vocab} ids but the layout reserves {self.bundle.layout.action_vocab_size}"
            )

    @property
    def layout(self):
        return self.bundle.layout

    def builder(self) -> SequenceBuilder:
        return SequenceBuilder(self.bundle.layout, self.bundle.text_tokenizer, self.spec)

    def vision(self) -> VisionTokenizer:
        return self.bundle.vision_tokenizer(self.views)

    def metadata(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "views": {name: [v.height, v.width] for name, v in self.views.items()},
            "action_dim": self.action_tokenizer.action_dim,
        }

    def save(
        self,
        folder: str | Path,
        *,
        decoder_state_dict: dict[str, torch.Tensor] | None = None,
        adapter_writer: Callable[[Path], None] | None = None,
    ) -> Path:
        """Write the VLA checkpoint. With ``adapter_writer`` the decoder's weights are left out and the
        writer adds a LoRA adapter and its base (see :mod:`emu3_vla.training.lora`)."""
        self.bundle.extra = {**self.bundle.extra, "vla": self.metadata()}

        def write_extra(tmp: Path) -> None:
            self.action_tokenizer.save(tmp / ACTION_TOKENIZER_DIR)
            if adapter_writer is not None:
                adapter_writer(tmp)

        return self.bundle.save(
            folder,
            extra_writer=write_extra,
            decoder_state_dict=decoder_state_dict,
            decoder_weights=adapter_writer is None,
        )

    @classmethod
    def load(
        cls, folder: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> VLAModel:
        bundle = Emu3Bundle.load(folder, device=device, dtype=dtype)
        meta = bundle.extra.get("vla")
        if meta is None:
            raise CheckpointError(
                f"{folder} is an Emu3 model but not a trained VLA (no 'vla' settings in emu3_vla.json); "
                "train one with `emu3-vla train`"
            )
        tok_dir = Path(folder) / ACTION_TOKENIZER_DIR
        try:
            action_tokenizer = load_action_tokenizer(tok_dir)
        except (FileNotFoundError, ValueError) as err:
            raise CheckpointError(f"action tokenizer of {folder} is missing or unreadable: {err}") from err
        views = {name: ViewSpec(name, int(h), int(w)) for name, (h, w) in meta["views"].items()}
        return cls(bundle, action_tokenizer, SequenceSpec.from_dict(meta["spec"]), views)
