"""Training throughput of the tiny preset on CPU: tokens/s of our step vs. the stock transformers loss.

    python bench/train_bench.py [--batch 4] [--steps 5] [--static 25 --wrist 10]

Both steps run on the same model, batch and optimiser in this process; the ratio says what the
weighted loss (and our loss bookkeeping) costs relative to ``model(labels=...)``. The sequence is
the real layout: two frames of 25x25 static + 10x10 wrist codes with EOL, FAST chunks, instruction.
"""

from __future__ import annotations

import argparse
import contextlib
import json

import torch

from emu3_vla.modeling import build_decoder, count_parameters
from emu3_vla.presets import get_preset
from train_common import ours_step, stock_step, timed_steps, vla_batch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--static", type=int, default=25, help="static view code grid side (25 = 200x200 pixels)")
    p.add_argument("--wrist", type=int, default=10)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    layout = get_preset(args.preset).layout
    model = build_decoder(args.preset, seed=0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = vla_batch(layout, args.batch, args.static, args.wrist)
    tokens = int(batch["attention_mask"].sum())
    none = contextlib.nullcontext
    # Alternate the two and keep each one's best round, so load from other processes hits both alike.
    stock, ours = stock_step(model, opt, batch, none), ours_step(model, opt, batch, layout, none)
    t_stock = t_ours = float("inf")
    for _ in range(args.rounds):
        t_stock = min(t_stock, timed_steps(stock, args.steps, warmup=1))
        t_ours = min(t_ours, timed_steps(ours, args.steps, warmup=1))
    res = {
        "preset": args.preset,
        "parameters": count_parameters(model),
        "threads": torch.get_num_threads(),
        "tokens_per_step": tokens,
        "seq_len": int(batch["input_ids"].shape[1]),
        "stock_tokens_per_s": tokens / t_stock,
        "ours_tokens_per_s": tokens / t_ours,
        "ours_vs_stock": t_stock / t_ours,
    }
    print(
        f"{args.preset}: {res['parameters']:,} parameters, batch {args.batch} x {res['seq_len']} tokens, "
        f"{res['threads']} threads"
    )
    print(f"{'step':28s} {'s/step':>8s} {'tokens/s':>10s}")
    print(f"{'stock transformers loss':28s} {t_stock:8.3f} {tokens / t_stock:10.0f}")
    print(f"{'ours (weighted loss)':28s} {t_ours:8.3f} {tokens / t_ours:10.0f}")
    print(f"ratio ours/stock throughput: {res['ours_vs_stock']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
