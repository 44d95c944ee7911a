"""Does the model know what it sees? Ask it which task a robot frame shows, and score the answers.

For each frame the model answers a question (default ``"what task is the robot doing?"``) with
image-to-text decoding. An answer *names* a task when it matches one of the task's phrases (its
name with underscores as spaces, plus any phrasings given, e.g. CALVIN's instructions) better than
any other task's: the score is the word-overlap F1 between the answer and a phrase, the best phrase
counts for each task, and a tie or no overlap at all names no task. Accuracy is the share of frames
whose answer names their own task.

Two chance levels are reported next to it: guessing uniformly among the candidate tasks
(``1 / #tasks``) and always answering the most frequent task (``majority``), the better of which a
model must beat before its captions mean anything.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emu3_vla.decoding.sampling import GREEDY, Sampler
from emu3_vla.generation.tasks import image_to_text
from emu3_vla.vision import resize_images

if TYPE_CHECKING:
    from emu3_vla.checkpoint import Emu3Bundle

DEFAULT_QUESTION = "what task is the robot doing?"


def words(text: str) -> list[str]:
    """Lower-case words of ``text``; underscores and punctuation separate words."""
    return re.findall(r"[a-z0-9]+", text.lower().replace("_", " "))


def word_f1(a: str, b: str) -> float:
    """F1 of the word multisets of ``a`` and ``b`` (0 when either is empty)."""
    wa, wb = Counter(words(a)), Counter(words(b))
    common = sum((wa & wb).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(wa.values()), common / sum(wb.values())
    return 2 * precision * recall / (precision + recall)


def task_phrases(tasks: Sequence[str], extra: Mapping[str, Sequence[str]] | None = None) -> dict[str, list[str]]:
    """Each task's phrases: its own name (``open_drawer`` -> "open drawer") plus ``extra[task]``."""
    extra = extra or {}
    unknown = sorted(set(extra) - set(tasks))
    if unknown:
        raise ValueError(f"phrases given for tasks that are not candidates: {unknown}")
    return {t: [t.replace("_", " "), *extra.get(t, [])] for t in tasks}


def name_task(text: str, phrases: Mapping[str, Sequence[str]]) -> str | None:
    """The task ``text`` names: the unique best word-F1 match among all phrases, else None."""
    scores = {task: max(word_f1(text, p) for p in ps) for task, ps in phrases.items()}
    if not scores:
        return None
    best = max(scores.values())
    winners = [t for t, s in scores.items() if s == best]
    return winners[0] if best > 0 and len(winners) == 1 else None


@dataclasses.dataclass
class CaptionScore:
    """Per-frame answers and the summary figures of one evaluation."""

    texts: list[str]
    targets: list[str]
    predictions: list[str | None]
    tasks: list[str]

    @property
    def correct(self) -> list[bool]:
        return [p == t for p, t in zip(self.predictions, self.targets, strict=True)]

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / len(self.targets) if self.targets else 0.0

    @property
    def chance_uniform(self) -> float:
        return 1.0 / len(self.tasks) if self.tasks else 0.0

    @property
    def chance_majority(self) -> float:
        if not self.targets:
            return 0.0
        return Counter(self.targets).most_common(1)[0][1] / len(self.targets)

    def summary(self) -> dict[str, Any]:
        return {
            "frames": len(self.targets),
            "tasks": len(self.tasks),
            "accuracy": self.accuracy,
            "chance_uniform": self.chance_uniform,
            "chance_majority": self.chance_majority,
            "answers_naming_no_task": sum(p is None for p in self.predictions),
        }


def score_captions(
    texts: Sequence[str],
    targets: Sequence[str],
    *,
    tasks: Sequence[str] | None = None,
    phrases: Mapping[str, Sequence[str]] | None = None,
) -> CaptionScore:
    """Score answers against the true task of each frame. Candidates: ``tasks``, default the targets'."""
    if len(texts) != len(targets):
        raise ValueError(f"{len(texts)} answers for {len(targets)} targets")
    candidates = sorted(set(tasks) if tasks is not None else set(targets))
    missing = sorted(set(targets) - set(candidates))
    if missing:
        raise ValueError(f"targets {missing} are not among the candidate tasks")
    table = task_phrases(candidates, phrases)
    predictions = [name_task(t, table) for t in texts]
    return CaptionScore(list(texts), list(targets), predictions, candidates)


def evaluate_captions(
    bundle: Emu3Bundle,
    frames: np.ndarray,
    targets: Sequence[str],
    *,
    question: str = DEFAULT_QUESTION,
    tasks: Sequence[str] | None = None,
    phrases: Mapping[str, Sequence[str]] | None = None,
    image_size: tuple[int, int] | None = None,
    max_new_tokens: int = 24,
    batch_size: int = 16,
    sampler: Sampler = GREEDY,
    seed: int = 0,
) -> CaptionScore:
    """Ask ``question`` about each frame ``(N, H, W, 3) uint8`` and score the answers against ``targets``.

    ``image_size = (height, width)`` resizes the frames first (e.g. CALVIN's static view: 200x200).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    if len(frames) != len(targets):
        raise ValueError(f"{len(frames)} frames for {len(targets)} task names")
    if image_size is not None:
        frames = resize_images(frames, *image_size).numpy()
    codes = bundle.vision_tokenizer().encode_images(frames)
    texts: list[str] = []
    for start in range(0, len(codes), batch_size):
        chunk = codes[start : start + batch_size]
        out = image_to_text(bundle, chunk, question, max_new_tokens=max_new_tokens, sampler=sampler, seed=seed + start)
        texts.extend(out.texts)
    return score_captions(texts, targets, tasks=tasks, phrases=phrases)


def evaluate_checkpoint(
    checkpoint: str | Path, frames: np.ndarray, targets: Sequence[str], *, device: str = "cpu", **kwargs: Any
) -> CaptionScore:
    """:func:`evaluate_captions` on a saved model (an emu3-vla or transformers Emu3 checkpoint folder)."""
    from emu3_vla.checkpoint import Emu3Bundle

    return evaluate_captions(Emu3Bundle.load(checkpoint, device=device), frames, targets, **kwargs)
