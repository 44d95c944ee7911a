"""Training throughput of the tiny preset on CPU: tokens/s of our step vs. the stock transformers loss.

    python bench/train_bench.py [--batch 4] [--steps 5] [--static 25 --wrist 10]

All steps run on the same model, batch and optimiser in this process; the ratio says what the
weighted loss (and our loss bookkeeping) costs relative to ``model(labels=...)``. A third row trains
with action-only labels (``loss.vision_weight=0``), where our step computes logits only at the ~10 %
of positions that predict an action token; its baseline is the same stock step (which computes every
position's logits whatever the labels). A fourth row is that action-only step with the batch's
padding mask handed to the decoder, as the trainer did before
``emu3_vla.loss.causal_attention_mask``: right-padded rows need no mask in a causal decoder, and
without one SDPA runs its causal kernel. The sequence is the real layout: two frames of 25x25 static
+ 10x10 wrist codes with EOL, FAST chunks, instruction.
"""

from __future__ import annotations

import contextlib
import json

import torch

from emu3_vla.modeling import build_decoder, count_parameters
from train_common import (
    action_only,
    best_of_rounds,
    ours_step,
    padding_mask_step,
    parse_step_arguments,
    stock_step,
    vla_batch,
)


def main() -> None:
    args, layout = parse_step_arguments(__doc__, batch=4, static=25, wrist=10, rounds=3)
    model = build_decoder(args.preset, seed=0)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = vla_batch(layout, args.batch, args.static, args.wrist)
    tokens = int(batch["attention_mask"].sum())
    none = contextlib.nullcontext
    actions = action_only(batch)
    steps = {
        "stock": stock_step(model, opt, batch, none),
        "ours": ours_step(model, opt, batch, layout, none),
        "ours_action_only": ours_step(model, opt, actions, layout, none),
        "ours_action_only_padding_mask": padding_mask_step(model, opt, actions, layout, none),
    }
    best = best_of_rounds(steps, args.rounds, args.steps)
    t_stock, t_ours, t_actions = best["stock"], best["ours"], best["ours_action_only"]
    t_masked = best["ours_action_only_padding_mask"]
    res = {
        "preset": args.preset,
        "parameters": count_parameters(model),
        "threads": torch.get_num_threads(),
        "tokens_per_step": tokens,
        "seq_len": int(batch["input_ids"].shape[1]),
        "stock_tokens_per_s": tokens / t_stock,
        "ours_tokens_per_s": tokens / t_ours,
        "ours_vs_stock": t_stock / t_ours,
        "ours_action_only_tokens_per_s": tokens / t_actions,
        "ours_action_only_vs_stock": t_stock / t_actions,
        "causal_kernel_vs_padding_mask": t_masked / t_actions,
    }
    print(
        f"{args.preset}: {res['parameters']:,} parameters, batch {args.batch} x {res['seq_len']} tokens, "
        f"{res['threads']} threads"
    )
    print(f"{'step':28s} {'s/step':>8s} {'tokens/s':>10s}")
    print(f"{'stock transformers loss':28s} {t_stock:8.3f} {tokens / t_stock:10.0f}")
    print(f"{'ours (weighted loss)':28s} {t_ours:8.3f} {tokens / t_ours:10.0f}")
    print(f"{'ours, action-only labels':28s} {t_actions:8.3f} {tokens / t_actions:10.0f}")
    print(f"{'  same, padding mask passed':28s} {t_masked:8.3f} {tokens / t_masked:10.0f}")
    print(
        f"ratio ours/stock throughput: {res['ours_vs_stock']:.2f}x; "
        f"action-only labels {res['ours_action_only_vs_stock']:.2f}x; "
        f"causal kernel vs padding mask {res['causal_kernel_vs_padding_mask']:.2f}x"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
