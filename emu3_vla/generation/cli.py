"""``emu3-vla generate t2i|t2v|extend|i2t``: the generation tasks from the command line.

Examples::

    emu3-vla generate t2i --preset tiny --prompt "a red block on a table" --size 64x64 --out red.png
    emu3-vla generate t2v --checkpoint runs/demo/checkpoint --prompt-file prompts.txt --frames 3 --out clip.mp4
    emu3-vla generate extend --checkpoint ckpt --video in.mp4 --frames 2 --out longer.mp4
    emu3-vla generate i2t --checkpoint ckpt --image frame.png --question "what task is the robot doing?"

Sizes are in pixels (``HxW``, multiples of the VQ tokenizer's 8x compression); video lengths in
*code frames* (each decodes to 4 video frames). ``--checkpoint`` takes an emu3-vla checkpoint
folder or a transformers Emu3 folder (e.g. a downloaded ``Emu3-Gen-hf``); ``--preset`` builds
random weights (useful to try the plumbing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emu3_vla.cli_args import (
    DEFAULT_GUIDANCE_SCALE,
    PRESET_NAMES,
    add_command,
    add_device_argument,
    add_dtype_argument,
    resolve_device,
)

DEFAULT_TOP_K = 2048


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="text-to-image, text-to-video, video extension and image-to-text with an Emu3 model",
        description=__doc__,
    )
    tasks = parser.add_subparsers(dest="task", metavar="TASK", required=True)

    t2i = add_command(tasks, "t2i", run_t2i, help="text -> PNG image", description="Generate one PNG per prompt.")
    _model_args(t2i)
    _prompt_args(t2i, required=True)
    _visual_args(t2i, default_out="runs/generate/t2i.png")

    t2v = add_command(tasks, "t2v", run_t2v, help="text -> mp4 video", description="Generate one mp4 per prompt.")
    _model_args(t2v)
    _prompt_args(t2v, required=True)
    _visual_args(t2v, default_out="runs/generate/t2v.mp4")
    _video_args(t2v)

    ext = add_command(
        tasks,
        "extend",
        run_extend,
        help="video -> longer video",
        description="Encode a video's frames to codes and continue it by --frames code frames.",
    )
    _model_args(ext)
    _prompt_args(ext, required=False)
    _visual_args(ext, default_out="runs/generate/extend.mp4", size_default=None)
    _video_args(ext)
    ext.add_argument("--video", type=Path, required=True, help="the clip to continue (any format PyAV reads)")
    ext.add_argument(
        "--context-frames",
        type=int,
        help="code frames of context taken from the start of the clip (4 video frames each; default: all whole ones)",
    )

    i2t = add_command(
        tasks, "i2t", run_i2t, help="image -> text", description="Caption an image or answer a question about it."
    )
    _model_args(i2t)
    i2t.add_argument("--image", type=Path, required=True, help="input image (PNG, JPEG, ...)")
    i2t.add_argument("--question", default="", help="text after the image, e.g. 'what task is the robot doing?'")
    i2t.add_argument("--size", type=_size, help="resize the image to HxW pixels first (default: keep its size)")
    i2t.add_argument("--max-new-tokens", type=int, default=64, help="stop after this many tokens (default: 64)")
    _sampling_args(i2t, default_decoding="greedy", default_top_k=None)
    i2t.add_argument("--out", type=Path, help="also write the text to this file")


# ------------------------------------------------------------------ arguments
def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not HxW, e.g. 200x200") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return h, w


def _model_args(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="emu3-vla or transformers Emu3 checkpoint folder")
    src.add_argument("--preset", choices=PRESET_NAMES, help="random weights of a model preset (e.g. tiny)")
    add_device_argument(p, default="auto")
    add_dtype_argument(p)
    p.add_argument("--seed", type=int, default=0, help="sampling seed; prompt i uses seed + i (default: 0)")


def _prompt_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--prompt", help="the text prompt")
    src.add_argument("--prompt-file", type=Path, help="UTF-8 file, one prompt per line (one output each)")
    p.add_argument("--negative-prompt", default="", help="unconditional prompt for CFG (default: empty)")
    p.add_argument(
        "--cfg",
        type=float,
        default=DEFAULT_GUIDANCE_SCALE,
        help=f"classifier-free guidance scale on the logits; 1 disables it (default: {DEFAULT_GUIDANCE_SCALE})",
    )


def _sampling_args(p: argparse.ArgumentParser, *, default_decoding: str, default_top_k: int | None) -> None:
    p.add_argument("--decoding", choices=["sample", "greedy"], default=default_decoding, help="(default: %(default)s)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    p.add_argument(
        "--top-k", type=int, default=default_top_k, help="sample among the k likeliest (default: %(default)s)"
    )
    p.add_argument("--top-p", type=float, help="nucleus sampling threshold (default: off)")


def _visual_args(p: argparse.ArgumentParser, *, default_out: str, size_default: tuple[int, int] | None = (200, 200)):
    what = "output size" if size_default else "resize the clip to HxW pixels first (default: keep its size)"
    p.add_argument(
        "--size", type=_size, default=size_default, help=f"{what}, HxW pixels (default: {size_default or 'clip'})"
    )
    _sampling_args(p, default_decoding="sample", default_top_k=DEFAULT_TOP_K)
    p.add_argument("--out", type=Path, default=Path(default_out), help="output file (default: %(default)s)")
    p.add_argument("--save-codes", action="store_true", help="also write the generated codes as <out>.codes.npy")


def _video_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=2, help="code frames to generate, 4 video frames each (default: 2)")
    p.add_argument("--fps", type=float, default=8.0, help="frame rate of the written mp4 (default: 8)")


# --------------------------------------------------------------------- helpers
def _load(args: argparse.Namespace, *, need_vq: bool = True):
    import torch

    from emu3_vla.checkpoint import CheckpointError, Emu3Bundle

    device = resolve_device(args.device)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    if args.checkpoint is not None:
        bundle = Emu3Bundle.load(args.checkpoint, device=device, dtype=dtype)
    else:
        bundle = Emu3Bundle.from_preset(args.preset, seed=0, device=device)
        if dtype is not None:
            bundle.decoder.to(dtype)
    if need_vq:
        if bundle.vq is None:
            raise CheckpointError(f"{args.checkpoint} has no VQ tokenizer (vq/ folder), so images cannot be made")
        vq_codes = int(bundle.vq.config.codebook_size)
        if vq_codes != bundle.layout.codebook_size:
            raise CheckpointError(
                f"the VQ tokenizer has {vq_codes} codes but the decoder's vocabulary has "
                f"{bundle.layout.codebook_size} visual tokens; they come from different models"
            )
    return bundle


def _code_grid(bundle, size: tuple[int, int]) -> tuple[int, int]:
    """Pixels -> code grid, with a clear error if the size does not fit the tokenizer."""
    factor = bundle.vision_tokenizer().spatial_factor
    h, w = size
    if h % factor or w % factor:
        raise ValueError(
            f"size {h}x{w} is not a multiple of the VQ tokenizer's {factor}x compression; "
            f"try {max(factor, round(h / factor) * factor)}x{max(factor, round(w / factor) * factor)}"
        )
    return h // factor, w // factor


def read_prompts(args: argparse.Namespace) -> list[str]:
    """``--prompt`` or the non-blank lines of ``--prompt-file``; empty extension prompt allowed."""
    if getattr(args, "prompt_file", None) is not None:
        path = args.prompt_file
        if not path.is_file():
            raise FileNotFoundError(f"prompt file {path} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"prompt file {path} is not UTF-8 text: {err}") from err
        prompts = [line.strip() for line in text.splitlines() if line.strip()]
        if not prompts:
            raise ValueError(f"prompt file {path} has no prompts (one prompt per non-blank line)")
        return prompts
    return [args.prompt or ""]


def _sampler(args: argparse.Namespace):
    from emu3_vla.decoding.sampling import Sampler

    if args.decoding == "greedy":
        return Sampler(greedy=True)
    return Sampler(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)


def _outputs(out: Path, count: int) -> list[Path]:
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}_{i:03d}{out.suffix}") for i in range(count)]


def _generation_kwargs(args: argparse.Namespace) -> dict:
    return {
        "sampler": _sampler(args),
        "seed": args.seed,
        "guidance_scale": args.cfg,
        "negative_prompt": args.negative_prompt,
    }


def _save_codes(args: argparse.Namespace, path: Path, codes) -> None:
    import numpy as np

    if args.save_codes:
        np.save(path.with_name(path.name + ".codes.npy"), codes.numpy())


# -------------------------------------------------------------------- commands
def run_t2i(args: argparse.Namespace) -> int:
    from emu3_vla.generation.media import write_png

    prompts = read_prompts(args)
    bundle = _load(args)
    h, w = _code_grid(bundle, args.size)
    from emu3_vla.generation.tasks import text_to_image

    result = text_to_image(bundle, prompts, height=h, width=w, **_generation_kwargs(args))
    images = bundle.vision_tokenizer().decode_images(result.images).numpy()
    for path, image, codes in zip(_outputs(args.out, len(prompts)), images, result.images, strict=True):
        write_png(image, path)
        _save_codes(args, path, codes)
        print(f"wrote {path} ({image.shape[0]}x{image.shape[1]}, {h}x{w} codes)")
    return 0


def _write_videos(args, bundle, codes) -> None:
    from emu3_vla.generation.media import write_mp4

    vision = bundle.vision_tokenizer()
    for path, clip_codes in zip(_outputs(args.out, codes.shape[0]), codes, strict=True):
        frames = vision.decode_video(clip_codes).numpy()
        write_mp4(frames, path, fps=args.fps)
        _save_codes(args, path, clip_codes)
        print(f"wrote {path} ({frames.shape[0]} frames of {frames.shape[1]}x{frames.shape[2]})")


def run_t2v(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    prompts = read_prompts(args)
    bundle = _load(args)
    h, w = _code_grid(bundle, args.size)
    from emu3_vla.generation.tasks import text_to_video

    result = text_to_video(bundle, prompts, height=h, width=w, frames=args.frames, **_generation_kwargs(args))
    _write_videos(args, bundle, result.codes)
    return 0


def run_extend(args: argparse.Namespace) -> int:
    from emu3_vla.generation.media import read_video

    if args.frames < 1:
        raise ValueError(f"--frames must be >= 1, got {args.frames}")
    prompts = read_prompts(args)
    bundle = _load(args)
    vision = bundle.vision_tokenizer()
    clip = read_video(args.video, size=args.size)
    per_code = vision.temporal_factor
    available = clip.shape[0] // per_code
    k = available if args.context_frames is None else args.context_frames
    if available < 1:
        raise ValueError(
            f"{args.video} has {clip.shape[0]} frames; extension needs at least {per_code} (one code frame)"
        )
    if not 1 <= k <= available:
        raise ValueError(f"--context-frames must lie in [1, {available}] for {args.video} ({clip.shape[0]} frames)")
    _code_grid(bundle, clip.shape[1:3])
    context = vision.encode_video(clip[: k * per_code])
    from emu3_vla.generation.tasks import extend_video

    result = extend_video(bundle, context, prompts, frames=args.frames, **_generation_kwargs(args))
    _write_videos(args, bundle, result.codes)
    return 0


def run_i2t(args: argparse.Namespace) -> int:
    from emu3_vla.generation.media import read_image

    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    bundle = _load(args)
    image = read_image(args.image, size=args.size)
    _code_grid(bundle, image.shape[:2])
    codes = bundle.vision_tokenizer().encode_images(image[None])
    from emu3_vla.generation.tasks import image_to_text

    result = image_to_text(
        bundle, codes, args.question, max_new_tokens=args.max_new_tokens, sampler=_sampler(args), seed=args.seed
    )
    text = result.texts[0]
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")
    stop = "EOS" if bool(result.output.finished[0]) else f"max_new_tokens={args.max_new_tokens}"
    print(text)
    print(json.dumps({"tokens": int(result.output.lengths[0]), "stopped_by": stop}), file=sys.stderr)
    return 0
