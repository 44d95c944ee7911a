"""Datasets whose camera frames were rendered every k-th step and held in between.

Why: rendering is most of what recording a scripted expert costs, and a model that encodes only
every k-th frame (``data.frame_stride``) never looks at the others. ``emu3-vla collect
--render-every k`` therefore renders steps 0, k, 2k, ... of each episode and repeats the last
rendered frame in between, and says so in a small file inside the LeRobot dataset
(``meta/emu3_vla_recording.json``; LeRobot itself ignores it). Training and the VQ tokenizer check
it: a stride that would encode held copies is refused instead of silently training on them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

RECORDING_FILE = Path("meta") / "emu3_vla_recording.json"


def write_render_every(root: str | Path, render_every: int) -> None:
    """Mark the dataset at ``root`` as rendered every ``render_every``-th step (1 writes nothing)."""
    if render_every > 1:
        path = Path(root) / RECORDING_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"render_every": int(render_every)}) + "\n")


def render_every(root: str | Path) -> int:
    """Every how many steps the dataset at ``root`` holds a freshly rendered frame (1: every step)."""
    path = Path(root) / RECORDING_FILE
    if not path.is_file():
        return 1
    return int(json.loads(path.read_text()).get("render_every", 1))


def check_frame_stride(roots: str | Path | Sequence[str | Path], frame_stride: int, key: str) -> None:
    """Refuse a ``frame_stride`` (the config key ``key``) that would encode held frames of a dataset."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    for root in roots:
        every = render_every(root)
        if frame_stride % every:
            raise ValueError(
                f"{root} was recorded with a frame rendered every {every} steps and repeated in between, "
                f"so {key}={frame_stride} would encode repeated frames; use a multiple of {every} "
                f"(e.g. {key}={every}), or collect again with --render-every 1"
            )
