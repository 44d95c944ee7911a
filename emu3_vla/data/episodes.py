"""One view of demonstration data, whatever its on-disk format.

Readers (:mod:`emu3_vla.data.lerobot_source`, :mod:`emu3_vla.data.calvin_source`) turn a dataset
folder into :class:`Episode` objects; everything downstream (FAST fitting, the token cache, the
sequence builder) only sees this view. An episode has one instruction, ``T`` time steps, uint8
frames for each configured camera view (already resized to the view's size), the actions taken at
each step, and optionally the proprioceptive state and which steps were perturbed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Protocol

import numpy as np

#: Per-frame bool a dataset may carry: the executed action was the recorded one plus noise (a
#: perturbed expert, see ``emu3-vla collect --noise-kind bursts``). A chunk of actions that contains
#: such a step is not what the expert would do from the chunk's first frame, so it is not trained on.
PERTURBED_KEY = "action.perturbed"


class DatasetFormatError(ValueError):
    """A folder is not the dataset it was said to be, or lacks keys the mapping asks for."""


@dataclasses.dataclass
class Episode:
    """A demonstration: ``frames[view]`` is ``(T, H, W, 3) uint8``, ``actions`` is ``(T, D) float32``,
    ``perturbed`` (optional) is ``(T,) bool`` (see :data:`PERTURBED_KEY`)."""

    index: int
    instruction: str
    frames: dict[str, np.ndarray]
    actions: np.ndarray
    state: np.ndarray | None = None
    task: str | None = None
    perturbed: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.actions)
        if self.perturbed is not None:
            self.perturbed = np.asarray(self.perturbed, dtype=bool).reshape(-1)
            if len(self.perturbed) != n:
                raise ValueError(f"episode {self.index}: {len(self.perturbed)} perturbed flags but {n} actions")
        for view, f in self.frames.items():
            if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
                raise ValueError(
                    f"episode {self.index}: view {view!r} frames must be (T, H, W, 3) uint8, got {f.shape} {f.dtype}"
                )
            if len(f) != n:
                raise ValueError(f"episode {self.index}: view {view!r} has {len(f)} frames but {n} actions")

    def __len__(self) -> int:
        return len(self.actions)


class EpisodeSource(Protocol):
    """What a dataset reader provides."""

    fps: float
    action_dim: int

    def __len__(self) -> int: ...

    def episode(self, index: int) -> Episode: ...

    def actions(self, index: int) -> np.ndarray:
        """The ``(T, D)`` actions of one episode, without decoding any image (fast)."""
        ...

    def frames(self, index: int, steps: np.ndarray) -> dict[str, np.ndarray]:
        """``episode(index).frames`` at the time ``steps`` only, decoding no more than they need: a
        reader that samples a few frames of thousands of episodes (the VQ trainer) need not decode
        every frame of each."""
        ...

    def fingerprint(self) -> str:
        """A string that changes whenever the data that would be read changes (cache keys)."""
        ...


def locate(starts: np.ndarray, index: int) -> tuple[int, int]:
    """Which part ``index`` falls in, and its index there, for parts read one after another;
    ``starts`` is ``[0, len(part 0), len(part 0) + len(part 1), ..., total]``."""
    if not 0 <= index < int(starts[-1]):
        raise IndexError(f"episode {index} out of range for {int(starts[-1])} episodes")
    part = int(np.searchsorted(starts, index, side="right")) - 1
    return part, index - int(starts[part])


def iter_episodes(source: EpisodeSource) -> Iterator[Episode]:
    for i in range(len(source)):
        yield source.episode(i)


def action_chunks(actions: np.ndarray, chunk: int, stride: int = 1) -> np.ndarray:
    """All ``(chunk, D)`` windows of a ``(T, D)`` action array starting every ``stride`` steps.

    The last windows are padded by repeating the final action (the robot holds still), so that a
    chunk exists for every start index ``0, stride, ... < T``; callers that need only full windows
    take the first ``(T - chunk) // stride + 1``.
    """
    actions = np.asarray(actions, dtype=np.float32)
    t = len(actions)
    if t == 0:
        return np.zeros((0, chunk, actions.shape[-1]), dtype=np.float32)
    padded = np.concatenate([actions, np.repeat(actions[-1:], chunk - 1, axis=0)])
    starts = np.arange(0, t, stride)
    index = starts[:, None] + np.arange(chunk)[None, :]
    return padded[index]
