"""Open a dataset folder in whichever supported format it is, or several folders as one dataset."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from emu3_vla.data.calvin_format import CalvinSource, calvin_mapping, is_calvin_dataset
from emu3_vla.data.episodes import DatasetFormatError, Episode, EpisodeSource, locate
from emu3_vla.data.lerobot_source import LeRobotSource, is_lerobot_dataset
from emu3_vla.data.mapping import DataMapping

FORMATS = ("auto", "lerobot", "calvin")


def open_dataset(
    root: str | Path | Sequence[str | Path],
    mapping: DataMapping | None = None,
    *,
    fmt: str = "auto",
    repo_id: str | None = None,
) -> EpisodeSource:
    """A LeRobot v3.0 folder or a CALVIN split folder as an episode source; a list of folders as
    one source (:class:`ConcatSource`, e.g. ``data.root=[expert/lerobot,on_policy/lerobot]``).

    ``mapping`` defaults to our CALVIN-style cameras (static 200x200, wrist 80x80) under each format's
    key names.
    """
    if not isinstance(root, (str, Path)):
        roots = list(root)
        if not roots:
            raise DatasetFormatError("the list of dataset folders is empty; give at least one")
        if len(roots) == 1:
            return open_dataset(roots[0], mapping, fmt=fmt, repo_id=repo_id)
        return ConcatSource([open_dataset(r, mapping, fmt=fmt, repo_id=repo_id) for r in roots])
    root = Path(root)
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; choose one of {FORMATS}")
    if not root.exists():
        raise DatasetFormatError(f"dataset folder {root} does not exist")
    if fmt == "auto":
        if is_lerobot_dataset(root):
            fmt = "lerobot"
        elif is_calvin_dataset(root):
            fmt = "calvin"
        else:
            raise DatasetFormatError(
                f"{root} is neither a LeRobot dataset (meta/info.json) nor a CALVIN split folder "
                "(ep_start_end_ids.npy, lang_annotations/)"
            )
    if fmt == "lerobot":
        return LeRobotSource(root, mapping or DataMapping.calvin(), repo_id=repo_id)
    return CalvinSource(root, mapping or calvin_mapping())


class ConcatSource:
    """Several datasets read as one: the episodes of the first, then of the second, and so on.

    Why: data added later (on-policy hand-over episodes, a second collection) joins a dataset without
    rewriting its videos. Episodes are re-indexed ``0 .. len - 1`` across the parts; the parts must
    agree on fps and action size (their frames are resized to the same views by the mapping)."""

    def __init__(self, sources: Sequence[EpisodeSource]) -> None:
        if not sources:
            raise DatasetFormatError("ConcatSource needs at least one dataset")
        self.sources = list(sources)
        first = self.sources[0]
        for i, other in enumerate(self.sources[1:], start=1):
            if float(other.fps) != float(first.fps) or int(other.action_dim) != int(first.action_dim):
                raise DatasetFormatError(
                    f"dataset {i} has {other.fps} fps and {other.action_dim}-d actions, dataset 0 "
                    f"{first.fps} fps and {first.action_dim}-d actions; datasets read together must agree"
                )
        self.fps = float(first.fps)
        self.action_dim = int(first.action_dim)
        self._starts = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def part_ranges(self) -> list[range]:
        """The episode indices each dataset contributes, in order."""
        return [range(int(a), int(b)) for a, b in zip(self._starts[:-1], self._starts[1:], strict=True)]

    def episode(self, index: int) -> Episode:
        part, local = locate(self._starts, index)
        return dataclasses.replace(self.sources[part].episode(local), index=index)

    def actions(self, index: int) -> np.ndarray:
        part, local = locate(self._starts, index)
        return self.sources[part].actions(local)

    def frames(self, index: int, steps: np.ndarray) -> dict[str, np.ndarray]:
        part, local = locate(self._starts, index)
        return self.sources[part].frames(local, steps)

    def fingerprint(self) -> str:
        return hashlib.sha256("|".join(s.fingerprint() for s in self.sources).encode()).hexdigest()
