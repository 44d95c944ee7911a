"""What an encode with a report returns: the ids, and per chunk what the encoding could not keep.

Both tokenizers quantise inside a range fixed at fit: FAST clamps each DCT coefficient to its
per-(frequency, dim) range (native mode, see :data:`~action_tokenizer.fast.RANGE_MARGIN`), binning
saturates every value at the outermost bins. A chunk beyond that range still encodes to a valid,
well-formed stream, so neither ``encode`` nor ``decode`` can tell it apart from an ordinary one;
the public FAST processor does not clamp there, so a comparison against it shows the difference
only as an unexplained error (a held-out gripper 0.14 off at scale 50, against a rounding bound
of 0.03). :meth:`encode_with_report` says so at the one place that still sees the input, and bounds
the damage, so a data pipeline or a policy can count such chunks instead of training or acting on
them unknowingly. ``encode`` itself returns the same ids as before (the golden tests pin them).

Everything here is relative to the *normalised* chunk, what the tokenizer quantises: the
normaliser's own clip of values beyond the fit data's 1st/99th percentiles to [-1, 1] happens
before, is a deliberate design choice (see :mod:`action_tokenizer.normalizer`), and is not counted.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class EncodeResult:
    """Ids of N chunks plus, per chunk, how much the encoding clamped and what that can cost.

    Attributes:
        ids: N lists of ids, exactly what ``encode`` returns for the same chunks.
        num_clamped: (N,) int64, how many of the chunk's quantised quantities lay outside the range
            fitted for them and were moved onto its edge. FAST: integer DCT coefficients (in
            reference mode, also coefficients that do not come back from the ids as computed, e.g.
            dropped because their bytes never occurred at fit); binning: normalised values outside
            [-1, 1] (only pass-through dims or an un-normalised tokenizer can have them).
        max_clamp_steps: (N,) float64, the largest such move, in quantisation steps (FAST: integer
            coefficient units, 1/scale in normalised units; binning: bin widths, 2/n_bins). 0 when
            nothing was clamped.
        num_clipped_values: (N,) int64, normalised values outside the value range the decoder clips
            to (FAST: the smallest / largest normalised value seen at fit, per dim). Binning's value
            range is its bin range, so its clipped values are already counted in ``num_clamped``.
        error_bound: (N,) float64, an upper bound on ``|decoded - input|`` of any single value of the
            chunk, in normalised units (multiply by the normaliser's half-span of a dim for action
            units; pass-through dims are unscaled). Covers rounding, clamping and the decoder's
            value clip; equals ``rounding_bound`` for a chunk that lost nothing.
        rounding_bound: the same bound for a chunk that was not clamped: the price of rounding alone.
    """

    ids: list[list[int]]
    num_clamped: np.ndarray
    max_clamp_steps: np.ndarray
    num_clipped_values: np.ndarray
    error_bound: np.ndarray
    rounding_bound: float

    @property
    def clamped(self) -> np.ndarray:
        """(N,) bool: the chunk lost more than rounding (a coefficient clamped or a value clipped).

        Its ids are still a well-formed stream; decoding them gives a chunk within ``error_bound`` of
        the input, but possibly further than ``rounding_bound``.
        """
        return (self.num_clamped > 0) | (self.num_clipped_values > 0)

    @property
    def num_clamped_chunks(self) -> int:
        return int(self.clamped.sum())

    def counts(self) -> dict[str, int]:
        """Totals for logging: chunks, clamped chunks, clamped quantities and clipped values."""
        return {
            "chunks": len(self.ids),
            "clamped_chunks": self.num_clamped_chunks,
            "clamped": int(self.num_clamped.sum()),
            "clipped_values": int(self.num_clipped_values.sum()),
        }
