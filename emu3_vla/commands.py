"""Built-in sub-commands of ``emu3-vla``: ``info`` and ``smoke``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from emu3_vla.cli_args import PRESET_NAMES, add_command


def register_info(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "info",
        run_info,
        help="list model presets and the token layout, or describe a checkpoint",
        description="Print the model presets (sizes counted on the meta device, nothing allocated) "
        "and their token layouts, or the layout and size of a checkpoint folder.",
    )
    p.add_argument("--checkpoint", type=Path, help="an emu3-vla or transformers Emu3 checkpoint folder")


def run_info(args: argparse.Namespace) -> int:
    from emu3_vla.modeling import build_decoder, count_parameters
    from emu3_vla.presets import PRESETS

    if args.checkpoint:
        from emu3_vla.checkpoint import Emu3Bundle

        bundle = Emu3Bundle.load(args.checkpoint)
        print(f"checkpoint {args.checkpoint} (preset {bundle.preset})")
        print(f"  decoder parameters: {count_parameters(bundle.decoder):,}")
        print(f"  layout: {bundle.layout.to_dict()}  control ids: {bundle.layout.control_ids()}")
        vla = bundle.extra.get("vla")
        if vla:
            spec = vla["spec"]
            state = f"state dims {spec.get('state_dims')}" if spec.get("state_dims") else "no state tokens"
            print(f"  VLA: views {vla['views']}, {spec['frames']} frames x {spec['chunk']} steps, {state}")
        return 0
    print(f"{'preset':10s} {'decoder params':>16s} {'vocab':>8s} {'codebook':>8s}  description")
    for name, preset in PRESETS.items():
        n = count_parameters(build_decoder(preset, device="meta"))
        print(
            f"{name:10s} {n:16,d} {preset.layout.vocab_size:8d} {preset.layout.codebook_size:8d}  {preset.description}"
        )
    return 0


def register_smoke(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "smoke",
        run_smoke,
        help="tiny end-to-end check: tokenize a synthetic image and generate a few tokens",
        description="Build a randomly initialised model of a preset, tokenize a synthetic 200x200 "
        "image into VQ codes, decode them back to a PNG, and greedily generate tokens after an "
        "instruction + image prompt. Writes smoke.json and two PNGs to --out.",
    )
    p.add_argument("--preset", default="tiny", choices=PRESET_NAMES, help="model size (default: tiny)")
    p.add_argument("--tokens", type=int, default=20, help="tokens to generate (default: 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/smoke"), help="output folder (default: runs/smoke)")


def synthetic_image(size: int = 200, seed: int = 0):
    """A deterministic test picture ``(size, size, 3) uint8``: a colour gradient with a few solid rectangles."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([x, y, 1 - x], axis=-1) * 200 + 30
    side = max(size // 5, 1)
    for _ in range(4):
        x0, y0 = rng.integers(0, size - side + 1, 2)
        img[y0 : y0 + side, x0 : x0 + side] = rng.integers(0, 256, 3)
    return img.astype(np.uint8)


def run_smoke(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from emu3_vla.checkpoint import Emu3Bundle
    from emu3_vla.vision_block import vision_block

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    bundle = Emu3Bundle.from_preset(args.preset, seed=args.seed)
    vision = bundle.vision_tokenizer()
    layout = bundle.layout
    image = synthetic_image(seed=args.seed)
    codes = vision.encode_view(image[None], "static")[0]
    recon = vision.decode_images(codes[None])[0].numpy()
    Image.fromarray(image).save(args.out / "input.png")
    Image.fromarray(recon).save(args.out / "reconstruction.png")

    instruction = "push the sliding door to the left side"
    prompt = np.concatenate(
        [
            [layout.bos_id],
            bundle.text_tokenizer.encode(instruction),
            vision_block(codes.numpy(), layout, bundle.text_tokenizer),
        ]
    )
    input_ids = torch.as_tensor(prompt, dtype=torch.long)[None]
    torch.manual_seed(args.seed)
    out = bundle.decoder.generate(
        input_ids,
        max_new_tokens=args.tokens,
        min_new_tokens=args.tokens,
        do_sample=False,
        pad_token_id=layout.pad_id,
    )
    new = out[0, input_ids.shape[1] :].tolist()
    report = {
        "preset": args.preset,
        "image_shape": list(image.shape),
        "codes_shape": list(codes.shape),
        "prompt_tokens": int(input_ids.shape[1]),
        "generated": new,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    (args.out / "smoke.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"image {tuple(image.shape)} -> codes {tuple(codes.shape)}; prompt {input_ids.shape[1]} tokens")
    print(f"generated {len(new)} tokens: {new}")
    print(f"wrote {args.out}/smoke.json, input.png, reconstruction.png ({report['seconds']} s)")
    return 0
