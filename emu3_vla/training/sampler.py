"""Deterministic global batches: the data order is a pure function of (seed, step).

The stream of examples is an endless sequence of permutations of the dataset (epoch e uses
``randperm(n)`` seeded with ``seed + e``); optimiser step s takes examples ``s*B .. s*B + B - 1`` of
that stream. Resuming at step k therefore needs no saved sampler state beyond k itself, a killed
run continues with exactly the batches it would have seen, and process r of a world of size W takes
the r-th contiguous slice of the same global batch, so 1 and W processes train on the same data.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


class GlobalBatchSampler:
    def __init__(self, num_examples: int, batch_size: int, seed: int) -> None:
        if num_examples < 1:
            raise ValueError("the training set is empty")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n = num_examples
        self.batch_size = batch_size
        self.seed = seed

    @lru_cache(maxsize=4)  # noqa: B019 - few epochs alive at once; the sampler lives as long as training
    def _permutation(self, epoch: int) -> np.ndarray:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.n, generator=g).numpy()

    def global_batch(self, step: int) -> np.ndarray:
        positions = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epochs, offsets = np.divmod(positions, self.n)
        return np.array([self._permutation(int(e))[o] for e, o in zip(epochs, offsets, strict=True)])

    def rank_slice(self, step: int, rank: int, world_size: int) -> np.ndarray:
        if self.batch_size % world_size:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by {world_size} processes")
        per_rank = self.batch_size // world_size
        return self.global_batch(step)[rank * per_rank : (rank + 1) * per_rank]

    def epoch_of(self, step: int) -> float:
        return step * self.batch_size / self.n
