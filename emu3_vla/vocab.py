"""The Emu3 token layout: one object that knows every id range of the shared vocabulary.

Emu3 puts text, control tokens, visual codes and (for the VLA) action tokens into one vocabulary.
The real checkpoints use the layout below (docs/design.md section 2); small presets keep exactly the same
structure with a smaller text range and codebook, so every piece of code that builds or parses a
token stream works unchanged from a CPU-sized model to the 8.49 B checkpoint::

    [0, text_size)                         text BPE ids
    [text_size - 1024, text_size)          reused as FAST action ids: llm_id = last_text_id - fast_id
    [text_size - 1280, text_size - 1024)   reused as proprioceptive-state bins (optional input tokens)
    text_size                              <|endoftext|>  (pad)
    text_size + 1, + 2                     <|im_start|>, <|im_end|>
    text_size + 3 + i, i < 205             <|extra_i|>  (BOA=198, EOA=199, EOL=200, EOF=201, BOS=203, EOS=204)
    then                                   <|image token|> (SOT), <|image start|> (SOV), <|image end|> (EOV)
    then codebook_size ids                 <|visual token 000000|> ...

The action ids are counted *backwards* from the last text id, as in UniVLA / Emu3-VLA, so that FAST
id 0 (the most frequent BPE unit) lands on the last text id.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

NUM_EXTRA_TOKENS = 205
ACTION_VOCAB_SIZE = 1024
#: Bins per proprioceptive-state dimension; the bins take the text ids just below the action ids.
STATE_VOCAB_SIZE = 256

# Control roles -> index of the <|extra_i|> token that plays them in Emu3.
_EXTRA_ROLES = {"boa": 198, "eoa": 199, "eol": 200, "eof": 201, "bos": 203, "eos": 204}

PAD_TOKEN = "<|endoftext|>"
IM_START_TOKEN = "<|im_start|>"
IM_END_TOKEN = "<|im_end|>"
SOT_TOKEN = "<|image token|>"
SOV_TOKEN = "<|image start|>"
EOV_TOKEN = "<|image end|>"


def extra_token(i: int) -> str:
    """Name of the i-th Emu3 control token, e.g. ``<|extra_198|>``."""
    return f"<|extra_{i}|>"


def visual_token(code: int) -> str:
    """Name of the vocabulary entry of VQ code ``code``, e.g. ``<|visual token 000042|>``."""
    return f"<|visual token {code:06d}|>"


class TokenRangeError(ValueError):
    """An id was passed to a mapping whose range does not contain it."""


@dataclasses.dataclass(frozen=True)
class TokenLayout:
    """Every id range of an Emu3 vocabulary, derived from two numbers.

    Args:
        text_size: number of text BPE ids (151,643 for the real Qwen-based tokenizer).
        codebook_size: number of VQ codes (32,768 for the real Emu3 tokenizer).
        action_vocab_size: number of action ids taken from the end of the text range (FAST: 1,024).
    """

    text_size: int
    codebook_size: int
    action_vocab_size: int = ACTION_VOCAB_SIZE

    def __post_init__(self) -> None:
        if self.text_size <= self.action_vocab_size:
            raise ValueError(
                f"text_size={self.text_size} must exceed action_vocab_size={self.action_vocab_size}: "
                "the action ids are carved out of the end of the text range"
            )
        if self.codebook_size < 1:
            raise ValueError(f"codebook_size must be positive, got {self.codebook_size}")

    # ----------------------------------------------------------------- presets
    @classmethod
    def emu3(cls) -> TokenLayout:
        """The layout of the released Emu3 checkpoints (vocabulary 184,622)."""
        return cls(text_size=151_643, codebook_size=32_768)

    @classmethod
    def from_vocabulary_map(cls, vocab: Mapping[str, int]) -> TokenLayout:
        """Recover the layout from a tokenizer's ``token -> id`` map and check every special id.

        Works for real Emu3 checkpoints (``config.vocabulary_map``) and for the tokenizers our
        presets ship, since both name their tokens the same way.
        """
        missing = [t for t in (PAD_TOKEN, SOT_TOKEN, SOV_TOKEN, EOV_TOKEN) if t not in vocab]
        if missing:
            raise ValueError(f"vocabulary map lacks the Emu3 control tokens {missing}")
        codes = sum(1 for t in vocab if t.startswith("<|visual token "))
        layout = cls(text_size=int(vocab[PAD_TOKEN]), codebook_size=codes)
        layout.check_vocabulary_map(vocab)
        return layout

    def check_vocabulary_map(self, vocab: Mapping[str, int]) -> None:
        """Raise if ``vocab`` disagrees with this layout on any special or visual id."""
        expected = self.special_tokens()
        for code in (0, self.codebook_size - 1):
            expected[visual_token(code)] = self.code_to_id(code)
        wrong = {t: (vocab.get(t), i) for t, i in expected.items() if vocab.get(t) != i}
        if wrong:
            sample = dict(list(wrong.items())[:5])
            raise ValueError(f"vocabulary map does not follow the Emu3 layout; (found, expected): {sample}")

    # ------------------------------------------------------------ fixed ids
    @property
    def pad_id(self) -> int:
        return self.text_size

    @property
    def im_start_id(self) -> int:
        return self.text_size + 1

    @property
    def im_end_id(self) -> int:
        return self.text_size + 2

    @property
    def extra_base(self) -> int:
        return self.text_size + 3

    def extra_id(self, i: int) -> int:
        if not 0 <= i < NUM_EXTRA_TOKENS:
            raise TokenRangeError(f"extra token index {i} outside [0, {NUM_EXTRA_TOKENS})")
        return self.extra_base + i

    @property
    def boa_id(self) -> int:
        return self.extra_id(_EXTRA_ROLES["boa"])

    @property
    def eoa_id(self) -> int:
        return self.extra_id(_EXTRA_ROLES["eoa"])

    @property
    def eol_id(self) -> int:
        return self.extra_id(_EXTRA_ROLES["eol"])

    @property
    def eof_id(self) -> int:
        return self.extra_id(_EXTRA_ROLES["eof"])

    @property
    def bos_id(self) -> int:
        return self.extra_id(_EXTRA_ROLES["bos"])

    @property
    def eos_id(self) -> int:
        return self.extra_id(_EXTRA_ROLES["eos"])

    @property
    def sot_id(self) -> int:
        return self.extra_base + NUM_EXTRA_TOKENS

    @property
    def sov_id(self) -> int:
        return self.sot_id + 1

    @property
    def eov_id(self) -> int:
        return self.sot_id + 2

    @property
    def visual_base(self) -> int:
        return self.sot_id + 3

    @property
    def vocab_size(self) -> int:
        return self.visual_base + self.codebook_size

    @property
    def last_text_id(self) -> int:
        return self.text_size - 1

    @property
    def action_range(self) -> range:
        """Ids that carry FAST tokens: the last ``action_vocab_size`` text ids."""
        return range(self.text_size - self.action_vocab_size, self.text_size)

    @property
    def state_range(self) -> range:
        """Ids that carry proprioceptive-state bins: the ``STATE_VOCAB_SIZE`` text ids below the action ids.

        Like the action ids they reuse rare text ids (counted backwards, bin 0 just below FAST id 0),
        so a real checkpoint's vocabulary needs no new rows; the position in the sequence says which
        meaning an id has."""
        stop = self.action_range.start
        return range(max(stop - STATE_VOCAB_SIZE, 0), stop)

    @property
    def visual_range(self) -> range:
        return range(self.visual_base, self.vocab_size)

    def control_ids(self) -> dict[str, int]:
        """Control tokens by role, the names used throughout the package."""
        return {
            "pad": self.pad_id,
            "bos": self.bos_id,
            "eos": self.eos_id,
            "sov": self.sov_id,
            "sot": self.sot_id,
            "eov": self.eov_id,
            "eol": self.eol_id,
            "eof": self.eof_id,
            "boa": self.boa_id,
            "eoa": self.eoa_id,
        }

    def special_tokens(self) -> dict[str, int]:
        """Every non-text, non-visual token with its id, named as in Emu3's tokenizer."""
        tokens = {PAD_TOKEN: self.pad_id, IM_START_TOKEN: self.im_start_id, IM_END_TOKEN: self.im_end_id}
        tokens.update({extra_token(i): self.extra_id(i) for i in range(NUM_EXTRA_TOKENS)})
        tokens.update({SOT_TOKEN: self.sot_id, SOV_TOKEN: self.sov_id, EOV_TOKEN: self.eov_id})
        return tokens

    # ------------------------------------------------------------- mappings
    def code_to_id(self, codes: Any) -> Any:
        """VQ code(s) -> token id(s). Accepts an int, numpy array or torch tensor."""
        _check_range(codes, 0, self.codebook_size, "VQ code")
        return codes + self.visual_base

    def id_to_code(self, ids: Any) -> Any:
        """Token id(s) -> VQ code(s); raises :class:`TokenRangeError` on a non-visual id."""
        _check_range(ids, self.visual_base, self.vocab_size, "visual token id")
        return ids - self.visual_base

    def fast_to_id(self, fast_ids: Any) -> Any:
        """FAST id(s) in ``[0, 1024)`` -> language-model id(s): ``last_text_id - fast_id``."""
        _check_range(fast_ids, 0, self.action_vocab_size, "FAST id")
        return self.last_text_id - fast_ids

    def id_to_fast(self, ids: Any) -> Any:
        """Language-model id(s) in the action range -> FAST id(s)."""
        _check_range(ids, self.action_range.start, self.action_range.stop, "action token id")
        return self.last_text_id - ids

    def state_to_id(self, bins: Any) -> Any:
        """State bin(s) in ``[0, 256)`` -> language-model id(s): ``action_range.start - 1 - bin``."""
        if len(self.state_range) < STATE_VOCAB_SIZE:
            raise TokenRangeError(
                f"text_size={self.text_size} leaves {len(self.state_range)} ids below the action ids; "
                f"state tokens need {STATE_VOCAB_SIZE}"
            )
        _check_range(bins, 0, STATE_VOCAB_SIZE, "state bin")
        return self.action_range.start - 1 - bins

    def is_action_id(self, ids: Any) -> Any:
        return (ids >= self.action_range.start) & (ids < self.action_range.stop)

    def is_visual_id(self, ids: Any) -> Any:
        return (ids >= self.visual_base) & (ids < self.vocab_size)

    # -------------------------------------------------------------- persist
    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenLayout:
        return cls(**{f.name: int(data[f.name]) for f in dataclasses.fields(cls) if f.name in data})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({**self.to_dict(), **self.control_ids()}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TokenLayout:
        return cls.from_dict(json.loads(Path(path).read_text()))


def _check_range(values: Any, low: int, high: int, what: str) -> None:
    """Raise :class:`TokenRangeError` unless every value lies in ``[low, high)``."""
    if isinstance(values, int | np.integer):
        ok = low <= int(values) < high
        bad = values
    else:
        if hasattr(values, "numel") and values.numel() == 0:  # torch
            return
        if isinstance(values, np.ndarray) and values.size == 0:
            return
        vmin, vmax = int(values.min()), int(values.max())
        ok = low <= vmin and vmax < high
        bad = vmin if vmin < low else vmax
    if not ok:
        raise TokenRangeError(f"{what} {int(bad)} outside [{low}, {high})")
