"""One entry point that loads any saved action tokenizer folder, whatever its format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from action_tokenizer.binning import BINNING_FORMAT, BinningTokenizer
from action_tokenizer.decoding import DecodeResult
from action_tokenizer.encoding import EncodeResult
from action_tokenizer.fast import CONFIG_FILE, FAST_FORMAT, FastTokenizer
from action_tokenizer.normalizer import ActionNormalizer


class ActionTokenizer(Protocol):
    """What the policy and the data pipeline rely on; both tokenizers implement it."""

    @property
    def vocab_size(self) -> int: ...

    @property
    def time_horizon(self) -> int | None: ...

    @property
    def action_dim(self) -> int | None: ...

    @property
    def normalizer(self) -> ActionNormalizer | None: ...

    def gripper_dims(self, action_dim: int | None = None) -> tuple[int, ...]: ...

    def max_stream_length(self, time_horizon: int | None = None, action_dim: int | None = None) -> int: ...

    def encode(self, chunks: np.ndarray) -> list[list[int]]: ...

    def encode_with_report(self, chunks: np.ndarray) -> EncodeResult: ...

    def decode(
        self, tokens: object, *, strict: bool = False, time_horizon: int | None = None, action_dim: int | None = None
    ) -> DecodeResult: ...

    def save(self, folder: str | Path) -> Path: ...


def load_action_tokenizer(
    folder: str | Path, *, time_horizon: int | None = None, action_dim: int | None = None
) -> FastTokenizer | BinningTokenizer:
    """Load a folder saved by :class:`FastTokenizer`, :class:`BinningTokenizer`, or a public FAST processor.

    The format is read from ``processor_config.json``: ``"format"`` names ours; a config without it
    but with FAST's ``scale`` and ``min_token`` fields is a public processor and loads in reference
    mode (give ``time_horizon`` / ``action_dim`` if the file leaves them null).
    """
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} holds no {CONFIG_FILE}; is it an action tokenizer folder?")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    fmt = config.get("format")
    if fmt == BINNING_FORMAT:
        return BinningTokenizer.load(folder, time_horizon=time_horizon, action_dim=action_dim)
    if fmt == FAST_FORMAT or (fmt is None and "scale" in config and "min_token" in config):
        return FastTokenizer.load(folder, time_horizon=time_horizon, action_dim=action_dim)
    raise ValueError(
        f"{path} is neither an emu3-vla action tokenizer (format {FAST_FORMAT!r} / {BINNING_FORMAT!r}) nor a "
        f"public FAST processor (fields scale, min_token); found format={fmt!r}"
    )
