"""Byte-histogram image statistics (eval/collection/image_stats.py) give lerobot's statistics: the
same moments and extremes, the quantiles of lerobot's histogram over the whole episode, and lerobot's
own class back once the last writer is done."""

from __future__ import annotations

import numpy as np
import pytest
from lerobot.datasets import compute_stats

from eval.collection.image_stats import ByteImageStats, acquire_byte_image_stats, release_byte_image_stats


def frames(seed: int = 0, count: int = 12) -> list[np.ndarray]:
    """(pixels, 3) uint8 frames with a narrow, shifting range per channel (so the running min/max widen)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(40 + 3 * i, 90 + 9 * i, size=(24 * 24, 3), dtype=np.uint8) for i in range(count)]


def test_byte_counts_equal_lerobots_statistics_over_the_whole_episode():
    ours, whole = ByteImageStats(), compute_stats.RunningQuantileStats()
    for frame in frames():
        ours.update(frame)
    whole.update(np.concatenate(frames()))  # lerobot's histogram with the episode's final min / max
    got, want = ours.get_statistics(), whole.get_statistics()
    assert got.keys() == want.keys()
    for key in ("min", "max", "count"):
        np.testing.assert_array_equal(got[key], want[key])
    for key in ("q01", "q10", "q50", "q90", "q99"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)
    pixels = np.concatenate(frames()).astype(np.float64)  # moments from exact counts: numpy's float64 values
    np.testing.assert_allclose(got["mean"], pixels.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(got["std"], pixels.std(axis=0), rtol=1e-6)
    np.testing.assert_allclose(want["std"], pixels.std(axis=0), rtol=1e-3)  # lerobot's float32 sums: close


def test_running_lerobot_statistics_differ_at_most_by_their_rebinning():
    ours, running = ByteImageStats(), compute_stats.RunningQuantileStats()
    for frame in frames(seed=1):
        ours.update(frame)
        running.update(frame)
    got, want = ours.get_statistics(), running.get_statistics()
    bin_width = (want["max"] - want["min"]) / 5000
    for key in ("q01", "q10", "q50", "q90", "q99"):
        assert np.all(np.abs(got[key] - want[key]) <= 2 * bin_width + 1e-6), key
    np.testing.assert_allclose(got["mean"], want["mean"], rtol=1e-5)
    np.testing.assert_allclose(got["std"], want["std"], rtol=1e-4)


def test_other_dtypes_take_lerobots_path_and_mixing_is_refused():
    depth = np.random.default_rng(2).random((100, 1)).astype(np.float32)
    ours, theirs = ByteImageStats(), compute_stats.RunningQuantileStats()
    ours.update(depth)
    theirs.update(depth)
    for key, value in theirs.get_statistics().items():
        np.testing.assert_array_equal(ours.get_statistics()[key], value)
    mixed = ByteImageStats()
    mixed.update(frames()[0])
    with pytest.raises(TypeError, match="uint8"):
        mixed.update(depth)


def test_lerobots_class_is_back_when_the_last_user_is_done():
    lerobots = compute_stats.RunningQuantileStats
    assert lerobots is not ByteImageStats
    acquire_byte_image_stats()
    try:
        acquire_byte_image_stats()
        try:
            assert compute_stats.RunningQuantileStats is ByteImageStats
        finally:
            release_byte_image_stats()
        assert compute_stats.RunningQuantileStats is ByteImageStats  # the outer user is still writing
    finally:
        release_byte_image_stats()
    assert compute_stats.RunningQuantileStats is lerobots
