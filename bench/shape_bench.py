"""What a wider or deeper decoder, or larger views, cost per training step on this CPU.

    python bench/shape_bench.py [--batch 16] [--steps 3] [--rounds 3]

The trainer's step as the demo and the calvin34 recipe run it (action-only labels, bf16 autocast with
attention in fp32 where the CPU computes bf16 natively, else fp32) on real-layout windows, for decoder
shapes within the tiny preset's token layout (``model.decoder`` overrides) and for two view sizes
(96/48 and 128/64 pixels: 12x12 + 6x6 and 16x16 + 8x8 codes). Each row keeps its best round; rows
alternate round by round (``train_common.best_of_rounds``), so load from other processes hits them
alike. The ratio is against the tiny decoder at 96/48, the recipe's default.
"""

from __future__ import annotations

import argparse
import contextlib
import json

import torch

from emu3_vla.modeling import build_decoder, count_parameters
from emu3_vla.presets import get_preset
from emu3_vla.training.precision import SDPA_FP32, autocast_context, cpu_has_native_bf16
from train_common import action_only, best_of_rounds, ours_step, vla_batch

SHAPES = {
    "tiny (128 x 4)": {},
    "192 x 4": {"hidden_size": 192, "intermediate_size": 528, "num_attention_heads": 6, "num_key_value_heads": 2},
    "256 x 4": {"hidden_size": 256, "intermediate_size": 704, "num_attention_heads": 8, "num_key_value_heads": 4},
    "128 x 8": {"num_hidden_layers": 8},
}
VIEWS = {"96/48": (12, 6), "128/64": (16, 8)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=3, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    layout = get_preset("tiny").layout
    native = cpu_has_native_bf16()
    cpu = torch.device("cpu")

    def context():
        return autocast_context("bf16", cpu) if native else contextlib.nullcontext()

    steps, sizes = {}, {}
    for view, (static, wrist) in VIEWS.items():
        batch = action_only(vla_batch(layout, args.batch, static, wrist))
        for shape, overrides in SHAPES.items():
            if view != "96/48" and shape != "tiny (128 x 4)":
                continue  # larger views: the default decoder only
            model = build_decoder("tiny", seed=0, **overrides)
            if native:
                model.set_attn_implementation(SDPA_FP32)
            model.train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            name = f"{shape}, {view}"
            steps[name] = ours_step(model, opt, batch, layout, context)
            sizes[name] = (count_parameters(model), int(batch["input_ids"].shape[1]))
    best = best_of_rounds(steps, args.rounds, args.steps)
    base = best["tiny (128 x 4), 96/48"]
    print(f"batch {args.batch}, {torch.get_num_threads()} threads, bf16 with fp32 attention: {native}")
    print(f"{'decoder, views':26s} {'params':>10s} {'tokens':>7s} {'s/step':>8s} {'vs tiny':>8s}")
    for name, seconds in best.items():
        params, tokens = sizes[name]
        print(f"{name:26s} {params:10,d} {tokens:7d} {seconds:8.3f} {seconds / base:7.2f}x")
    if args.json:
        rows = {n: {"seconds_per_step": s, "params": sizes[n][0], "tokens": sizes[n][1]} for n, s in best.items()}
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
