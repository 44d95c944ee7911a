"""Prompt token layouts of the generation tasks, in Emu3's data format (docs/design.md section 2).

* text-to-image / video: ``[BOS] text [SOV] "h*w" [SOT]`` — the model continues with the grid;
* video extension: the same, followed by the context frames (rows, ``[EOL]``, ``[EOF]`` each) —
  the model continues with the next frame;
* image-to-text: ``[BOS] [SOV] "h*w" [SOT] grid [EOF] [EOV] question`` — the caption / answer comes
  after the image, as in the pretraining samples that put the caption after ``[EOV]``.

The negative (unconditional) prompt for classifier-free guidance has the same layout with the
negative text (empty by default), so both rows continue the same structure.
"""

from __future__ import annotations

import numpy as np

from emu3_vla.text_tokenizer import TextTokenizer
from emu3_vla.vision_block import frame_body, meta_ids, vision_block
from emu3_vla.vocab import TokenLayout


def generation_prompt(
    text: str,
    height: int,
    width: int,
    layout: TokenLayout,
    tokenizer: TextTokenizer,
    *,
    context: np.ndarray | None = None,
    with_eol: bool = True,
) -> list[int]:
    """``[BOS] text [SOV] "h*w" [SOT]`` plus the context frames ``(K, h, w)`` if given."""
    ids = [layout.bos_id, *tokenizer.encode(text), layout.sov_id, *meta_ids(tokenizer, height, width), layout.sot_id]
    if context is not None:
        context = np.asarray(context)
        if context.ndim != 3 or context.shape[1:] != (height, width):
            raise ValueError(f"context frames must be codes (K, {height}, {width}); got shape {context.shape}")
        for frame in context:
            ids.extend(frame_body(frame, layout, with_eol=with_eol).tolist())
    return ids


def image_to_text_prompt(
    codes: np.ndarray,
    question: str,
    layout: TokenLayout,
    tokenizer: TextTokenizer,
    *,
    with_eol: bool = True,
) -> list[int]:
    """``[BOS]`` + the image's vision block + the question text (may be empty)."""
    block = vision_block(np.asarray(codes), layout, tokenizer, with_eol=with_eol)
    return [layout.bos_id, *block.tolist(), *tokenizer.encode(question)]
