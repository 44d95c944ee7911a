"""Emu3's other directions: text -> image, text -> video, video extension and image -> text.

The same decoder that acts writes VQ codes and text when asked; these tasks build the prompts
and run :func:`emu3_vla.decoding.decode` under the matching constraint:

* :mod:`.prompts` — Emu3's generation prompts (with and without the visual meta tokens);
* :mod:`.tasks` — :func:`text_to_image`, :func:`text_to_video`, :func:`extend_video`,
  :func:`image_to_text` on VQ codes, with classifier-free guidance;
* :mod:`.caption_eval` / :mod:`.caption_tuning` — does image-to-text name the right robot task,
  before and after a short caption tuning (:func:`evaluate_captions`);
* :mod:`.media` and :mod:`.cli` — PNG / mp4 files and ``emu3-vla generate``.
"""

import importlib
from typing import Any

# Names load on first use (PEP 562): importing emu3_vla.generation.cli for `emu3-vla --help` must not
# import torch and transformers.
_EXPORTS = {
    "CaptionScore": "caption_eval",
    "evaluate_captions": "caption_eval",
    "evaluate_checkpoint": "caption_eval",
    "score_captions": "caption_eval",
    "generation_prompt": "prompts",
    "image_to_text_prompt": "prompts",
    "TextGeneration": "tasks",
    "VisualGeneration": "tasks",
    "extend_video": "tasks",
    "generate_frames": "tasks",
    "predict_next_frames": "tasks",
    "image_to_text": "tasks",
    "text_to_image": "tasks",
    "text_to_video": "tasks",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
