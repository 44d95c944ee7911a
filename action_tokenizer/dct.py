"""The lossy half of FAST: orthonormal DCT-II along time, scaling and rounding.

Everything FAST loses, it loses here (the BPE stage is lossless). Because the orthonormal DCT is
an orthogonal matrix ``C`` (T x T), the reconstruction error of a chunk is exactly the rounding error
of its coefficients rotated back::

    x_hat - x = C^T (round(s C x) - s C x) / s        per action dimension, s = scale

Each rounding error e lies in [-0.5, 0.5], so (see :func:`rounding_error_bound`):

* L2 over a T x D chunk:  ||x_hat - x||_2 = ||e||_2 / s <= sqrt(T * D) * 0.5 / s
* RMSE over a chunk:      <= 0.5 / s            (the typical value is 1 / (s * sqrt(12)))
* one value at step t:    |x_hat_t - x_t| <= 0.5 / s * sum_k |C[k, t]|   (<= sqrt(T) * 0.5 / s)

Clipping the reconstruction to a box that contains the true values (as the tokenizers do) can only
shrink each per-value error, so the bounds also hold after clipping.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.fft import dct, idct


def dct_coefficients(chunks: np.ndarray) -> np.ndarray:
    """Real DCT-II coefficients along time of chunks (N, T, D); row k holds frequency k."""
    return dct(np.asarray(chunks, dtype=np.float64), type=2, axis=1, norm="ortho")


def quantize(chunks: np.ndarray, scale: float) -> np.ndarray:
    """Chunks (N, T, D) -> integer coefficients (N, T, D): ``around(dct(chunks) * scale)``.

    ``np.around`` (round half to even) matches the reference processor bit for bit.
    """
    return np.around(dct_coefficients(chunks) * scale).astype(np.int64)


def dequantize(coefficients: np.ndarray, scale: float) -> np.ndarray:
    """Integer coefficients (N, T, D) -> chunks (N, T, D) via the inverse orthonormal DCT."""
    return idct(np.asarray(coefficients, dtype=np.float64) / scale, type=2, axis=1, norm="ortho")


def dct_matrix(time_horizon: int) -> np.ndarray:
    """The orthonormal DCT-II matrix C (T x T) with ``coefficients = C @ chunk``."""
    return dct(np.eye(time_horizon), type=2, axis=0, norm="ortho")


def coefficient_magnitude_bound(time_horizon: int, scale: float, value_bound: float = 1.0) -> int:
    """Largest |integer coefficient| a chunk with values in [-value_bound, value_bound] can produce.

    Each orthonormal coefficient is at most the L2 norm of its column: sqrt(T) * value_bound.
    """
    return math.ceil(math.sqrt(time_horizon) * value_bound * scale)


@dataclasses.dataclass(frozen=True)
class RoundingErrorBound:
    """Worst-case reconstruction error of FAST's rounding for a T x D chunk at one scale."""

    rmse: float  # root mean square over the T*D values of one chunk
    l2: float  # L2 norm over the T*D values of one chunk
    per_value: float  # largest possible error of any single value


def rounding_error_bound(time_horizon: int, action_dim: int, scale: float) -> RoundingErrorBound:
    """The exact worst-case bounds derived in the module docstring."""
    half_step = 0.5 / scale
    column_l1 = np.abs(dct_matrix(time_horizon)).sum(axis=0).max()
    return RoundingErrorBound(
        rmse=half_step,
        l2=math.sqrt(time_horizon * action_dim) * half_step,
        per_value=float(column_l1) * half_step,
    )
