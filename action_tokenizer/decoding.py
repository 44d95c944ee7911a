"""What a decode returns, and how malformed token streams are reported.

A policy generates action tokens with a sampler that knows nothing about FAST, so a stream can be
too short (EOA sampled early), too long, or contain ids that cannot occur. Inside a rollout that
must never raise: every chunk decodes to *something* finite and inside the fitted range, and the
problem is recorded per chunk so the caller can count it. ``strict=True`` turns the same findings
into a :class:`MalformedTokensError` for tests and offline tools.

Separately from those problems, a decode marks *saturated* chunks (:attr:`DecodeResult.saturated`):
a well-formed stream one of whose quantities sits exactly on the edge of the fitted range. An
encode that clamped lands exactly there, so this is the decode-side trace of the loss that
``encode_with_report`` (:class:`~action_tokenizer.encoding.EncodeResult`) reports at encode time; it
is kept out of :data:`ISSUE_KINDS` and :attr:`DecodeResult.malformed` because the stream is not
broken and nothing was repaired.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Every kind of problem a decoder can flag, with what it means.
ISSUE_KINDS: dict[str, str] = {
    "empty": "no coefficient could be decoded; the neutral chunk was returned",
    "too_short": "fewer coefficients than T*D; the missing ones were taken from the neutral chunk",
    "too_long": "more coefficients than T*D; the extra ones were dropped",
    "unknown_id": "ids outside the tokenizer's vocabulary were dropped",
    "invalid_bytes": "tokens formed bytes that are not a character; those bytes were dropped",
    "out_of_range": "coefficients or values outside the fitted range were clamped",
}


class MalformedTokensError(ValueError):
    """Raised by ``decode(..., strict=True)`` when any chunk's token stream is malformed."""


@dataclasses.dataclass
class DecodeResult:
    """Decoded chunks plus, per chunk, which problems were found and repaired.

    Attributes:
        actions: (N, T, D) float64 chunks in action units (normaliser inverted), always finite.
        issues: kind -> (N,) bool, one entry per kind in :data:`ISSUE_KINDS`.
        num_decoded: (N,) number of coefficients (FAST) or values (binning) read from each stream.
        coefficients: (N, T, D) integer DCT coefficients actually used (FAST only).
        saturated: (N,) bool, a quantity read from the chunk's stream (not filled in by a repair)
            sits exactly on the edge of the fitted range: a FAST coefficient equal to its
            per-(frequency, dim) clamp bound, a bin that is the first or last one (binning, gripper
            dims excluded: their -1/+1 always sit there). What a clamped encode produces, so in a
            policy's output it says the model asked for a chunk at or beyond what the tokenizer can
            represent. It does not prove clamping happened: a sampled stream may name the edge value
            itself, and binning's edge bins also hold in-range values within a bin of -1/+1. Native
            FAST widens its range past the fit data (``RANGE_MARGIN``), so there an encoded chunk is
            marked exactly when its encode clamped a coefficient. FAST reference mode has no such
            range (its bounds are the fit's extreme coefficients, which ordinary chunks reach) and
            marks nothing. Nor does an unmarked chunk prove nothing was lost: a value clipped to
            the fitted value range leaves no trace in the stream. Independent of :attr:`malformed`;
            a stream with out-of-range coefficients is both ``out_of_range`` and saturated. All
            False when not given.
    """

    actions: np.ndarray
    issues: dict[str, np.ndarray]
    num_decoded: np.ndarray
    coefficients: np.ndarray | None = None
    saturated: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.actions)
        self.saturated = np.zeros(n, dtype=bool) if self.saturated is None else np.asarray(self.saturated, dtype=bool)
        if self.saturated.shape != (n,):
            raise ValueError(f"saturated must hold one flag per chunk ({n}), got shape {self.saturated.shape}")

    @property
    def malformed(self) -> np.ndarray:
        """(N,) bool: the chunk's stream had at least one problem."""
        flags = np.zeros(len(self.actions), dtype=bool)
        for f in self.issues.values():
            flags |= f
        return flags

    @property
    def num_malformed(self) -> int:
        return int(self.malformed.sum())

    @property
    def num_saturated(self) -> int:
        """Chunks with a quantity on the edge of the fitted range (see :attr:`saturated`); not in ``counts()``."""
        return int(np.sum(self.saturated))

    def counts(self) -> dict[str, int]:
        """Chunk counts per issue kind, plus ``chunks`` and ``malformed`` totals (for logging)."""
        out = {"chunks": len(self.actions), "malformed": self.num_malformed}
        out.update({k: int(v.sum()) for k, v in self.issues.items()})
        return out

    def describe(self, index: int, expected: int) -> str:
        kinds = [k for k, v in self.issues.items() if v[index]]
        return f"chunk {index}: {', '.join(kinds)} ({int(self.num_decoded[index])} of {expected} values decoded)"

    def raise_if_malformed(self, expected: int) -> None:
        bad = np.flatnonzero(self.malformed)
        if bad.size:
            lines = [self.describe(int(i), expected) for i in bad[:5]]
            more = f" and {bad.size - 5} more" if bad.size > 5 else ""
            raise MalformedTokensError(
                f"{bad.size} of {len(self.actions)} token streams are malformed: " + "; ".join(lines) + more
            )


def empty_issues(n: int) -> dict[str, np.ndarray]:
    return {k: np.zeros(n, dtype=bool) for k in ISSUE_KINDS}


def as_token_batch(tokens: Any) -> list[np.ndarray]:
    """Accept a batch of token streams (lists, arrays, a 2-D array or tensor) as int64 arrays.

    A single flat stream is rejected rather than guessed at: ``[3, 7, 9]`` could be one stream of
    three tokens or three streams of one.
    """
    if hasattr(tokens, "detach"):  # torch tensor, without importing torch
        tokens = tokens.detach().cpu().numpy()
    if isinstance(tokens, np.ndarray):
        if tokens.ndim != 2:
            raise ValueError(f"decode takes a batch of token streams; got an array of shape {tokens.shape}")
        return [row.astype(np.int64) for row in tokens]
    if not isinstance(tokens, Sequence) or isinstance(tokens, str | bytes):
        raise ValueError(f"decode takes a batch (list) of token streams, got {type(tokens).__name__}")
    out = []
    for i, stream in enumerate(tokens):
        if isinstance(stream, int | np.integer):
            raise ValueError("decode takes a batch of token streams; wrap a single stream as [ids]")
        arr = np.asarray(stream)
        if arr.size == 0:
            arr = np.zeros(0, dtype=np.int64)
        if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
            raise ValueError(f"token stream {i} must be a 1-D sequence of integer ids, got {arr.dtype} {arr.shape}")
        out.append(arr.astype(np.int64))
    return out
