"""Training windows over a token cache: the dataset the VLA trainer iterates.

A window starts at an encoded frame ``k`` and takes ``spec.frames`` frames ``spec.chunk`` steps
apart, each with the FAST tokens of the chunk that follows it. Only complete windows are used: the
last frame's chunk must end inside the episode (no padded actions are trained on), and no chunk
of the window may contain a perturbed step (a noisy expert's push: its chunk is not the expert's
plan from the frame; the clean chunks after it, which show the recovery, are kept).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numpy as np
import torch

from emu3_vla.data.sequence import STATE, SequenceBuilder, TokenSequence
from emu3_vla.data.token_cache import CachedEpisode, TokenCache

log = logging.getLogger(__name__)


class WindowDataset(torch.utils.data.Dataset):
    """Every complete window of the cached episodes; ``repeats`` (episode -> count, default 1) lists
    an episode's windows that many times, so a sampler that walks permutations of the index draws
    them that much more often (0 leaves the episode out)."""

    def __init__(
        self,
        cache: TokenCache,
        builder: SequenceBuilder,
        episodes: list[int] | None = None,
        repeats: Mapping[int, int] | None = None,
    ) -> None:
        spec = builder.spec
        settings = cache.settings
        if spec.chunk != settings.chunk:
            raise ValueError(f"sequence chunk {spec.chunk} differs from the cache's chunk {settings.chunk}")
        missing = [v for v in spec.views if v not in cache.views]
        if missing:
            raise ValueError(f"views {missing} are not in the token cache (it has {cache.views})")
        self.builder = builder
        self.gap = settings.chunk // settings.frame_stride  # encoded frames between window frames
        ids = range(len(cache)) if episodes is None else episodes
        if repeats is not None:
            ids = [i for i in ids if repeats.get(i, 1) > 0]
        self.episodes: dict[int, CachedEpisode] = {i: cache.episode(i) for i in ids}
        if spec.uses_state and any(e.state is None for e in self.episodes.values()):
            raise ValueError(
                "the model reads the proprioceptive state (sequence.state_dims) but the dataset has none; "
                "set data.state_key to the dataset's state feature or sequence.state_dims=[]"
            )
        self._instructions = {i: builder.instruction_ids(e.instruction) for i, e in self.episodes.items()}
        index = []
        self.skipped_perturbed = 0
        for i, ep in self.episodes.items():
            last = (spec.frames - 1) * self.gap
            rows = []
            for k in range(len(ep.frame_steps) - last):
                if ep.frame_steps[k + last] + spec.chunk > ep.length:
                    continue
                if not all(ep.chunk_clean[k + j * self.gap] for j in range(spec.frames)):
                    self.skipped_perturbed += 1
                    continue
                rows.append((i, k))
            index.extend(rows * (1 if repeats is None else repeats.get(i, 1)))
        if self.skipped_perturbed:
            log.info("left out %d windows whose chunks contain perturbed steps", self.skipped_perturbed)
        if not index:
            raise ValueError(
                f"no complete {spec.frames}x{spec.chunk}-step window in {len(self.episodes)} episodes; "
                "episodes are too short for this window"
            )
        self.index = np.asarray(index, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def window(self, i: int) -> tuple[int, int]:
        ep, k = self.index[i]
        return int(ep), int(k)

    def __getitem__(self, i: int) -> TokenSequence:
        ep_id, k = self.window(i)
        ep = self.episodes[ep_id]
        frames = [k + j * self.gap for j in range(self.builder.spec.frames)]
        observations = [{v: ep.codes[v][f].astype(np.int64) for v in self.builder.spec.views} for f in frames]
        if self.builder.spec.uses_state:
            for obs, f in zip(observations, frames, strict=True):
                obs[STATE] = ep.state[f]
        actions = [ep.chunk_tokens(f).astype(np.int64) for f in frames]
        return self.builder.build(self._instructions[ep_id], observations, actions)
