"""Getting action chunks out of files: arrays of actions or chunks, episode boundaries, windows.

Accepted inputs (``load_chunks``):

* ``.npy`` holding **chunks** (N, T, D): used as they are.
* ``.npy`` holding **actions** (N, D): consecutive steps of one or more trajectories. Episode
  boundaries come from ``episode_ends`` (exclusive end index of every episode, cumulative, e.g.
  ``[200, 410, 600]``; the last one must equal N) given as a separate ``.npy``; without them the
  whole array is one episode. Windows of T steps are cut with a stride and never cross a boundary;
  episodes shorter than T contribute no window.
* ``.npz`` with an ``actions`` (or ``action``) array of either shape, optionally ``episode_ends``;
  any other single-array ``.npz`` works too, or name the array with ``key``.
* a **dataset folder** (e.g. LeRobot): read by an *action source* registered by the package that
  owns the reader — ``register_action_source`` below, or an entry point in the group
  ``emu3_vla.action_sources`` whose object is an :class:`ActionSource`. ``action_tokenizer``
  ships none so that it depends on nothing of ours (the LeRobot reader lives in ``emu3_vla``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np

ACTION_SOURCE_GROUP = "emu3_vla.action_sources"
_ACTION_KEYS = ("actions", "action")


@dataclasses.dataclass(frozen=True)
class ActionSource:
    """A reader for a dataset layout: ``accepts(path)`` says whether it can read ``path``;
    ``load(path)`` returns actions (N, D) and episode ends (exclusive, cumulative) or None."""

    name: str
    accepts: Callable[[Path], bool]
    load: Callable[[Path], tuple[np.ndarray, np.ndarray | None]]


_SOURCES: dict[str, ActionSource] = {}


def register_action_source(source: ActionSource) -> None:
    """Make ``load_chunks`` able to read one more dataset layout (later registrations win)."""
    _SOURCES[source.name] = source


def _all_sources() -> list[ActionSource]:
    found = dict(_SOURCES)
    for ep in entry_points(group=ACTION_SOURCE_GROUP):
        if ep.name not in found:
            found[ep.name] = ep.load()
    return list(reversed(found.values()))


# --------------------------------------------------------------------- arrays
def as_chunk_array(chunks: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
    """Chunks as one float64 array (N, T, D), from an array or an iterator of (T, D) / (B, T, D)."""
    if isinstance(chunks, np.ndarray) or hasattr(chunks, "detach"):
        data = np.asarray(chunks.detach().cpu() if hasattr(chunks, "detach") else chunks, dtype=np.float64)
    else:
        parts = [np.asarray(c, dtype=np.float64) for c in chunks]
        if not parts:
            raise ValueError("no chunks given")
        parts = [p[None] if p.ndim == 2 else p for p in parts]
        shapes = {p.shape[1:] for p in parts}
        if len(shapes) != 1 or any(p.ndim != 3 for p in parts):
            raise ValueError(f"chunks must all have the same shape (T, D); got {sorted(shapes)}")
        data = np.concatenate(parts)
    if data.ndim != 3:
        raise ValueError(
            f"expected chunks of shape (N, T, D), got {data.shape}; for one chunk pass chunk[None], "
            "for a trajectory of actions (N, D) cut windows first with make_chunks"
        )
    if data.shape[0] == 0 or data.shape[1] == 0 or data.shape[2] == 0:
        raise ValueError(f"chunks must be non-empty in every axis, got {data.shape}")
    if not np.all(np.isfinite(data)):
        bad = np.flatnonzero(~np.isfinite(data).all(axis=(1, 2)))
        raise ValueError(f"chunks {bad[:5].tolist()} contain NaN or inf; clean the actions first")
    return data


def make_chunks(
    actions: np.ndarray, horizon: int, stride: int = 1, episode_ends: np.ndarray | None = None
) -> np.ndarray:
    """Cut windows of ``horizon`` steps every ``stride`` steps from actions (N, D), per episode."""
    actions = np.asarray(actions, dtype=np.float64)
    if actions.ndim != 2:
        raise ValueError(f"make_chunks takes actions of shape (N, D), got {actions.shape}")
    if horizon < 1 or stride < 1:
        raise ValueError(f"horizon and stride must be >= 1, got {horizon} and {stride}")
    ends = check_episode_ends(episode_ends, len(actions))
    starts = np.concatenate([[0], ends[:-1]])
    windows = [np.arange(s, e - horizon + 1, stride) for s, e in zip(starts, ends, strict=True)]
    first = np.concatenate(windows) if windows else np.zeros(0, dtype=np.int64)
    if first.size == 0:
        longest = int((ends - starts).max())
        raise ValueError(
            f"no window of {horizon} steps fits in any episode (the longest has {longest} steps); "
            "lower the horizon or check episode_ends"
        )
    return actions[first[:, None] + np.arange(horizon)[None, :]]


def check_episode_ends(episode_ends: np.ndarray | None, num_steps: int) -> np.ndarray:
    """Validate cumulative exclusive episode ends; None means one episode covering everything."""
    if episode_ends is None:
        return np.array([num_steps], dtype=np.int64)
    ends = np.asarray(episode_ends).reshape(-1)
    if ends.size == 0 or not np.issubdtype(ends.dtype, np.integer):
        raise ValueError(f"episode_ends must be a non-empty integer array, got {ends.dtype} {ends.shape}")
    ends = ends.astype(np.int64)
    if np.any(np.diff(ends) <= 0) or ends[0] <= 0:
        raise ValueError("episode_ends must be strictly increasing positive exclusive end indices, e.g. [200, 410]")
    if ends[-1] != num_steps:
        raise ValueError(
            f"the last episode end ({int(ends[-1])}) must equal the number of actions ({num_steps}); "
            "episode_ends are cumulative exclusive end indices"
        )
    return ends


# ---------------------------------------------------------------------- files
def load_array_file(path: Path, key: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Actions or chunks, and episode ends if the file holds them, from a .npy or .npz file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.suffix == ".npy":
        if key is not None:
            raise ValueError(f"--key names an array inside an .npz; {path} is a single .npy array")
        return np.load(path, allow_pickle=False), None
    if path.suffix != ".npz":
        raise ValueError(f"{path}: expected an .npy or .npz file of actions (N, D) or chunks (N, T, D)")
    with np.load(path, allow_pickle=False) as npz:
        names = list(npz.files)
        ends = npz["episode_ends"] if "episode_ends" in names else None
        if key is None:
            preferred = [k for k in _ACTION_KEYS if k in names]
            others = [k for k in names if k != "episode_ends"]
            if preferred:
                key = preferred[0]
            elif len(others) == 1:
                key = others[0]
            else:
                raise ValueError(f"{path} holds arrays {names}; name the actions with --key")
        if key not in names:
            raise KeyError(f"{path} has no array {key!r}; it holds {names}")
        return npz[key], ends


def load_chunks(
    path: str | Path,
    *,
    horizon: int | None = 10,
    stride: int = 1,
    key: str | None = None,
    episode_ends: str | Path | np.ndarray | None = None,
) -> np.ndarray:
    """Chunks (N, T, D) from any input described in the module docstring."""
    path = Path(path)
    if path.is_dir():
        source = next((s for s in _all_sources() if s.accepts(path)), None)
        if source is None:
            raise ValueError(
                f"{path} is a folder and no registered action source can read it; pass an .npy/.npz of actions "
                "or chunks, or register a reader with action_tokenizer.data.register_action_source "
                f"(or an entry point in the group {ACTION_SOURCE_GROUP!r})"
            )
        data, ends = source.load(path)
    else:
        data, ends = load_array_file(path, key)
    if episode_ends is not None:
        ends = np.load(episode_ends, allow_pickle=False) if isinstance(episode_ends, str | Path) else episode_ends
    data = np.asarray(data)
    if data.ndim == 3:
        if ends is not None:
            raise ValueError(f"{path} already holds chunks {data.shape}; episode ends only apply to actions (N, D)")
        if horizon is not None and data.shape[1] != horizon:
            raise ValueError(f"{path} holds chunks of {data.shape[1]} steps but horizon {horizon} was asked for")
        return as_chunk_array(data)
    if data.ndim == 2:
        if horizon is None:
            raise ValueError(f"{path} holds actions {data.shape}; give a horizon to cut them into chunks")
        return as_chunk_array(make_chunks(data, horizon, stride, ends))
    raise ValueError(f"{path}: expected actions (N, D) or chunks (N, T, D), got an array of shape {data.shape}")
