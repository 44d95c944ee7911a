"""Per-episode image statistics for lerobot's streaming video encoder, counted as byte histograms.

lerobot's streaming encoder (``streaming_encoding=True``, what :class:`~eval.collection.writers.
LeRobotWriter` uses) updates a ``RunningQuantileStats`` with every frame of every camera: per frame
and channel it sorts the pixels into a 5,000-bin histogram, and re-bins that histogram in a Python
loop whenever the frame widens the running min/max. For the small frames this package records
(96x96 and 48x48) that bookkeeping, not the video encoding, is the writer's main cost: measured on
119 expert episodes (12,723 frames), 51 % of the writer's CPU time, and the writer shares the two
cores with the simulators, so it slows collection as a whole (``bench/writer_bench.py``).

:class:`ByteImageStats` gives the same statistics for 8-bit images at a fraction of the cost: a frame
only adds its pixels to a 256-entry count per channel (``np.bincount``), and the statistics are made
once per episode from those counts. ``min``, ``max`` and ``count`` equal lerobot's; ``mean`` and
``std`` are exact (lerobot's running float32 sums are off by up to 1e-4 relative); the quantiles come
from the histogram lerobot would build from the whole episode at once (5,000 bins between the
episode's min and max), so they differ from the running version's only by its re-binning error
(about one bin, 1/5,000 of the range). Anything but uint8 (depth maps) takes lerobot's own code path
unchanged. Measured by ``bench/writer_bench.py`` on 61 expert episodes (6,567 frames at 96x96 /
48x48): the writer's CPU per frame 6.68 -> 3.68 ms (1.81x less); with the rollouts' 13.56 ms per
frame that is 1.17x faster collection.

lerobot's encoder thread looks the class up in ``lerobot.datasets.compute_stats`` when it starts, so
:func:`acquire_byte_image_stats` swaps it in there while a writer is open, and
:func:`release_byte_image_stats` puts lerobot's back when the last open writer finishes.
"""

from __future__ import annotations

import threading

import numpy as np
from lerobot.datasets import compute_stats

_LEROBOT_STATS = compute_stats.RunningQuantileStats
_LOCK = threading.Lock()
_OPEN = 0


class ByteImageStats(_LEROBOT_STATS):
    """lerobot's running statistics, counted per byte value for uint8 pixels (see the module docstring)."""

    def __init__(self, quantile_list: list[float] | None = None, num_quantile_bins: int = 5000) -> None:
        super().__init__(quantile_list, num_quantile_bins)
        self._byte_counts: np.ndarray | None = None  # (channels, 256) pixel counts; None until a uint8 batch

    def update(self, batch: np.ndarray) -> None:
        if batch.dtype != np.uint8 or (self._count and self._byte_counts is None):
            if self._byte_counts is not None:
                raise TypeError(f"ByteImageStats got {batch.dtype} pixels after uint8 ones; use one dtype per tracker")
            super().update(batch)
            return
        pixels = batch.reshape(-1, batch.shape[-1])
        channels = pixels.shape[1]
        if self._byte_counts is None:
            self._byte_counts = np.zeros((channels, 256), np.int64)
        elif self._byte_counts.shape[0] != channels:
            raise ValueError("The length of new vectors does not match the initialized vector length.")
        for channel in range(channels):
            self._byte_counts[channel] += np.bincount(pixels[:, channel], minlength=256)

    def get_statistics(self) -> dict[str, np.ndarray]:
        if self._byte_counts is not None:
            self._fold_byte_counts()
        return super().get_statistics()

    def _fold_byte_counts(self) -> None:
        """Fill lerobot's fields (moments, extremes, one histogram per channel) from the byte counts."""
        counts = self._byte_counts
        values = np.arange(256, dtype=np.float64)
        total = counts.sum(axis=1)
        if not np.all(total == total[0]):
            raise ValueError("channels hold different pixel counts")
        present = counts > 0
        self._count = int(total[0])
        self._min = np.array([values[row].min() for row in present], np.float32)
        self._max = np.array([values[row].max() for row in present], np.float32)
        self._mean = (counts @ values / total).astype(np.float32)
        self._mean_of_squares = (counts @ values**2 / total).astype(np.float32)
        self._histograms, self._bin_edges = [], []
        for channel, row in enumerate(counts):
            edges = np.linspace(self._min[channel] - 1e-10, self._max[channel] + 1e-10, self._num_quantile_bins + 1)
            bins = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, self._num_quantile_bins - 1)
            self._histograms.append(np.bincount(bins, weights=row, minlength=self._num_quantile_bins).astype(float))
            self._bin_edges.append(edges)
        self._byte_counts = None


def acquire_byte_image_stats() -> None:
    """Swap :class:`ByteImageStats` into lerobot (counted: every call needs one ``release``)."""
    global _OPEN
    with _LOCK:
        _OPEN += 1
        compute_stats.RunningQuantileStats = ByteImageStats


def release_byte_image_stats() -> None:
    """Undo one :func:`acquire_byte_image_stats`; the last one puts lerobot's own class back."""
    global _OPEN
    with _LOCK:
        _OPEN = max(_OPEN - 1, 0)
        if _OPEN == 0:
            compute_stats.RunningQuantileStats = _LEROBOT_STATS
