"""The generation tasks Emu3 keeps next to the policy: text-to-image, text-to-video, video extension
and image-to-text, each a prompt layout (:mod:`.prompts`) + a constraint (:mod:`.constraints`) run
through the decoding core (:func:`.decoding.decode`).

All functions work on VQ *codes*; turning codes into pixels is the vision tokenizer's job
(``bundle.vision_tokenizer().decode_images(codes)`` / ``decode_video(codes)``). Sizes are given
in codes: an image of ``H x W`` pixels is a grid of ``H/8 x W/8`` codes with Emu3's tokenizer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from emu3_vla.cli_args import DEFAULT_GUIDANCE_SCALE
from emu3_vla.decoding.constraints import GridConstraint, text_constraint
from emu3_vla.decoding.loop import DecodeOutput, decode
from emu3_vla.decoding.sampling import GREEDY, Sampler
from emu3_vla.generation.prompts import generation_prompt, image_to_text_prompt
from emu3_vla.vision_block import parse_frames

if TYPE_CHECKING:
    from emu3_vla.checkpoint import Emu3Bundle

# Emu3's reference text-to-image settings: sampling among the 2,048 most likely codes, CFG scale 3.
DEFAULT_VISUAL_SAMPLER = Sampler(top_k=2048)


@dataclasses.dataclass
class VisualGeneration:
    """Generated grids: ``codes`` is ``(B, T, h, w)`` (T = 1 for images), ``output`` the raw decode."""

    codes: torch.Tensor
    output: DecodeOutput

    @property
    def images(self) -> torch.Tensor:
        """``(B, h, w)``: the first frame of each row (the image, for text-to-image)."""
        return self.codes[:, 0]


@dataclasses.dataclass
class TextGeneration:
    """Generated text per row; ``output.finished[i]`` says whether row ``i`` ended with ``[EOS]``."""

    texts: list[str]
    output: DecodeOutput


def _as_list(prompts: str | Sequence[str]) -> list[str]:
    return [prompts] if isinstance(prompts, str) else list(prompts)


def _guidance(scale: float | None) -> float | None:
    """Scale 1 (or None) means no guidance: skip the unconditional rows instead of mixing with 1."""
    return None if scale is None or scale == 1.0 else float(scale)


def _check_grid(height: int, width: int) -> None:
    if height < 1 or width < 1:
        raise ValueError(f"grid size must be positive, got {height}x{width} codes")


def generate_frames(
    bundle: Emu3Bundle,
    prompts: str | Sequence[str],
    *,
    height: int,
    width: int,
    frames: int = 1,
    context: np.ndarray | torch.Tensor | None = None,
    sampler: Sampler = DEFAULT_VISUAL_SAMPLER,
    seed: int | Sequence[int] = 0,
    guidance_scale: float | None = DEFAULT_GUIDANCE_SCALE,
    negative_prompt: str = "",
    with_eol: bool = True,
    trace: bool = False,
) -> VisualGeneration:
    """Generate ``frames`` new ``height x width`` code frames per prompt, after optional context frames.

    ``context`` is ``(K, h, w)`` (shared by all prompts) or ``(B, K, h, w)``; the returned codes are
    the context followed by the new frames, ``(B, K + frames, h, w)``.
    """
    texts = _as_list(prompts)
    if not texts:
        raise ValueError("no prompts given")
    _check_grid(height, width)
    layout, tok = bundle.layout, bundle.text_tokenizer
    ctx = None if context is None else np.asarray(context, dtype=np.int64)
    if ctx is not None:
        if ctx.ndim == 3:
            ctx = np.broadcast_to(ctx, (len(texts), *ctx.shape))
        if ctx.ndim != 4 or ctx.shape[0] != len(texts) or ctx.shape[2:] != (height, width):
            raise ValueError(
                f"context must be codes (K, {height}, {width}) or ({len(texts)}, K, {height}, {width}); "
                f"got shape {tuple(np.shape(context))}"
            )
        if ctx.size and (ctx.min() < 0 or ctx.max() >= layout.codebook_size):
            raise ValueError(f"context codes must lie in [0, {layout.codebook_size}) (the model's codebook)")

    def build(text: str, row: int) -> list[int]:
        return generation_prompt(
            text, height, width, layout, tok, context=None if ctx is None else ctx[row], with_eol=with_eol
        )

    cond = [build(t, i) for i, t in enumerate(texts)]
    scale = _guidance(guidance_scale)
    uncond = [build(negative_prompt, i) for i in range(len(texts))] if scale is not None else None
    constraint = GridConstraint(layout, height, width, frames=frames, with_eol=with_eol)
    out = decode(
        bundle.decoder,
        cond,
        constraint,
        pad_id=layout.pad_id,
        sampler=sampler,
        seeds=seed,
        guidance_scale=scale,
        uncond_prompts=uncond,
        trace=trace,
    )
    if not bool(out.finished.all()):  # cannot happen: the grid's length is exact
        raise RuntimeError("generation stopped before the grid was complete")
    body = out.tokens[:, : frames * constraint.frame_length].numpy()
    new = np.stack([parse_frames(row, layout, height, width, with_eol=with_eol) for row in body])
    codes = new if ctx is None else np.concatenate([ctx, new], axis=1)
    return VisualGeneration(torch.as_tensor(codes, dtype=torch.long), out)


def text_to_image(
    bundle: Emu3Bundle, prompts: str | Sequence[str], *, height: int, width: int, **kwargs
) -> VisualGeneration:
    """One ``height x width`` code grid per prompt (``.images`` is ``(B, h, w)``); see :func:`generate_frames`."""
    return generate_frames(bundle, prompts, height=height, width=width, frames=1, **kwargs)


def text_to_video(
    bundle: Emu3Bundle, prompts: str | Sequence[str], *, height: int, width: int, frames: int, **kwargs
) -> VisualGeneration:
    """``frames`` code frames per prompt, separated by ``[EOF]``; ``.codes`` is ``(B, frames, h, w)``."""
    return generate_frames(bundle, prompts, height=height, width=width, frames=frames, **kwargs)


def extend_video(
    bundle: Emu3Bundle,
    context: np.ndarray | torch.Tensor,
    prompts: str | Sequence[str],
    *,
    frames: int,
    **kwargs,
) -> VisualGeneration:
    """Continue the context code frames ``(K, h, w)`` by ``frames`` frames; returns context + new."""
    ctx = np.asarray(context)
    if ctx.ndim not in (3, 4) or ctx.shape[-3] < 1:
        raise ValueError(f"context must be at least one code frame (K, h, w); got shape {ctx.shape}")
    height, width = ctx.shape[-2:]
    return generate_frames(bundle, prompts, height=height, width=width, frames=frames, context=ctx, **kwargs)


def image_to_text(
    bundle: Emu3Bundle,
    images: np.ndarray | torch.Tensor | Sequence[np.ndarray],
    question: str | Sequence[str] = "",
    *,
    max_new_tokens: int = 64,
    sampler: Sampler = GREEDY,
    seed: int | Sequence[int] = 0,
    with_eol: bool = True,
    trace: bool = False,
) -> TextGeneration:
    """Caption / answer per image: ``images`` are code grids ``(B, h, w)`` (or a list of ``(h, w)``
    grids of any sizes). Text ids only; each row stops at ``[EOS]`` or after ``max_new_tokens``."""
    grids = [np.asarray(g, dtype=np.int64) for g in images]
    if not grids:
        raise ValueError("no images given")
    for g in grids:
        if g.ndim != 2:
            raise ValueError(f"each image must be an (h, w) code grid, got shape {g.shape}")
    questions = [question] * len(grids) if isinstance(question, str) else list(question)
    if len(questions) != len(grids):
        raise ValueError(f"{len(questions)} questions for {len(grids)} images")
    layout, tok = bundle.layout, bundle.text_tokenizer
    pairs = zip(grids, questions, strict=True)
    prompts = [image_to_text_prompt(g, q, layout, tok, with_eol=with_eol) for g, q in pairs]
    out = decode(
        bundle.decoder,
        prompts,
        text_constraint(layout, tok),
        pad_id=layout.pad_id,
        sampler=sampler,
        seeds=seed,
        max_new_tokens=max_new_tokens,
        trace=trace,
    )
    texts = [tok.decode(out.row(i)).strip() for i in range(len(grids))]
    return TextGeneration(texts, out)


def predict_next_frames(
    vla: Any,
    instruction: str,
    frames: Sequence[Mapping[str, np.ndarray]],
    actions: Sequence[np.ndarray],
    *,
    view: str | None = None,
    sampler: Sampler = GREEDY,
    seed: int = 0,
) -> np.ndarray:
    """A VLA trained with a loss on vision tokens as a world model: for each frame ``k`` (codes per
    view, and the state) and the FAST ids ``actions[k]`` of the chunk executed from it, the model's
    prediction of the first view's codes one chunk later, ``(K, h, w)``.

    The prompt is the training window itself, ``[BOS] instruction``, frame ``k`` and ``[BOA] actions
    [EOA]``, followed by the next frame's block header (``[SOV] "h*w" [SOT]``); the model writes the
    grid under :class:`~emu3_vla.decoding.GridConstraint`. Frames are predicted one step ahead from
    real frames (teacher-forced), so the error does not compound: the result shows what the model
    learned about how the scene moves under the actions.
    """
    from emu3_vla.vision_block import meta_ids

    if len(frames) != len(actions):
        raise ValueError(f"{len(frames)} frames but {len(actions)} action chunks")
    builder = vla.builder()
    layout, tok = vla.layout, vla.bundle.text_tokenizer
    view = view or vla.spec.views[0]
    h, w = np.asarray(frames[0][view]).shape
    head = [layout.sov_id, *meta_ids(tok, h, w), layout.sot_id]
    prompts = [
        [*builder.instruction_ids(instruction), *builder.observation_ids(f), *builder.action_ids(a), *head]
        for f, a in zip(frames, actions, strict=True)
    ]
    constraint = GridConstraint(layout, h, w, frames=1, with_eol=vla.spec.with_eol, closing=(layout.eov_id,))
    out = decode(vla.bundle.decoder, prompts, constraint, pad_id=layout.pad_id, sampler=sampler, seeds=seed)
    body = out.tokens[:, : constraint.frame_length].numpy()
    return np.stack([parse_frames(row, layout, h, w, with_eol=vla.spec.with_eol)[0] for row in body])
