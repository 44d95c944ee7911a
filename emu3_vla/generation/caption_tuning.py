"""Teach a trained VLA to say what it sees: image-to-text fine-tuning on robot frames, and its score.

A VLA is trained with zero loss weight on the instruction (docs/design.md section 5), so it reads text but
was never asked to write any: its image-to-text answers start at chance. Emu3 is one model for
every direction, so a few hundred steps on ``[BOS] <frame> question -> instruction [EOS]``
sequences, built from the token cache the VLA was trained on (frames are already VQ codes), teach
the same weights to caption. Episodes are split, not frames, so the score is measured on episodes
the captioner never saw; the untuned model is scored on the same frames next to it.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from emu3_vla.generation.caption_eval import DEFAULT_QUESTION, CaptionScore, score_captions
from emu3_vla.generation.prompts import image_to_text_prompt
from emu3_vla.generation.tasks import image_to_text
from emu3_vla.loss import model_weighted_loss

if TYPE_CHECKING:
    from emu3_vla.checkpoint import Emu3Bundle
    from emu3_vla.data.token_cache import TokenCache


@dataclasses.dataclass(frozen=True)
class CaptionExample:
    """One frame's code grid ``(h, w)`` with the task it belongs to and its instruction."""

    codes: np.ndarray
    task: str
    instruction: str


def caption_examples(
    cache: TokenCache,
    *,
    view: str = "static",
    frames_per_episode: int = 4,
    holdout: float = 0.2,
    seed: int = 0,
    task_of_instruction: Mapping[str, str] | None = None,
) -> tuple[list[CaptionExample], list[CaptionExample]]:
    """(train, test) examples: ``frames_per_episode`` evenly spaced frames of each episode; a
    ``holdout`` share of the episodes of every task (at least one) goes to the test side.

    Datasets that store only the instruction (LeRobot's ``task`` string) get their task name from
    ``task_of_instruction``; an episode whose task stays unknown is left out."""
    if view not in cache.views:
        raise ValueError(f"view {view!r} is not in the token cache (views: {cache.views})")
    lookup = dict(task_of_instruction or {})
    by_task: dict[str, list[int]] = {}
    episodes = []
    for ep in cache.episodes():
        task = ep.task or lookup.get(ep.instruction, "")
        if task:
            episodes.append(dataclasses.replace(ep, task=task))
    for i, ep in enumerate(episodes):
        by_task.setdefault(ep.task, []).append(i)
    rng = random.Random(seed)
    test_ids: set[int] = set()
    for ids in by_task.values():
        if len(ids) < 2:
            continue
        shuffled = sorted(ids)
        rng.shuffle(shuffled)
        test_ids.update(shuffled[: max(1, round(holdout * len(ids)))])
    train, test = [], []
    for i, ep in enumerate(episodes):
        codes = ep.codes[view]
        picks = np.unique(np.linspace(0, len(codes) - 1, frames_per_episode).round().astype(int))
        side = test if i in test_ids else train
        side.extend(CaptionExample(codes[k], ep.task, ep.instruction) for k in picks)
    return train, test


def caption_batch(
    bundle: Emu3Bundle, examples: Sequence[CaptionExample], question: str = DEFAULT_QUESTION
) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``loss_weights`` (1 on the answer and its
    ``[EOS]``, 0 on the image, the question and padding)."""
    layout, tok = bundle.layout, bundle.text_tokenizer
    rows, weights = [], []
    for ex in examples:
        prompt = image_to_text_prompt(ex.codes, question, layout, tok)
        answer = [*tok.encode(" " + ex.instruction), layout.eos_id]
        rows.append(prompt + answer)
        weights.append([0.0] * len(prompt) + [1.0] * len(answer))
    length = max(len(r) for r in rows)
    ids = torch.full((len(rows), length), layout.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    w = torch.zeros((len(rows), length))
    for i, (r, wr) in enumerate(zip(rows, weights, strict=True)):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
        w[i, : len(r)] = torch.tensor(wr)
    return {"input_ids": ids, "attention_mask": mask, "loss_weights": w}


def tune_captions(
    bundle: Emu3Bundle,
    examples: Sequence[CaptionExample],
    *,
    steps: int = 300,
    batch_size: int = 16,
    lr: float = 5e-4,
    seed: int = 0,
    question: str = DEFAULT_QUESTION,
    progress: bool = True,
) -> list[float]:
    """Fine-tune ``bundle.decoder`` in place on image -> instruction; returns the loss of each step."""
    if not examples:
        raise ValueError("no caption examples to train on")
    from tqdm.auto import tqdm

    model = bundle.decoder
    device = next(model.parameters()).device
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    losses: list[float] = []
    bar = tqdm(range(steps), desc="caption tuning", disable=not progress)
    for _ in bar:
        batch = caption_batch(bundle, rng.sample(list(examples), min(batch_size, len(examples))), question)
        batch = {k: v.to(device) for k, v in batch.items()}
        loss = model_weighted_loss(model, batch, bundle.layout).loss()  # logits only where the instruction is
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    model.eval()
    return losses


@torch.no_grad()
def score_examples(
    bundle: Emu3Bundle,
    examples: Sequence[CaptionExample],
    *,
    tasks: Sequence[str],
    phrases: dict[str, list[str]] | None = None,
    question: str = DEFAULT_QUESTION,
    batch_size: int = 32,
    max_new_tokens: int = 24,
) -> CaptionScore:
    """Greedy image-to-text on every example, scored against its task (see :func:`score_captions`)."""
    texts: list[str] = []
    for start in range(0, len(examples), batch_size):
        part = examples[start : start + batch_size]
        out = image_to_text(bundle, [ex.codes for ex in part], question, max_new_tokens=max_new_tokens)
        texts.extend(out.texts)
    return score_captions(texts, [ex.task for ex in examples], tasks=tasks, phrases=phrases)


def caption_report(before: CaptionScore, after: CaptionScore, losses: Sequence[float]) -> dict[str, Any]:
    """What the demo writes: accuracy before and after tuning, both chance levels, a few answers."""
    return {
        "test_frames": len(after.targets),
        "before_tuning": before.summary(),
        "after_tuning": after.summary(),
        "first_loss": losses[0] if losses else None,
        "final_loss": float(np.mean(losses[-20:])) if losses else None,
        "examples": [
            {"task": t, "answer": a, "named": p}
            for t, a, p in list(zip(after.targets, after.texts, after.predictions, strict=True))[
                :: max(1, len(after.targets) // 8)
            ]
        ],
    }
