"""CPU training precision: fp32 (baseline) vs. bf16 autocast, with attention in bf16 or in fp32.

    python bench/precision_bench.py [--batch 16] [--static 12 --wrist 6] [--steps 3] [--rounds 4]

The trainer's action-only step (the CPU demo's recipe) on the demo's window: two frames of 12x12
static + 6x6 wrist codes (96 / 48 pixels) with EOL, FAST chunks, instruction. Rows:

* ``fp32``: the baseline, the model as built (SDPA);
* ``bf16, sdpa``: bf16 autocast everywhere, PyTorch's CPU flash attention then runs in bf16;
* ``bf16, sdpa_fp32``: what ``precision=native`` trains with on a CPU with AMX: projections and
  MLPs in bf16, attention upcast to fp32 (``emu3_vla/training/precision.py``).

Each row keeps its best round (``train_common.best_of_rounds``). On a CPU without AMX bf16 is
emulated and the bf16 rows are slower than fp32.
"""

from __future__ import annotations

import contextlib
import json

import torch

from emu3_vla.modeling import build_decoder
from emu3_vla.training.precision import SDPA_FP32, autocast_context, cpu_has_native_bf16
from train_common import action_only, best_of_rounds, ours_step, parse_step_arguments, vla_batch


def main() -> None:
    args, layout = parse_step_arguments(__doc__, batch=16, static=12, wrist=6, rounds=4)
    batch = action_only(vla_batch(layout, args.batch, args.static, args.wrist))
    cpu = torch.device("cpu")

    def bf16():
        return autocast_context("bf16", cpu)

    steps = {}
    for name, attention, context in (
        ("fp32", "sdpa", contextlib.nullcontext),
        ("bf16, sdpa", "sdpa", bf16),
        ("bf16, sdpa_fp32", SDPA_FP32, bf16),
    ):
        model = build_decoder(args.preset, seed=0)
        model.set_attn_implementation(attention)
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        steps[name] = ours_step(model, opt, batch, layout, context)
    best = best_of_rounds(steps, args.rounds, args.steps)
    base = best["fp32"]
    print(
        f"{args.preset}, batch {args.batch} x {int(batch['input_ids'].shape[1])} tokens, "
        f"{torch.get_num_threads()} threads, native bf16 (AMX): {cpu_has_native_bf16()}"
    )
    print(f"{'precision':20s} {'s/step':>8s} {'vs fp32':>8s}")
    for name, seconds in best.items():
        print(f"{name:20s} {seconds:8.3f} {base / seconds:7.2f}x")
    if args.json:
        res = {"seconds_per_step": best, "speedup_vs_fp32": {k: base / v for k, v in best.items()}}
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
