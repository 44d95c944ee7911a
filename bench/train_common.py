"""Shared pieces of the training benchmarks: realistic VLA batches and timed training steps."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from emu3_vla.data.sequence import SequenceBuilder, SequenceSpec, collate
from emu3_vla.loss import model_weighted_loss, weighted_next_token_loss, weighted_positions
from emu3_vla.presets import get_preset
from emu3_vla.text_tokenizer import TextTokenizer


def vla_batch(layout, batch: int, static: int = 25, wrist: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of real-layout windows (2 frames of static + wrist codes, FAST chunks, instruction)."""
    rng = np.random.default_rng(seed)
    builder = SequenceBuilder(layout, TextTokenizer.builtin_for(layout), SequenceSpec())
    seqs = []
    for _ in range(batch):
        obs = [
            {
                "static": rng.integers(0, layout.codebook_size, (static, static)),
                "gripper": rng.integers(0, layout.codebook_size, (wrist, wrist)),
            }
            for _ in range(2)
        ]
        acts = [rng.integers(0, 1024, rng.integers(10, 20)) for _ in range(2)]
        seqs.append(builder.build("push the sliding door to the left side", obs, acts))
    return collate(seqs, layout.pad_id)


def timed_steps(step_fn, steps: int, warmup: int = 2, sync=lambda: None) -> float:
    """Seconds per step after warm-up."""
    for _ in range(warmup):
        step_fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn()
    sync()
    return (time.perf_counter() - t0) / steps


def add_step_arguments(parser: argparse.ArgumentParser, *, batch: int, static: int, wrist: int, rounds: int) -> None:
    """The options every CPU training-step benchmark takes: the preset, the batch of windows, the timing."""
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--batch", type=int, default=batch)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=rounds)
    side = static * 8
    parser.add_argument(
        "--static", type=int, default=static, help=f"static view code grid side ({static} = {side}x{side} pixels)"
    )
    parser.add_argument("--wrist", type=int, default=wrist)
    parser.add_argument("--json", default=None, help="also write the results here")


def parse_step_arguments(doc: str, *, batch: int, static: int, wrist: int, rounds: int):
    """A benchmark's command line (:func:`add_step_arguments` with its defaults) and its preset's
    token layout."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_arguments(parser, batch=batch, static=static, wrist=wrist, rounds=rounds)
    args = parser.parse_args()
    return args, get_preset(args.preset).layout


def best_of_rounds(steps: dict, rounds: int, steps_per_round: int) -> dict[str, float]:
    """Seconds per step of each named step function, the best of ``rounds`` rounds. The functions
    alternate round by round, so load from other processes hits them alike."""
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, fn in steps.items():
            best[name] = min(best[name], timed_steps(fn, steps_per_round, warmup=1))
    return best


def action_only(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same batch with action-only labels (vision weight 0, UniVLA's CALVIN recipe)."""
    return {**batch, "loss_weights": torch.where(batch["loss_weights"] >= 1.0, batch["loss_weights"], 0.0)}


def ours_step(model, opt, batch, layout, autocast):
    """The trainer's step: logits only at positions followed by a weighted token."""

    def step():
        model_weighted_loss(model, batch, layout, autocast).loss().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def padding_mask_step(model, opt, batch, layout, autocast):
    """The trainer's step as it was before :func:`emu3_vla.loss.causal_attention_mask`: the same
    logits and loss, with the right-padded batch's padding mask handed to the decoder."""

    def step():
        keep = weighted_positions(batch["loss_weights"])
        with autocast():
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep
            ).logits
        weighted_next_token_loss(
            logits, batch["input_ids"], batch["loss_weights"], layout, positions=keep
        ).loss().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def stock_step(model, opt, batch, autocast):
    """transformers' own loss (labels=), the unweighted baseline."""

    def step():
        with autocast():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step
