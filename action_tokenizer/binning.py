"""Uniform per-value binning: the naive action tokenizer (RT-2 / OpenVLA style), as a baseline.

Every normalised value of a chunk becomes one token, the index of its bin among ``n_bins`` equal
bins over [-1, 1], in time-major order (step 0's D values, then step 1's, ...). A chunk of T x D
values always costs T*D tokens, which is what FAST is measured against, and what the demo's
"naive 256-bin action tokens instead of FAST" ablation trains on. Same interface as
:class:`~action_tokenizer.fast.FastTokenizer`: ``fit``, ``encode``, ``decode`` (relaxed, with the
same per-chunk flags), ``save`` / ``load``.

Decoding maps a bin to its centre, so the per-value error is at most half a bin (1/n_bins) and
about 2/(n_bins * sqrt(12)) RMS for values spread over [-1, 1]. Repairs follow FAST's policy: ids
outside [0, n_bins) are dropped, a short stream takes the missing values from the neutral chunk
(0, gripper +1), a long one is truncated.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from action_tokenizer.data import as_chunk_array
from action_tokenizer.decoding import DecodeResult, as_token_batch, empty_issues
from action_tokenizer.encoding import EncodeResult
from action_tokenizer.gripper import NEUTRAL_GRIPPER, default_gripper_dims, resolve_dims
from action_tokenizer.jsonfmt import dumps_readable
from action_tokenizer.normalizer import ActionNormalizer

BINNING_FORMAT = "emu3-vla/binning"
FORMAT_VERSION = 1
CONFIG_FILE = "processor_config.json"


@dataclasses.dataclass(frozen=True, eq=False)
class BinningConfig:
    n_bins: int
    time_horizon: int
    action_dim: int
    gripper_dims: tuple[int, ...]
    normalizer: ActionNormalizer | None = None

    def __post_init__(self) -> None:
        if self.n_bins < 2:
            raise ValueError(f"n_bins must be at least 2, got {self.n_bins}")
        if self.time_horizon < 1 or self.action_dim < 1:
            raise ValueError(f"time_horizon and action_dim must be >= 1, got {self.time_horizon}, {self.action_dim}")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": BINNING_FORMAT,
            "format_version": FORMAT_VERSION,
            "n_bins": self.n_bins,
            "vocab_size": self.n_bins,
            "time_horizon": self.time_horizon,
            "action_dim": self.action_dim,
            "order": "time-major",
            "gripper_dims": list(self.gripper_dims),
            "normalizer": None if self.normalizer is None else self.normalizer.to_dict(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BinningConfig:
        if data.get("format") != BINNING_FORMAT:
            raise ValueError(f"not a binning tokenizer config (format={data.get('format')!r})")
        if int(data.get("format_version", 1)) > FORMAT_VERSION:
            raise ValueError(f"binning format_version {data['format_version']} is newer than this code reads")
        norm = data.get("normalizer")
        return cls(
            n_bins=int(data["n_bins"]),
            time_horizon=int(data["time_horizon"]),
            action_dim=int(data["action_dim"]),
            gripper_dims=tuple(int(d) for d in data.get("gripper_dims", ())),
            normalizer=None if norm is None else ActionNormalizer.from_dict(norm),
        )


class BinningTokenizer:
    """``n_bins`` uniform bins per normalised value; T*D tokens per chunk."""

    def __init__(self, config: BinningConfig) -> None:
        self.config = config

    @classmethod
    def fit(
        cls,
        chunks: np.ndarray | Iterable[np.ndarray],
        *,
        n_bins: int = 256,
        normalizer: ActionNormalizer | Literal["fit"] | None = "fit",
        passthrough_dims: Sequence[int] | None = None,
        gripper_dims: Sequence[int] | None = None,
    ) -> BinningTokenizer:
        """Fit the normaliser (unless given) and record the chunk shape; the bins themselves are fixed."""
        data = as_chunk_array(chunks)
        _, horizon, dim = data.shape
        if normalizer == "fit":
            normalizer = ActionNormalizer.fit(data, passthrough_dims=passthrough_dims)
        elif normalizer is not None and not isinstance(normalizer, ActionNormalizer):
            raise ValueError(f"normalizer must be 'fit', an ActionNormalizer or None, got {normalizer!r}")
        if normalizer is not None and normalizer.action_dim != dim:
            raise ValueError(f"the normaliser is for {normalizer.action_dim}-d actions but the chunks are {dim}-d")
        if gripper_dims is not None:
            grip = resolve_dims(gripper_dims, dim, "gripper dimension")
        else:
            grip = normalizer.passthrough_dims if normalizer is not None else default_gripper_dims(dim)
        return cls(BinningConfig(int(n_bins), horizon, dim, grip, normalizer))

    # ---------------------------------------------------------- properties
    @property
    def n_bins(self) -> int:
        return self.config.n_bins

    @property
    def vocab_size(self) -> int:
        return self.config.n_bins

    @property
    def time_horizon(self) -> int:
        return self.config.time_horizon

    @property
    def action_dim(self) -> int:
        return self.config.action_dim

    @property
    def normalizer(self) -> ActionNormalizer | None:
        return self.config.normalizer

    def gripper_dims(self, action_dim: int | None = None) -> tuple[int, ...]:
        return self.config.gripper_dims

    def max_stream_length(self, time_horizon: int | None = None, action_dim: int | None = None) -> int:
        return (time_horizon or self.time_horizon) * (action_dim or self.action_dim)

    def coefficients_per_token(self) -> np.ndarray:
        """Every bin id stands for one value (see :meth:`FastTokenizer.coefficients_per_token`)."""
        return np.ones(self.vocab_size, dtype=np.int64)

    def __repr__(self) -> str:
        return f"BinningTokenizer(n_bins={self.n_bins}, T={self.time_horizon}, D={self.action_dim})"

    # ------------------------------------------------------------- encode
    def bin_centres(self) -> np.ndarray:
        return -1.0 + (np.arange(self.n_bins) + 0.5) * (2.0 / self.n_bins)

    def _normalized(self, chunks: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        data = as_chunk_array(chunks)
        if data.shape[1:] != (self.time_horizon, self.action_dim):
            raise ValueError(
                f"this tokenizer encodes chunks of shape (N, {self.time_horizon}, {self.action_dim}), got {data.shape}"
            )
        return self.normalizer.transform(data) if self.normalizer is not None else data

    def _bins(self, normalized: np.ndarray) -> list[list[int]]:
        bins = np.floor((np.clip(normalized, -1.0, 1.0) + 1.0) / 2.0 * self.n_bins).astype(np.int64)
        return np.clip(bins, 0, self.n_bins - 1).reshape(len(normalized), -1).tolist()

    def encode(self, chunks: np.ndarray | Iterable[np.ndarray]) -> list[list[int]]:
        """Chunks in action units (N, T, D) -> N lists of T*D bin ids in [0, n_bins).

        Values outside [-1, 1] saturate at the outer bins; :meth:`encode_with_report` says where."""
        return self._bins(self._normalized(chunks))

    def encode_with_report(self, chunks: np.ndarray | Iterable[np.ndarray]) -> EncodeResult:
        """Like :meth:`encode` (same ids), plus per chunk the values clamped to [-1, 1] and a bound.

        The same report as :meth:`FastTokenizer.encode_with_report`, so callers treat both alike.
        A bin's centre is within half a bin (1/n_bins) of any value in it, and clamping moves a value
        by ``delta = max(|x| - 1, 0)``, so each value decodes within ``1/n_bins + delta`` of the input.
        The normaliser already clips its rescaled dims to [-1, 1] (not counted here, see
        :mod:`action_tokenizer.encoding`), so only pass-through dims (or an un-normalised tokenizer)
        can be clamped.
        """
        normalized = self._normalized(chunks)
        beyond = np.maximum(np.abs(normalized) - 1.0, 0.0)
        largest = beyond.max(axis=(1, 2))
        return EncodeResult(
            ids=self._bins(normalized),
            num_clamped=np.count_nonzero(beyond, axis=(1, 2)).astype(np.int64),
            max_clamp_steps=largest / (2.0 / self.n_bins),
            num_clipped_values=np.zeros(len(normalized), dtype=np.int64),
            error_bound=1.0 / self.n_bins + largest,
            rounding_bound=1.0 / self.n_bins,
        )

    # ------------------------------------------------------------- decode
    def _neutral_values(self) -> np.ndarray:
        chunk = np.zeros((self.time_horizon, self.action_dim))
        grip = list(self.config.gripper_dims)
        if grip:
            value = np.where(np.isin(np.arange(self.action_dim), grip), NEUTRAL_GRIPPER, 0.0)
            if self.normalizer is not None:
                value = self.normalizer.transform(value)
            chunk[:, grip] = value[grip]
        return chunk.reshape(-1)

    def _check_shape(self, time_horizon: int | None, action_dim: int | None) -> None:
        if (time_horizon and time_horizon != self.time_horizon) or (action_dim and action_dim != self.action_dim):
            raise ValueError(
                f"a binning tokenizer decodes the shape it was fitted on ({self.time_horizon}, {self.action_dim}), "
                f"not ({time_horizon}, {action_dim}); fit another one"
            )

    def decode(
        self, tokens: Any, *, strict: bool = False, time_horizon: int | None = None, action_dim: int | None = None
    ) -> DecodeResult:
        """N token streams -> chunks (N, T, D) in action units, with per-chunk malformed and saturated flags."""
        self._check_shape(time_horizon, action_dim)
        streams = as_token_batch(tokens)
        n_chunks, length = len(streams), self.time_horizon * self.action_dim
        issues = empty_issues(n_chunks)
        values = np.tile(self._neutral_values(), (n_chunks, 1))
        counts = np.zeros(n_chunks, dtype=np.int64)
        read_bins = np.full((n_chunks, length), -1, dtype=np.int64)  # -1: filled in by a repair
        centres = self.bin_centres()
        for i, ids in enumerate(streams):
            known = (ids >= 0) & (ids < self.n_bins)
            if not known.all():
                issues["unknown_id"][i] = True
                ids = ids[known]
            counts[i] = ids.size
            values[i, : min(ids.size, length)] = centres[ids[:length]]
            read_bins[i, : min(ids.size, length)] = ids[:length]
        issues["empty"] = counts == 0
        issues["too_short"] = (counts > 0) & (counts < length)
        issues["too_long"] = counts > length
        normalized = values.reshape(n_chunks, self.time_horizon, self.action_dim)
        actions = self.normalizer.inverse(normalized) if self.normalizer is not None else normalized
        # Values read from the stream in an outer bin, where saturated values land (gripper dims
        # excluded: -1/+1 always sit in those bins).
        edge = ((read_bins == 0) | (read_bins == self.n_bins - 1)).reshape(normalized.shape)
        edge[..., list(self.config.gripper_dims)] = False
        saturated = edge.any(axis=(1, 2))
        result = DecodeResult(actions=actions, issues=issues, num_decoded=counts, saturated=saturated)
        if strict:
            result.raise_if_malformed(length)
        return result

    # ------------------------------------------------------------ persist
    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(dumps_readable(self.config.to_json()) + "\n")
        return folder

    @classmethod
    def load(
        cls, folder: str | Path, *, time_horizon: int | None = None, action_dim: int | None = None
    ) -> BinningTokenizer:
        path = Path(folder) / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a binning tokenizer folder: missing {CONFIG_FILE}")
        tokenizer = cls(BinningConfig.from_json(json.loads(path.read_text())))
        tokenizer._check_shape(time_horizon, action_dim)
        return tokenizer
