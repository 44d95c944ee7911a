"""Does torch.compile pay for the trainer's CPU step? Eager vs. compiled decoder layers, same process.

    python bench/compile_bench.py [--batch 16] [--static 12 --wrist 6] [--rounds 3]

The step is the calvin34 / demo training step: action-only labels (logits only where an action
token comes next), fp32, AdamW. The compiled variant compiles each decoder layer in place
(``layer.compile(dynamic=True)``: the attention mask and the positions whose logits are kept stay
eager, and one graph serves every padded length). Compile time is reported apart from the steady
step time. Both variants train copies of the same initial weights on the same batch, alternating
round by round, so other load on the machine hits both alike.
"""

from __future__ import annotations

import contextlib
import copy
import json
import time

import torch

from emu3_vla.modeling import build_decoder, count_parameters
from train_common import action_only, best_of_rounds, ours_step, parse_step_arguments, vla_batch


def main() -> None:
    args, layout = parse_step_arguments(__doc__, batch=16, static=12, wrist=6, rounds=3)
    eager = build_decoder(args.preset, seed=0)
    compiled = copy.deepcopy(eager)
    for layer in compiled.model.layers:
        layer.compile(dynamic=True)
    batch = action_only(vla_batch(layout, args.batch, args.static, args.wrist))
    none = contextlib.nullcontext
    steps = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        model.train()
        steps[name] = ours_step(model, torch.optim.AdamW(model.parameters(), lr=1e-4), batch, layout, none)
    t0 = time.perf_counter()
    steps["compiled"]()  # the first call compiles
    compile_s = time.perf_counter() - t0
    best = best_of_rounds(steps, args.rounds, args.steps)
    res = {
        "preset": args.preset,
        "parameters": count_parameters(eager),
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "seq_len": int(batch["input_ids"].shape[1]),
        "eager_s_per_step": best["eager"],
        "compiled_s_per_step": best["compiled"],
        "compiled_vs_eager": best["eager"] / best["compiled"],
        "compile_s": compile_s,
    }
    print(
        f"{args.preset}: {res['parameters']:,} parameters, batch {args.batch} x {res['seq_len']} tokens, "
        f"{res['threads']} threads"
    )
    print(f"eager     {best['eager']:.3f} s/step")
    ratio = res["compiled_vs_eager"]
    print(f"compiled  {best['compiled']:.3f} s/step  ({ratio:.2f}x eager; compiling took {compile_s:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
