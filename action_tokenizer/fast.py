"""FAST: action chunks -> DCT -> integers -> characters -> byte-level BPE ids in [0, vocab_size).

Pipeline (Pertsch et al. 2025, docs/design.md section 4)::

    chunk (T, D) --normalise--> [-1, 1] --DCT-II along time--> * scale --round--> ints (T, D)
        --frequency-major flatten--> T*D ints --characters--> string --BPE--> FAST ids

Two modes share this class:

``native`` (default for :meth:`FastTokenizer.fit`)
    Zig-zag characters (the common coefficients are one UTF-8 byte), an unsplit byte-level BPE
    (merges may cross any coefficient boundary), coefficients clamped to the per-(frequency, dim)
    range seen at fit (slightly widened, see :data:`RANGE_MARGIN`), decoded values clipped to the
    fitted value range. Such a clamp loses information yet yields a well-formed stream, so
    :meth:`FastTokenizer.encode_with_report` reports it per chunk (with a bound on the error) and
    ``decode`` marks the chunk ``saturated`` (:class:`~action_tokenizer.decoding.DecodeResult`).
``reference``
    The public FAST processor's format (``chr(v - min_token)``, regex-split byte-level BPE). Folders
    in the public format (``physical-intelligence/fast`` layout: ``processor_config.json`` with
    ``scale``, ``vocab_size``, ``min_token``, ``time_horizon``, ``action_dim`` and a
    ``tokenizer.json``) load in this mode. Token ids are identical to the reference's; a well-formed
    stream decodes to the reference's chunk (clipped to the fitted value range when the folder
    records one, which public folders do not). Decoding uses the tokenizer's own byte-level
    decoder; ``transformers``' ``clean_up_tokenization_spaces``, which the public processor turns
    off at fit, is never applied. Weakness kept for fidelity: its BPE alphabet is ``chr(0..range)``
    rather than the byte-level symbols its pre-tokenizer produces, so a coefficient whose UTF-8
    bytes never occurred at fit is silently dropped at encode (the chunk then decodes flagged).

Malformed streams never raise unless ``strict=True``; see :mod:`action_tokenizer.decoding`. The
repair policy: ids outside the vocabulary and bytes that form no character are dropped; a short
stream keeps every coefficient it has (frequency-major, so the DC terms, i.e. the chunk's mean,
come first) and takes the missing ones from the *neutral chunk*; a long stream is truncated;
coefficients are clamped to the fitted range. The neutral chunk is 0 in every normalised
continuous dimension (the middle of the 1st-99th percentile range; for CALVIN's symmetric relative
actions, about no motion) and :data:`~action_tokenizer.gripper.NEUTRAL_GRIPPER` (+1, open) in the
gripper dims, so even a stream that yields nothing decodes to a chunk whose gripper is a valid +-1.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tokenizers import Tokenizer

from action_tokenizer import bpe
from action_tokenizer.characters import (
    MAX_CODE,
    REPLACEMENT_CODE,
    ShiftedCharacters,
    ZigZagCharacters,
    codes_to_strings,
    strings_to_codes,
)
from action_tokenizer.data import as_chunk_array
from action_tokenizer.dct import dct_matrix, dequantize, quantize, rounding_error_bound
from action_tokenizer.decoding import DecodeResult, as_token_batch, empty_issues
from action_tokenizer.encoding import EncodeResult
from action_tokenizer.gripper import NEUTRAL_GRIPPER, default_gripper_dims, resolve_dims
from action_tokenizer.jsonfmt import dumps_readable
from action_tokenizer.normalizer import ActionNormalizer

log = logging.getLogger(__name__)

FAST_FORMAT = "emu3-vla/fast"
FORMAT_VERSION = 1
CONFIG_FILE = "processor_config.json"
TOKENIZER_FILE = "tokenizer.json"
DEFAULT_VOCAB_SIZE = 1024
#: Native mode clamps coefficients to the per-(frequency, dim) range seen at fit, widened on each side
#: by this share of its span plus one rounding step: held-out data is then almost never clamped (the
#: bench measures it), while a corrupted stream still cannot decode to a coefficient far outside
#: anything the data ever had.
RANGE_MARGIN = 0.1

Mode = Literal["native", "reference"]
_MODES = ("native", "reference")


def _int_array(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.int64)


def _float_array(value: Any) -> np.ndarray | None:
    return None if value is None else np.asarray(value, dtype=np.float64)


@dataclasses.dataclass(frozen=True, eq=False)
class FastConfig:
    """Everything besides the BPE model that encoding and decoding need; saved as JSON.

    The first five fields carry the public FAST processor's names and meaning.
    """

    scale: float
    vocab_size: int
    min_token: int
    time_horizon: int | None = None
    action_dim: int | None = None
    mode: Mode = "native"
    max_token: int | None = None
    gripper_dims: tuple[int, ...] | None = None  # None: the default for the action dimension
    normalizer: ActionNormalizer | None = None
    coefficient_low: np.ndarray | None = None  # (T, D) clamp range: seen at fit, widened by RANGE_MARGIN
    coefficient_high: np.ndarray | None = None  # (T, D)
    value_low: np.ndarray | None = None  # (D,) smallest normalised value seen at fit
    value_high: np.ndarray | None = None  # (D,) largest
    fit_chunks: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"unknown FAST mode {self.mode!r}; choose one of {_MODES}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        for name in ("coefficient_low", "coefficient_high"):
            object.__setattr__(self, name, _int_array(getattr(self, name)))
        for name in ("value_low", "value_high"):
            object.__setattr__(self, name, _float_array(getattr(self, name)))

    def to_json(self) -> dict[str, Any]:
        def listed(a: np.ndarray | None) -> Any:
            return None if a is None else a.tolist()

        return {
            # -- the public FAST processor's fields
            "scale": self.scale,
            "vocab_size": self.vocab_size,
            "min_token": self.min_token,
            "time_horizon": self.time_horizon,
            "action_dim": self.action_dim,
            # -- ours
            "format": FAST_FORMAT,
            "format_version": FORMAT_VERSION,
            "mode": self.mode,
            "characters": "zigzag" if self.mode == "native" else "shifted",
            "pre_tokenizer": "byte-level, unsplit" if self.mode == "native" else "byte-level, GPT-2 regex split",
            "max_token": self.max_token,
            "gripper_dims": None if self.gripper_dims is None else list(self.gripper_dims),
            "value_low": listed(self.value_low),
            "value_high": listed(self.value_high),
            "coefficient_low": listed(self.coefficient_low),
            "coefficient_high": listed(self.coefficient_high),
            "normalizer": None if self.normalizer is None else self.normalizer.to_dict(),
            "bpe_trainer": {"vocab_size": self.vocab_size, **bpe.BPE_TRAINER_SETTINGS},
            "fit_chunks": self.fit_chunks,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FastConfig:
        """Read our format, or the public processor's (no ``format`` key) as reference mode."""
        missing = [k for k in ("scale", "min_token") if data.get(k) is None]
        if missing:
            raise ValueError(f"{CONFIG_FILE} lacks the FAST fields {missing}")
        ours = data.get("format") == FAST_FORMAT
        if ours and int(data.get("format_version", 1)) > FORMAT_VERSION:
            raise ValueError(
                f"{CONFIG_FILE} has format_version {data['format_version']}; this code reads up to {FORMAT_VERSION}"
            )
        norm = data.get("normalizer") if ours else None
        grip = data.get("gripper_dims") if ours else None
        return cls(
            scale=float(data["scale"]),
            vocab_size=int(data.get("vocab_size") or DEFAULT_VOCAB_SIZE),
            min_token=int(data["min_token"]),
            time_horizon=None if data.get("time_horizon") is None else int(data["time_horizon"]),
            action_dim=None if data.get("action_dim") is None else int(data["action_dim"]),
            mode=data.get("mode", "native") if ours else "reference",
            max_token=None if not ours or data.get("max_token") is None else int(data["max_token"]),
            gripper_dims=None if grip is None else tuple(int(d) for d in grip),
            normalizer=None if norm is None else ActionNormalizer.from_dict(norm),
            coefficient_low=data.get("coefficient_low") if ours else None,
            coefficient_high=data.get("coefficient_high") if ours else None,
            value_low=data.get("value_low") if ours else None,
            value_high=data.get("value_high") if ours else None,
            fit_chunks=data.get("fit_chunks") if ours else None,
        )


class FastTokenizer:
    """The FAST action tokenizer. Build it with :meth:`fit` or :meth:`load`.

    ``encode`` takes chunks in action units (N, T, D) and returns one list of FAST ids per chunk;
    ``decode`` takes such lists back to a :class:`DecodeResult`. Both are vectorised over the batch.
    """

    def __init__(self, model: Tokenizer, config: FastConfig) -> None:
        self.bpe = model
        self.config = config
        self.characters = ZigZagCharacters() if config.mode == "native" else ShiftedCharacters(config.min_token)
        self._bpe_vocab = model.get_vocab_size()
        if self._bpe_vocab > config.vocab_size:
            raise ValueError(
                f"the BPE model has {self._bpe_vocab} entries but vocab_size is {config.vocab_size}; "
                "its ids would leave the action range"
            )

    # ---------------------------------------------------------------- fit
    @classmethod
    def fit(
        cls,
        chunks: np.ndarray | Iterable[np.ndarray],
        *,
        scale: float = 10.0,
        vocab_size: int = DEFAULT_VOCAB_SIZE,
        mode: Mode = "native",
        normalizer: ActionNormalizer | Literal["fit"] | None = "fit",
        passthrough_dims: Sequence[int] | None = None,
        gripper_dims: Sequence[int] | None = None,
    ) -> FastTokenizer:
        """Fit the normaliser (unless given), the coefficient ranges and the BPE on chunks (N, T, D).

        Args:
            chunks: an array (N, T, D) or an iterable of (T, D) / (B, T, D) arrays, in action units.
            scale: coefficient multiplier before rounding; the rounding step in normalised units is 1/scale.
            vocab_size: number of FAST ids (1,024 for Emu3).
            mode: ``native`` (ours) or ``reference`` (the public processor's format, for comparison/export).
            normalizer: ``"fit"`` to fit an :class:`ActionNormalizer` here, an already fitted one, or
                None when the chunks are already normalised to [-1, 1].
            passthrough_dims: dims the fitted normaliser leaves unchanged (None: last dim of 7-d actions).
            gripper_dims: binary gripper dims (None: the normaliser's pass-through dims, else the default).

        Deterministic: the same chunks and arguments give the same tokenizer.
        """
        data = as_chunk_array(chunks)
        n, horizon, dim = data.shape
        if mode not in _MODES:
            raise ValueError(f"unknown FAST mode {mode!r}; choose one of {_MODES}")
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

        normalized = normalizer.transform(data) if normalizer is not None else data
        coeffs = quantize(normalized, scale)
        low, high = int(coeffs.min()), int(coeffs.max())
        seen_low, seen_high = coeffs.min(axis=0), coeffs.max(axis=0)
        margin = np.ceil(RANGE_MARGIN * (seen_high - seen_low)).astype(np.int64) + 1
        config = FastConfig(
            scale=float(scale),
            vocab_size=int(vocab_size),
            min_token=low,
            time_horizon=horizon,
            action_dim=dim,
            mode=mode,
            max_token=high,
            gripper_dims=grip,
            normalizer=normalizer,
            coefficient_low=seen_low - margin,
            coefficient_high=seen_high + margin,
            value_low=normalized.min(axis=(0, 1)),
            value_high=normalized.max(axis=(0, 1)),
            fit_chunks=n,
        )
        if mode == "native":
            characters: ZigZagCharacters | ShiftedCharacters = ZigZagCharacters()
            max_code = characters.max_code(int(config.coefficient_low.min()), int(config.coefficient_high.max()))
        else:
            characters = ShiftedCharacters(low)
            max_code = characters.max_code(low, high)
        if max_code > MAX_CODE:
            raise ValueError(
                f"coefficients span [{low}, {high}] at scale {scale}, too wide for one character each; "
                "lower the scale or normalise the actions to [-1, 1]"
            )
        strings = codes_to_strings(characters.to_codes(coeffs.reshape(n, -1)))
        if mode == "native":
            alphabet = len(bpe.byte_symbols_for_codes(max_code))
            if alphabet > vocab_size:
                raise ValueError(f"the byte alphabet alone has {alphabet} symbols, more than vocab_size={vocab_size}")
            model = bpe.train_native(strings, vocab_size, max_code)
        else:
            if high - low > vocab_size:  # the reference's own check
                raise ValueError(
                    f"coefficients span {high - low} values at scale {scale}, more than vocab_size={vocab_size}; "
                    "lower the scale or raise vocab_size"
                )
            if high - low + 100 > vocab_size:
                log.warning("coefficient range %d is close to vocab_size %d; few merges remain", high - low, vocab_size)
            model = bpe.train_reference(strings, vocab_size, max_code)
        return cls(model, config)

    # --------------------------------------------------------- properties
    @property
    def mode(self) -> Mode:
        return self.config.mode

    @property
    def scale(self) -> float:
        return self.config.scale

    @property
    def vocab_size(self) -> int:
        """Upper bound (exclusive) of every FAST id this tokenizer emits."""
        return self.config.vocab_size

    @property
    def time_horizon(self) -> int | None:
        return self.config.time_horizon

    @property
    def action_dim(self) -> int | None:
        return self.config.action_dim

    @property
    def normalizer(self) -> ActionNormalizer | None:
        return self.config.normalizer

    def gripper_dims(self, action_dim: int | None = None) -> tuple[int, ...]:
        dim = action_dim or self.config.action_dim
        if self.config.gripper_dims is not None:
            return self.config.gripper_dims
        return default_gripper_dims(dim) if dim else ()

    def max_stream_length(self, time_horizon: int | None = None, action_dim: int | None = None) -> int:
        """Most ids one encoded chunk can take (every coefficient unmerged, at its widest UTF-8 width);
        a safe ``max_new_tokens`` for generation."""
        horizon, dim = self._shape(time_horizon, action_dim)
        low, high = self._ranges(horizon, dim)
        widest = self.characters.max_code(int(low.min()), int(np.minimum(high, MAX_CODE).max()))
        return horizon * dim * len(chr(widest).encode("utf-8"))

    def coefficients_per_token(self) -> np.ndarray | None:
        """How many coefficients each FAST id decodes to (``(vocab_size,)`` int), or ``None`` when
        some id holds part of a multi-byte character (then a count per id does not exist).

        With it a decoder can constrain a stream to exactly ``time_horizon * action_dim``
        coefficients, so a sampled stream is never too short or too long."""
        counts = np.zeros(self.vocab_size, dtype=np.int64)
        for i in range(min(self._bpe_vocab, self.vocab_size)):
            text = self.bpe.decode([i], skip_special_tokens=False)
            if "\ufffd" in text:
                return None
            counts[i] = len(text)
        return counts

    def __repr__(self) -> str:
        c = self.config
        return (
            f"FastTokenizer(mode={c.mode!r}, scale={c.scale:g}, vocab={self._bpe_vocab}/{c.vocab_size}, "
            f"T={c.time_horizon}, D={c.action_dim}, normalizer={'yes' if c.normalizer else 'no'})"
        )

    # ------------------------------------------------------------ helpers
    def _shape(self, time_horizon: int | None, action_dim: int | None) -> tuple[int, int]:
        horizon = time_horizon or self.config.time_horizon
        dim = action_dim or self.config.action_dim
        if not horizon or not dim:
            raise ValueError(
                "the time horizon and action dimension are unknown (a folder in the public format may leave them "
                "null); pass time_horizon= and action_dim= to load() or decode()"
            )
        if self.normalizer is not None and self.normalizer.action_dim != dim:
            raise ValueError(f"this tokenizer's normaliser is for {self.normalizer.action_dim}-d actions, not {dim}-d")
        return int(horizon), int(dim)

    def _fitted_ranges(self, horizon: int, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The per-(frequency, dim) clamp range of native mode, if it applies to chunks of this shape."""
        c = self.config
        if (
            c.mode == "native"
            and c.coefficient_low is not None
            and c.coefficient_high is not None
            and c.coefficient_low.shape == (horizon, dim)
        ):
            return c.coefficient_low, c.coefficient_high
        return None

    def _ranges(self, horizon: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """Per-(frequency, dim) integer range decoded coefficients are clamped to."""
        fitted = self._fitted_ranges(horizon, dim)
        if fitted is not None:
            return fitted
        c = self.config
        high = c.max_token if c.max_token is not None else np.iinfo(np.int64).max // 4
        return np.full((horizon, dim), c.min_token, np.int64), np.full((horizon, dim), high, np.int64)

    def _value_range(self, dim: int) -> tuple[np.ndarray, np.ndarray] | None:
        c = self.config
        if c.value_low is None or c.value_high is None or c.value_low.shape != (dim,):
            return None
        return c.value_low, c.value_high

    def _neutral_chunk(self, horizon: int, dim: int) -> np.ndarray:
        """The neutral chunk (T, D) in normalised units (see the module docstring)."""
        chunk = np.zeros((horizon, dim))
        grip = list(self.gripper_dims(dim))
        if grip:
            value = np.where(np.isin(np.arange(dim), grip), NEUTRAL_GRIPPER, 0.0)
            if self.normalizer is not None and self.normalizer.action_dim == dim:
                value = self.normalizer.transform(value)
            chunk[:, grip] = value[grip]
        return chunk

    def _neutral_coefficients(self, horizon: int, dim: int) -> np.ndarray:
        """Integer coefficients (T, D) of the neutral chunk: what missing coefficients are filled with."""
        low, high = self._ranges(horizon, dim)
        return np.clip(quantize(self._neutral_chunk(horizon, dim)[None], self.scale)[0], low, high)

    def _normalize(self, data: np.ndarray) -> np.ndarray:
        if self.normalizer is None:
            return data
        return self.normalizer.transform(data)

    # ------------------------------------------------------------- encode
    def quantize(self, chunks: np.ndarray | Iterable[np.ndarray]) -> np.ndarray:
        """Chunks in action units (N, T, D) -> the integer DCT coefficients (N, T, D) that get encoded."""
        data = as_chunk_array(chunks)
        c = self.config
        if c.action_dim is not None and data.shape[2] != c.action_dim:
            raise ValueError(f"this tokenizer was fitted on {c.action_dim}-d actions, got chunks {data.shape}")
        coeffs = quantize(self._normalize(data), self.scale)
        if self.mode == "native":
            low, high = self._ranges(data.shape[1], data.shape[2])
            coeffs = np.clip(coeffs, low, high)
        return coeffs

    def encode(self, chunks: np.ndarray | Iterable[np.ndarray]) -> list[list[int]]:
        """Chunks in action units (N, T, D) -> N lists of FAST ids in [0, vocab_size).

        Silently clamps what lies outside the fitted range; :meth:`encode_with_report` says where."""
        return self.encode_coefficients(self.quantize(chunks))

    def encode_with_report(self, chunks: np.ndarray | Iterable[np.ndarray]) -> EncodeResult:
        """Like :meth:`encode` (same ids), plus per chunk what the ids cannot give back and a bound on it.

        The ids are decoded again and compared with the unclamped coefficients, so the report is
        exact in both modes: native mode's clamp to the per-(frequency, dim) range, and reference
        mode's losses (the character scheme clamps below ``min_token``; a coefficient whose bytes
        never occurred at fit is dropped). With ``y = scale * DCT(x)`` the exact coefficients, ``r``
        their rounding and ``c`` what the ids decode to, ``|c - y| <= 0.5 + |c - r|`` per
        coefficient, and the inverse DCT turns that into, per value at step t of dim j,
        ``|x_hat - x| <= sum_k |C[k, t]| * (0.5 + |c - r|[k, j]) / scale``; the decoder's clip to
        the fitted value range can only move a value towards the input unless the input lies
        outside that range by ``delta``, so the value's bound is the larger of the two. Without
        clamping this is exactly :func:`~action_tokenizer.dct.rounding_error_bound`'s ``per_value``.
        """
        data = as_chunk_array(chunks)
        ids = self.encode_coefficients(self.quantize(data))
        _, horizon, dim = data.shape
        normalized = self._normalize(data)
        rounded = quantize(normalized, self.scale)
        decoded, issues, _ = self.decode_coefficients(ids, time_horizon=horizon, action_dim=dim)
        moved = np.abs(decoded - rounded).astype(np.float64)
        column = np.abs(dct_matrix(horizon))  # column[k, t] = |C[k, t]|
        per_value = np.einsum("kt,nkj->ntj", column, 0.5 + moved) / self.scale
        # A stream that decodes to nothing returns the neutral chunk itself (see decode).
        empty = issues["empty"]
        per_value[empty] = np.abs(self._neutral_chunk(horizon, dim) - normalized[empty])
        outside = np.zeros_like(normalized)
        value_range = self._value_range(dim)
        if value_range is not None:
            low, high = value_range
            outside = np.maximum(np.maximum(low - normalized, normalized - high), 0.0)
        return EncodeResult(
            ids=ids,
            num_clamped=np.count_nonzero(moved, axis=(1, 2)).astype(np.int64),
            max_clamp_steps=moved.max(axis=(1, 2)),
            num_clipped_values=np.count_nonzero(outside, axis=(1, 2)).astype(np.int64),
            error_bound=np.maximum(per_value, outside).max(axis=(1, 2)),
            rounding_bound=rounding_error_bound(horizon, dim, self.scale).per_value,
        )

    def encode_coefficients(self, coefficients: np.ndarray) -> list[list[int]]:
        """Integer coefficients (N, T, D) -> N lists of FAST ids (frequency-major order)."""
        coeffs = np.asarray(coefficients)
        if coeffs.ndim != 3 or not np.issubdtype(coeffs.dtype, np.integer):
            raise ValueError(f"expected integer coefficients of shape (N, T, D), got {coeffs.dtype} {coeffs.shape}")
        strings = codes_to_strings(self.characters.to_codes(coeffs.reshape(len(coeffs), -1)))
        return [enc.ids for enc in self.bpe.encode_batch(strings)]

    # ------------------------------------------------------------- decode
    def decode(
        self,
        tokens: Any,
        *,
        strict: bool = False,
        time_horizon: int | None = None,
        action_dim: int | None = None,
    ) -> DecodeResult:
        """Token streams -> chunks in action units, with per-chunk malformed and saturated flags.

        ``tokens`` is a batch: a list of id lists / arrays, or a 2-D array or tensor. With
        ``strict=True`` any malformed stream raises :class:`MalformedTokensError` instead (a
        saturated but well-formed stream does not; see :attr:`DecodeResult.saturated`).
        """
        horizon, dim = self._shape(time_horizon, action_dim)
        coeffs, issues, num = self.decode_coefficients(tokens, time_horizon=horizon, action_dim=dim)
        normalized = dequantize(coeffs, self.scale)
        # Nothing decoded: return the neutral chunk itself, not its rounded coefficients, so that the
        # gripper is exactly NEUTRAL_GRIPPER rather than within a rounding step of it.
        normalized[issues["empty"]] = self._neutral_chunk(horizon, dim)
        value_range = self._value_range(dim)
        if value_range is not None:
            normalized = np.clip(normalized, *value_range)
        actions = self.normalizer.inverse(normalized) if self.normalizer is not None else normalized
        saturated = self._saturated(coeffs, num)
        result = DecodeResult(actions=actions, issues=issues, num_decoded=num, coefficients=coeffs, saturated=saturated)
        if strict:
            result.raise_if_malformed(horizon * dim)
        return result

    def _saturated(self, coeffs: np.ndarray, num_decoded: np.ndarray) -> np.ndarray:
        """(N,) bool: a coefficient read from the stream sits on its per-(frequency, dim) clamp bound.

        Read from the stream means among the first ``min(num_decoded, T*D)`` in frequency-major
        order; the rest are neutral fill and say nothing about the stream. Only native mode's fitted
        ranges lie strictly outside every coefficient seen at fit (:data:`RANGE_MARGIN`), so only
        there is a coefficient on the bound the trace of a clamp. Reference mode's bounds (and a
        native tokenizer's, for a shape other than the fitted one) are the fit's extreme
        coefficients themselves, e.g. the DC term of every chunk with a constant gripper, and the
        reference encoding does not clamp above them; nothing is marked there.
        """
        n, horizon, dim = coeffs.shape
        fitted = self._fitted_ranges(horizon, dim)
        if fitted is None:
            return np.zeros(n, dtype=bool)
        low, high = fitted
        read = (np.arange(horizon * dim) < np.minimum(num_decoded, horizon * dim)[:, None]).reshape(n, horizon, dim)
        return (read & ((coeffs == low) | (coeffs == high))).any(axis=(1, 2))

    def decode_coefficients(
        self, tokens: Any, *, time_horizon: int | None = None, action_dim: int | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """Token streams -> (integer coefficients (N, T, D), issues per chunk, coefficients read per chunk).

        Applies the repair policy of the module docstring; never raises on malformed streams.
        """
        horizon, dim = self._shape(time_horizon, action_dim)
        streams = as_token_batch(tokens)
        n_chunks, length = len(streams), horizon * dim
        issues = empty_issues(n_chunks)
        clean: list[list[int]] = []
        for i, ids in enumerate(streams):
            known = (ids >= 0) & (ids < self._bpe_vocab)
            if not known.all():
                issues["unknown_id"][i] = True
                ids = ids[known]
            clean.append(ids.tolist())
        codes, lengths = strings_to_codes(self.bpe.decode_batch(clean, skip_special_tokens=False))
        rows = np.repeat(np.arange(n_chunks), lengths)
        broken = codes == REPLACEMENT_CODE
        if broken.any():
            issues["invalid_bytes"][np.unique(rows[broken])] = True
            codes, rows = codes[~broken], rows[~broken]
        counts = np.bincount(rows, minlength=n_chunks)
        position = np.arange(rows.size) - (np.cumsum(counts) - counts)[rows]
        keep = position < length
        flat = np.tile(self._neutral_coefficients(horizon, dim).reshape(-1), (n_chunks, 1))
        flat[rows[keep], position[keep]] = self.characters.to_values(codes[keep])
        issues["empty"] = counts == 0
        issues["too_short"] = (counts > 0) & (counts < length)
        issues["too_long"] = counts > length
        coeffs = flat.reshape(n_chunks, horizon, dim)
        low, high = self._ranges(horizon, dim)
        clamped = np.clip(coeffs, low, high)
        issues["out_of_range"] = (clamped != coeffs).any(axis=(1, 2))
        return clamped, issues, counts

    # ------------------------------------------------------------ persist
    def save(self, folder: str | Path) -> Path:
        """Write ``processor_config.json`` and ``tokenizer.json`` (both indented JSON) to ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CONFIG_FILE).write_text(dumps_readable(self.config.to_json()) + "\n")
        self.bpe.save(str(folder / TOKENIZER_FILE), pretty=True)
        return folder

    @classmethod
    def load(
        cls, folder: str | Path, *, time_horizon: int | None = None, action_dim: int | None = None
    ) -> FastTokenizer:
        """Load our format or the public FAST processor's; ``time_horizon`` / ``action_dim`` override the file."""
        folder = Path(folder)
        config_path, tokenizer_path = folder / CONFIG_FILE, folder / TOKENIZER_FILE
        missing = [p.name for p in (config_path, tokenizer_path) if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not a FAST tokenizer folder: missing {missing}")
        config = FastConfig.from_json(json.loads(config_path.read_text()))
        if time_horizon or action_dim:
            config = dataclasses.replace(
                config,
                time_horizon=time_horizon or config.time_horizon,
                action_dim=action_dim or config.action_dim,
            )
        return cls(Tokenizer.from_file(str(tokenizer_path)), config)
