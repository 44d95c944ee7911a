"""Tokenise once, train on ids: the dataset's VQ codes and FAST tokens, stored compactly on disk.

Encoding 200x200 frames with the VQ tokenizer costs far more than a training step of a small
decoder, so every frame is encoded once (the paper's edge-tokenisation idea) and training reads
integer arrays. The cache lives in ``<cache_dir>/<key>/`` where ``key`` hashes everything the
tokens depend on: the dataset's fingerprint (content and mapping), the VQ weights, the action
tokenizer's files and the cache settings. Change any of them and a new cache is built; otherwise the
existing one is reused.

Per episode one ``ep_XXXXXX.npz`` (written to a temporary file, then renamed: a killed build leaves
only whole files, and a rerun resumes after the last finished episode)::

    codes_<view>   (F, h, w) uint16   VQ codes of the encoded frames
    frame_steps    (F,) int32         which time steps were encoded (every ``frame_stride``-th)
    fast_tokens    (N,) int16         FAST ids of the chunks starting at each encoded frame, flat
    fast_offsets   (F + 1,) int64     chunk i is fast_tokens[fast_offsets[i]:fast_offsets[i + 1]]
    chunk_clean    (F,) bool          no step of chunk i was perturbed (see ``PERTURBED_KEY``)
    state          (F, S) float32     the proprioceptive state at the encoded frames (if the dataset has one)
    length         ()                 number of steps of the episode
    instruction, task                 text

``manifest.json`` is written last and marks the cache complete.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from emu3_vla.data.episodes import Episode, EpisodeSource, action_chunks, locate
from emu3_vla.vision import VisionTokenizer

log = logging.getLogger(__name__)
CACHE_VERSION = 3


class ActionEncoder(Protocol):
    """What the cache needs from an action tokenizer (FAST or binning)."""

    def encode(self, chunks: np.ndarray) -> list[list[int]]: ...

    def encode_with_report(self, chunks: np.ndarray) -> Any: ...

    def save(self, folder: str | Path) -> Any: ...


@dataclasses.dataclass(frozen=True)
class CacheSettings:
    """``chunk``: action steps per chunk; ``frame_stride``: encode every k-th frame (windows then
    start at multiples of k; ``chunk`` must be a multiple of it)."""

    chunk: int = 10
    frame_stride: int = 1

    def __post_init__(self) -> None:
        if self.chunk % self.frame_stride:
            raise ValueError(f"chunk={self.chunk} must be a multiple of frame_stride={self.frame_stride}")


def module_fingerprint(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def folder_fingerprint(saver: ActionEncoder) -> str:
    """Hash of the files an action tokenizer saves (its complete, user-visible state)."""
    with tempfile.TemporaryDirectory() as tmp:
        saver.save(tmp)
        h = hashlib.sha256()
        for path in sorted(Path(tmp).rglob("*")):
            if path.is_file():
                h.update(path.relative_to(tmp).as_posix().encode())
                h.update(path.read_bytes())
        return h.hexdigest()


@dataclasses.dataclass
class CachedEpisode:
    codes: dict[str, np.ndarray]
    frame_steps: np.ndarray
    fast_tokens: np.ndarray
    fast_offsets: np.ndarray
    length: int
    instruction: str
    task: str
    chunk_clean: np.ndarray  # (F,) bool: no step of the chunk from that frame was perturbed
    state: np.ndarray | None = None  # (F, S) float32 at the encoded frames; None if the dataset has none

    def chunk_tokens(self, frame: int) -> np.ndarray:
        return self.fast_tokens[self.fast_offsets[frame] : self.fast_offsets[frame + 1]]


class TokenCache:
    """A complete cache folder; use :meth:`build` to create or reuse one."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest = self.root / "manifest.json"
        if not manifest.is_file():
            raise FileNotFoundError(f"{self.root} is not a complete token cache (no manifest.json)")
        self.manifest = json.loads(manifest.read_text())
        self.views: list[str] = list(self.manifest["views"])
        self.settings = CacheSettings(**self.manifest["settings"])
        self.num_episodes = int(self.manifest["episodes"])

    def __len__(self) -> int:
        return self.num_episodes

    def episode(self, index: int) -> CachedEpisode:
        with np.load(_episode_path(self.root, index), allow_pickle=False) as data:
            return CachedEpisode(
                codes={v: data[f"codes_{v}"] for v in self.views},
                frame_steps=data["frame_steps"],
                fast_tokens=data["fast_tokens"],
                fast_offsets=data["fast_offsets"],
                length=int(data["length"]),
                instruction=str(data["instruction"]),
                task=str(data["task"]),
                chunk_clean=data["chunk_clean"],
                state=data["state"] if "state" in data.files else None,
            )

    def episodes(self) -> list[CachedEpisode]:
        return [self.episode(i) for i in range(len(self))]

    # ------------------------------------------------------------- building
    @staticmethod
    def cache_key(
        source: EpisodeSource,
        vision: VisionTokenizer,
        actions: ActionEncoder,
        settings: CacheSettings,
        views: Sequence[str],
    ) -> tuple[str, dict[str, Any]]:
        parts = {
            "version": CACHE_VERSION,
            "dataset": source.fingerprint(),
            "vq": module_fingerprint(vision.vq),
            "action_tokenizer": folder_fingerprint(actions),
            "settings": dataclasses.asdict(settings),
            "views": list(views),
        }
        key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
        return key, parts

    @classmethod
    def build(
        cls,
        source: EpisodeSource,
        vision: VisionTokenizer,
        actions: ActionEncoder,
        cache_dir: str | Path,
        *,
        settings: CacheSettings | None = None,
        views: Sequence[str] | None = None,
        progress: bool = True,
    ) -> TokenCache | ConcatTokenCache:
        """Reuse the cache for these inputs if it is complete; otherwise (re)build or resume it.

        Several datasets read as one (:class:`~emu3_vla.data.sources.ConcatSource`) get one cache per
        dataset, read together: adding a dataset encodes only its own frames."""
        from emu3_vla.data.sources import ConcatSource

        settings = settings or CacheSettings()
        if isinstance(source, ConcatSource):
            kwargs = {"settings": settings, "views": views, "progress": progress}
            return ConcatTokenCache([cls.build(s, vision, actions, cache_dir, **kwargs) for s in source.sources])
        views = list(views or source.mapping.views)  # type: ignore[attr-defined]
        key, parts = cls.cache_key(source, vision, actions, settings, views)
        root = Path(cache_dir) / key
        if (root / "manifest.json").is_file():
            log.info("token cache %s is up to date; reusing it", root)
            return cls(root)
        root.mkdir(parents=True, exist_ok=True)
        (root / "key.json").write_text(json.dumps(parts, indent=2) + "\n")
        done = sum(1 for i in range(len(source)) if _episode_path(root, i).is_file())
        if done:
            log.info("resuming token cache %s after %d finished episodes", root, done)
        t0 = time.perf_counter()
        frames_encoded = 0
        bar = tqdm(range(len(source)), desc="tokenising episodes", disable=not progress, initial=0)
        for i in bar:
            if _episode_path(root, i).is_file():
                continue
            episode = source.episode(i)
            steps = np.arange(0, len(episode), settings.frame_stride)
            arrays: dict[str, Any] = {}
            for view in views:
                codes = vision.encode_images(episode.frames[view][steps])
                if vision.codebook_size > np.iinfo(np.uint16).max + 1:
                    raise ValueError("codebook too large for uint16 storage")
                arrays[f"codes_{view}"] = codes.numpy().astype(np.uint16)
            full = steps[steps + settings.chunk <= len(episode)]
            chunks = action_chunks(episode.actions, settings.chunk, settings.frame_stride)[: len(full)]
            report = actions.encode_with_report(chunks) if len(chunks) else None
            tokens = report.ids if report is not None else []
            # chunks the tokenizer could only approximate (coefficients clamped to its fitted range)
            arrays["clamped_chunks"] = np.int64(report.num_clamped_chunks if report is not None else 0)
            lengths = np.array([0] + [len(t) for t in tokens] + [0] * (len(steps) - len(full)))
            arrays["fast_tokens"] = np.concatenate(
                [np.asarray(t, dtype=np.int16) for t in tokens] or [np.zeros(0, np.int16)]
            )
            arrays["fast_offsets"] = np.cumsum(lengths).astype(np.int64)
            arrays["frame_steps"] = steps.astype(np.int32)
            arrays["chunk_clean"] = clean_chunks(episode, steps, settings.chunk)
            if episode.state is not None:
                arrays["state"] = np.asarray(episode.state, dtype=np.float32)[steps]
            arrays["length"] = np.int64(len(episode))
            arrays["instruction"] = np.str_(episode.instruction)
            arrays["task"] = np.str_(episode.task or "")
            _atomic_savez(_episode_path(root, i), arrays)
            frames_encoded += len(steps) * len(views)
            bar.set_postfix(frames_per_s=f"{frames_encoded / (time.perf_counter() - t0):.1f}")
        clamped = sum(int(np.load(_episode_path(root, i))["clamped_chunks"]) for i in range(len(source)))
        if clamped:
            log.warning("%d action chunks lie outside the action tokenizer's fitted range (clamped)", clamped)
        manifest = {
            "episodes": len(source),
            "clamped_chunks": clamped,
            "views": views,
            "settings": dataclasses.asdict(settings),
            "key": key,
            "seconds": round(time.perf_counter() - t0, 2),
        }
        _atomic_write_text(root / "manifest.json", json.dumps(manifest, indent=2) + "\n")
        return cls(root)


class ConcatTokenCache:
    """The caches of several datasets read as one, in order (what :meth:`TokenCache.build` returns
    for a :class:`~emu3_vla.data.sources.ConcatSource`)."""

    def __init__(self, parts: Sequence[TokenCache]) -> None:
        self.parts = list(parts)
        first = self.parts[0]
        self.views, self.settings = first.views, first.settings
        self._starts = np.cumsum([0] + [len(p) for p in self.parts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def episode(self, index: int) -> CachedEpisode:
        part, local = locate(self._starts, index)
        return self.parts[part].episode(local)

    def episodes(self) -> list[CachedEpisode]:
        return [self.episode(i) for i in range(len(self))]


def clean_chunks(episode: Episode, starts: np.ndarray, chunk: int) -> np.ndarray:
    """(F,) bool: whether none of the steps ``[start, start + chunk)`` was perturbed (all True when
    the dataset records no perturbation)."""
    if episode.perturbed is None:
        return np.ones(len(starts), dtype=bool)
    perturbed_before = np.concatenate([[0], np.cumsum(episode.perturbed)])
    ends = np.minimum(starts + chunk, len(episode))
    return perturbed_before[ends] == perturbed_before[starts]


def _episode_path(root: Path, index: int) -> Path:
    return root / f"ep_{index:06d}.npz"


def _atomic_savez(path: Path, arrays: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
