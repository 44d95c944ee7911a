"""Vision blocks: a grid of VQ codes as the token run Emu3 reads and writes.

Paper data format (docs/design.md section 2)::

    [SOV] "{h}*{w}" [SOT] row_1 [EOL] row_2 [EOL] ... row_h [EOL] [EOF] [EOV]

A video puts several frames between ``[SOT]`` and ``[EOV]``, each ended by ``[EOF]``. UniVLA's
layout drops the ``[EOL]`` tokens (``with_eol=False``); both are supported everywhere a block is
built or parsed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from emu3_vla.text_tokenizer import TextTokenizer
from emu3_vla.vocab import TokenLayout


class MalformedVisionBlock(ValueError):
    """A token run that should hold a vision block does not have its structure."""


def meta_text(height: int, width: int) -> str:
    """The resolution string Emu3 writes between [SOV] and [SOT]."""
    return f"{height}*{width}"


@lru_cache(maxsize=64)
def _meta_ids(tokenizer: TextTokenizer, height: int, width: int) -> tuple[int, ...]:
    return tuple(tokenizer.encode(meta_text(height, width)))


def meta_ids(tokenizer: TextTokenizer, height: int, width: int) -> list[int]:
    return list(_meta_ids(tokenizer, height, width))


def frame_body(codes: np.ndarray, layout: TokenLayout, *, with_eol: bool = True) -> np.ndarray:
    """One ``(h, w)`` code grid -> its rows (each followed by [EOL] if ``with_eol``) and [EOF]."""
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"a frame is an (h, w) code grid, got shape {codes.shape}")
    ids = layout.code_to_id(codes.astype(np.int64))
    if with_eol:
        ids = np.concatenate([ids, np.full((ids.shape[0], 1), layout.eol_id, dtype=np.int64)], axis=1)
    return np.concatenate([ids.reshape(-1), np.array([layout.eof_id], dtype=np.int64)])


def vision_block(
    frames: np.ndarray,
    layout: TokenLayout,
    tokenizer: TextTokenizer,
    *,
    with_eol: bool = True,
) -> np.ndarray:
    """``(h, w)`` (image) or ``(T, h, w)`` (video) codes -> the complete block's token ids."""
    frames = np.asarray(frames)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3:
        raise ValueError(f"expected codes (h, w) or (T, h, w), got shape {frames.shape}")
    h, w = frames.shape[1:]
    head = np.array([layout.sov_id, *meta_ids(tokenizer, h, w), layout.sot_id], dtype=np.int64)
    body = [frame_body(f, layout, with_eol=with_eol) for f in frames]
    return np.concatenate([head, *body, np.array([layout.eov_id], dtype=np.int64)])


def block_length(height: int, width: int, n_meta: int, *, frames: int = 1, with_eol: bool = True) -> int:
    """Number of tokens :func:`vision_block` produces (for budgeting context length)."""
    per_frame = height * (width + int(with_eol)) + 1
    return 2 + n_meta + frames * per_frame + 1


def parse_frames(
    body: np.ndarray, layout: TokenLayout, height: int, width: int, *, with_eol: bool = True
) -> np.ndarray:
    """The tokens between [SOT] and [EOV] -> ``(T, h, w)`` codes; strict about the structure."""
    body = np.asarray(body, dtype=np.int64)
    per_frame = height * (width + int(with_eol)) + 1
    if body.size == 0 or body.size % per_frame:
        raise MalformedVisionBlock(
            f"{body.size} tokens do not form whole {height}x{width} frames of {per_frame} tokens"
        )
    frames = body.reshape(-1, per_frame)
    if np.any(frames[:, -1] != layout.eof_id):
        raise MalformedVisionBlock("a frame does not end with [EOF]")
    grid = frames[:, :-1].reshape(-1, height, width + int(with_eol))
    if with_eol:
        if np.any(grid[:, :, -1] != layout.eol_id):
            raise MalformedVisionBlock("a row does not end with [EOL]")
        grid = grid[:, :, :-1]
    if not np.all(layout.is_visual_id(grid)):
        raise MalformedVisionBlock("a non-visual token sits inside a row")
    return layout.id_to_code(grid)


def parse_vision_block(
    ids: np.ndarray, layout: TokenLayout, tokenizer: TextTokenizer, *, with_eol: bool = True
) -> np.ndarray:
    """A complete block ``[SOV] meta [SOT] ... [EOV]`` -> ``(T, h, w)`` codes.

    The grid size is read from the meta text, so a block parses without outside knowledge.
    """
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size < 4 or ids[0] != layout.sov_id or ids[-1] != layout.eov_id:
        raise MalformedVisionBlock("a vision block starts with [SOV] and ends with [EOV]")
    sot = np.flatnonzero(ids == layout.sot_id)
    if sot.size != 1:
        raise MalformedVisionBlock(f"expected exactly one [SOT], found {sot.size}")
    meta = tokenizer.decode(ids[1 : sot[0]].tolist())
    try:
        height, width = (int(v) for v in meta.split("*"))
    except ValueError:
        raise MalformedVisionBlock(f"meta text {meta!r} is not 'h*w'") from None
    return parse_frames(ids[sot[0] + 1 : -1], layout, height, width, with_eol=with_eol)
