"""Training checkpoints: atomic, keep-last-K, and a fallback when the newest one is broken.

``<run_dir>/checkpoints/step_0000500/`` holds ``model/`` (a loadable VLA checkpoint: safetensors
weights, tokenizers, settings) and ``trainer_state.pt`` (optimiser state, step, RNG states; loaded
with ``weights_only=True``). A checkpoint is written into a temporary folder and renamed into place,
so a run killed while saving leaves the previous checkpoints intact (an interrupted run saves one
at the step it finished, which the next scheduled checkpoint replaces); one that is corrupt anyway
(a truncated disk write, a bad copy) is skipped with a warning and the one before it is used.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
_STEP_DIR = re.compile(r"^step_(\d{7})$")


class CheckpointManager:
    def __init__(self, run_dir: str | Path, keep_last: int = 3) -> None:
        if keep_last < 1:
            raise ValueError(f"checkpoint.keep_last must be >= 1, got {keep_last}")
        self.dir = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    def path(self, step: int) -> Path:
        return self.dir / f"step_{step:07d}"

    def steps(self) -> list[int]:
        if not self.dir.is_dir():
            return []
        found = (_STEP_DIR.match(p.name) for p in self.dir.iterdir() if p.is_dir())
        return sorted(int(m.group(1)) for m in found if m)

    def save(self, step: int, write: Callable[[Path], None], replaces: Iterable[int] = ()) -> Path:
        """``write(folder)`` fills a temporary folder that then becomes ``step_XXXXXXX``.

        ``replaces``: steps of checkpoints this one supersedes (those an interrupted run saved off its
        schedule); they go once this one is in place and before the keep-last count, so they never
        cost a scheduled checkpoint its place.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".step_{step:07d}.", dir=self.dir))
        try:
            write(tmp)
            target = self.path(step)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        for old in replaces:
            if old != step:
                shutil.rmtree(self.path(old), ignore_errors=True)
        for old in self.steps()[: -self.keep_last]:
            shutil.rmtree(self.path(old), ignore_errors=True)
        return self.path(step)

    def load_latest(self, load: Callable[[Path], T]) -> tuple[int, T] | None:
        """Newest checkpoint that ``load`` accepts; broken ones are reported and skipped."""
        steps = self.steps()
        for i, step in enumerate(reversed(steps)):
            try:
                return step, load(self.path(step))
            except Exception as err:  # any failure to read means this checkpoint is unusable
                older = steps[-i - 2] if i + 1 < len(steps) else None
                log.warning(
                    "checkpoint %s is unusable (%s: %s); %s",
                    self.path(step),
                    type(err).__name__,
                    err,
                    f"falling back to step {older}" if older is not None else "no older checkpoint left",
                )
        return None
