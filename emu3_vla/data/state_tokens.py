"""Proprioceptive state as input tokens: a few state dimensions, each cut into 256 bins.

The Emu3 paper's robot layout has no state; the model must read where the arm is from the images.
At 96x96 pixels behind an 8x VQ code grid that is coarse (a code covers ~5 cm of the table), and
the closed-loop failures of the CPU demo are exactly that: the gripper closes a few centimetres off
a switch. Writing the arm's pose as tokens, as pi0-FAST does with its discretised state prefix,
gives the policy millimetre positions at a cost of one token per dimension.

Each chosen dimension is mapped linearly from the dataset's [1 %, 99 %] quantile range onto
``bins`` bins (values outside are clipped to the end bins). The range is fitted once on the training
data and saved with the model, so training and closed-loop control bin the same way. Dimensions
that wrap (CALVIN's tcp roll sits at +-pi) should not be chosen: a wrap would jump across all bins.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: Quantiles of the training states that span the bins.
FIT_QUANTILES = (0.01, 0.99)


@dataclasses.dataclass(frozen=True)
class StateBinning:
    """``dims`` index the dataset's state vector; ``low``/``high`` are their fitted ranges."""

    dims: tuple[int, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    bins: int = 256

    def __post_init__(self) -> None:
        if not self.dims:
            raise ValueError("a state binning needs at least one dimension")
        if not (len(self.dims) == len(self.low) == len(self.high)):
            raise ValueError(f"state dims {self.dims}, low {self.low} and high {self.high} must have the same length")
        if self.bins < 2:
            raise ValueError(f"state bins must be >= 2, got {self.bins}")
        if min(self.dims) < 0:
            raise ValueError(f"state dims must be non-negative indices, got {self.dims}")

    @classmethod
    def fit(cls, states: np.ndarray, dims: tuple[int, ...], bins: int = 256) -> StateBinning:
        """Ranges from ``(N, D)`` training states (their 1 % and 99 % quantiles per chosen dim)."""
        states = np.asarray(states, dtype=np.float64)
        if states.ndim != 2 or len(states) == 0:
            raise ValueError(f"fitting the state bins needs (N, D) states with N > 0, got shape {states.shape}")
        if max(dims) >= states.shape[1]:
            raise ValueError(
                f"state dims {tuple(dims)} ask for index {max(dims)} but the dataset's state has "
                f"{states.shape[1]} dimensions"
            )
        chosen = states[:, list(dims)]
        low, high = np.quantile(chosen, FIT_QUANTILES, axis=0)
        return cls(tuple(int(d) for d in dims), tuple(map(float, low)), tuple(map(float, high)), int(bins))

    def encode(self, state: np.ndarray) -> np.ndarray:
        """``(..., D)`` state vectors -> ``(..., len(dims))`` int64 bins in ``[0, bins)``."""
        state = np.asarray(state, dtype=np.float64)
        if state.shape[-1] <= max(self.dims):
            raise ValueError(
                f"the state has {state.shape[-1]} dimensions but the model reads dims {self.dims}; "
                "pass the same state vector as in training (CALVIN: the 15-d robot_obs)"
            )
        chosen = state[..., list(self.dims)]
        if not np.all(np.isfinite(chosen)):
            raise ValueError("the state contains NaN or infinite values")
        low, high = np.asarray(self.low), np.asarray(self.high)
        unit = (chosen - low) / np.maximum(high - low, 1e-9)
        return np.clip(np.floor(unit * self.bins), 0, self.bins - 1).astype(np.int64)

    def centers(self, bins: np.ndarray) -> np.ndarray:
        """The value each bin stands for (its centre): the rounding error of :meth:`encode`."""
        low, high = np.asarray(self.low), np.asarray(self.high)
        return low + (np.asarray(bins, dtype=np.float64) + 0.5) / self.bins * (high - low)
