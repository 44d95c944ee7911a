"""Training throughput and MFU of a 1-2 B preset on one GPU (bf16 autocast, AdamW).

    python bench/gpu_train.py                       # emu3-1b (1.7 B) on cuda:0, the issue's measurement
    python bench/gpu_train.py --preset tiny --device cpu --batch 1   # smoke run without a GPU

Prints tokens/s and model FLOPs utilisation (MFU = achieved / peak bf16 FLOP/s) for our training
step and for the stock transformers loss on the same model and batch, with and without gradient
checkpointing, and the ratios between them. FLOPs per token = 6 N (dense weights) + 12 L d s
(attention scores and values, s = sequence length), the usual accounting (Chinchilla / PaLM).
Peak defaults to the H200's dense bf16 figure (989 TFLOP/s); pass --peak-tflops for other chips.
Writes the results as JSON with --json.
"""

from __future__ import annotations

import argparse
import contextlib
import json

import torch

from emu3_vla.modeling import build_decoder, count_parameters
from emu3_vla.presets import get_preset
from train_common import ours_step, stock_step, timed_steps, vla_batch


def flops_per_token(n_params: int, cfg, seq: int) -> float:
    return 6.0 * n_params + 12.0 * cfg.num_hidden_layers * cfg.hidden_size * seq


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="emu3-1b")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, default=8, help="sequences per step (each ~1.6k tokens)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--peak-tflops", type=float, default=989.0)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: use --device cpu --preset tiny for a smoke run")
    preset = get_preset(args.preset)
    model = build_decoder(preset, device=device, seed=0, attn_implementation="sdpa")
    model.train()
    n = count_parameters(model)
    fused = device.type == "cuda"
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1, fused=fused)
    batch = {k: v.to(device) for k, v in vla_batch(preset.layout, args.batch).items()}
    tokens = int(batch["attention_mask"].sum())
    seq = int(batch["input_ids"].shape[1])

    def autocast():
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fpt = flops_per_token(n, model.config, seq)
    rows = {}
    for ckpt in (False, True):
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        for name, step in (
            ("stock", stock_step(model, opt, batch, autocast)),
            ("ours", ours_step(model, opt, batch, preset.layout, autocast)),
        ):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            t = timed_steps(step, args.steps, warmup=2, sync=sync)
            mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
            tps = tokens / t
            rows[f"{name}{'+ckpt' if ckpt else ''}"] = {
                "s_per_step": t,
                "tokens_per_s": tps,
                "mfu": tps * fpt / (args.peak_tflops * 1e12),
                "peak_gib": mem,
            }
    print(f"{args.preset}: {n / 1e9:.2f} B parameters, batch {args.batch} x {seq} tokens on {device}")
    print(f"{'step':14s} {'s/step':>8s} {'tokens/s':>10s} {'MFU':>7s} {'peak GiB':>9s}")
    for name, r in rows.items():
        mfu = 100 * r["mfu"]
        print(f"{name:14s} {r['s_per_step']:8.3f} {r['tokens_per_s']:10.0f} {mfu:6.1f}% {r['peak_gib']:9.1f}")
    for suffix in ("", "+ckpt"):
        ratio = rows[f"ours{suffix}"]["tokens_per_s"] / rows[f"stock{suffix}"]["tokens_per_s"]
        print(f"ours/stock throughput{suffix or ' (no checkpointing)'}: {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"preset": args.preset, "parameters": n, "tokens_per_step": tokens, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
