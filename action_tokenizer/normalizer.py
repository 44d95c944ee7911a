"""Per-dimension quantile normalisation of actions to [-1, 1].

FAST quantises DCT coefficients with one ``scale`` for every dimension, so every dimension must
span the same range first; otherwise a dimension measured in radians would get a coarser effective
resolution than one in metres. The 1st and 99th percentiles (not min / max) set the range so that
a few outliers do not squash the bulk of the data into a handful of quantisation steps; values
beyond them are clipped to [-1, 1].

Binary gripper dimensions pass through untouched: CALVIN's gripper is already -1/+1 and quantile
normalising a two-valued signal would only move it off those values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from action_tokenizer.gripper import resolve_dims

# A dimension whose quantile range is below this is treated as constant (it maps to 0 and back).
_DEGENERATE_SPAN = 1e-8


@dataclasses.dataclass(frozen=True, eq=False)
class ActionNormalizer:
    """Maps actions to [-1, 1] per dimension and back.

    Args:
        low: per-dimension value mapped to -1 (the ``lower_percentile`` of the fit data).
        high: per-dimension value mapped to +1 (the ``upper_percentile``).
        passthrough_dims: dimensions copied unchanged in both directions (e.g. the gripper).
        lower_percentile, upper_percentile: the percentiles the statistics came from (kept for the record).
    """

    low: np.ndarray
    high: np.ndarray
    passthrough_dims: tuple[int, ...] = ()
    lower_percentile: float = 1.0
    upper_percentile: float = 99.0

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=np.float64).reshape(-1)
        high = np.asarray(self.high, dtype=np.float64).reshape(-1)
        if low.shape != high.shape:
            raise ValueError(f"low has {low.size} dims but high has {high.size}")
        if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ValueError("normaliser statistics must be finite")
        if np.any(high < low):
            raise ValueError(f"normaliser high < low in dims {np.flatnonzero(high < low).tolist()}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "passthrough_dims", resolve_dims(self.passthrough_dims, low.size, "passthrough"))

    # ----------------------------------------------------------------- fit
    @classmethod
    def fit(
        cls,
        actions: np.ndarray,
        *,
        passthrough_dims: Sequence[int] | None = None,
        lower_percentile: float = 1.0,
        upper_percentile: float = 99.0,
    ) -> ActionNormalizer:
        """Fit from actions of shape (..., D); every leading axis is pooled.

        ``passthrough_dims=None`` means the default: the last dimension for 7-d (CALVIN) actions,
        none otherwise. Pass ``()`` to normalise every dimension.
        """
        data = np.asarray(actions, dtype=np.float64)
        if data.ndim < 1 or data.shape[-1] == 0:
            raise ValueError(f"actions must have shape (..., D) with D >= 1, got {data.shape}")
        data = data.reshape(-1, data.shape[-1])
        if data.shape[0] == 0:
            raise ValueError("cannot fit a normaliser on zero actions")
        if not np.all(np.isfinite(data)):
            raise ValueError("actions contain NaN or inf; clean the data before fitting the normaliser")
        if not 0 <= lower_percentile < upper_percentile <= 100:
            raise ValueError(f"need 0 <= lower < upper <= 100, got {lower_percentile}, {upper_percentile}")
        low, high = np.percentile(data, [lower_percentile, upper_percentile], axis=0)
        dims = resolve_dims(passthrough_dims, data.shape[1], "passthrough")
        low[list(dims)], high[list(dims)] = -1.0, 1.0  # recorded as identity; never used for these dims
        return cls(low, high, dims, float(lower_percentile), float(upper_percentile))

    # ---------------------------------------------------------- transforms
    @property
    def action_dim(self) -> int:
        return int(self.low.size)

    def _affine(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centre, half-span and mask of the dimensions that are actually rescaled."""
        centre = (self.high + self.low) / 2
        half = (self.high - self.low) / 2
        scaled = np.ones(self.action_dim, dtype=bool)
        scaled[list(self.passthrough_dims)] = False
        return centre, np.where(half > _DEGENERATE_SPAN, half, 1.0), scaled

    def _check(self, actions: np.ndarray) -> np.ndarray:
        data = np.asarray(actions, dtype=np.float64)
        if data.ndim < 1 or data.shape[-1] != self.action_dim:
            raise ValueError(
                f"normaliser was fitted on {self.action_dim}-d actions but got an array of shape {data.shape}"
            )
        return data

    def transform(self, actions: np.ndarray) -> np.ndarray:
        """Actions (..., D) -> normalised actions in [-1, 1] (pass-through dims unchanged)."""
        data = self._check(actions)
        centre, half, scaled = self._affine()
        out = np.clip((data - centre) / half, -1.0, 1.0)
        degenerate = (self.high - self.low) / 2 <= _DEGENERATE_SPAN
        out = np.where(degenerate, 0.0, out)
        return np.where(scaled, out, data)

    def inverse(self, normalized: np.ndarray) -> np.ndarray:
        """Normalised actions (..., D) -> actions; a constant dimension comes back as its constant."""
        data = self._check(normalized)
        centre, half, scaled = self._affine()
        degenerate = (self.high - self.low) / 2 <= _DEGENERATE_SPAN
        out = np.where(degenerate, centre, data * half + centre)
        return np.where(scaled, out, data)

    # ------------------------------------------------------------- persist
    def to_dict(self) -> dict[str, Any]:
        return {
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "passthrough_dims": list(self.passthrough_dims),
            "lower_percentile": self.lower_percentile,
            "upper_percentile": self.upper_percentile,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActionNormalizer:
        missing = [k for k in ("low", "high") if k not in data]
        if missing:
            raise ValueError(f"normaliser statistics lack {missing}; expected keys low, high, passthrough_dims")
        return cls(
            np.asarray(data["low"], dtype=np.float64),
            np.asarray(data["high"], dtype=np.float64),
            tuple(data.get("passthrough_dims", ())),
            float(data.get("lower_percentile", 1.0)),
            float(data.get("upper_percentile", 99.0)),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ActionNormalizer):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((tuple(self.low), tuple(self.high), self.passthrough_dims))
