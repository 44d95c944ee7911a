"""Text tokenizer for every model size, behind one small interface.

A real Emu3 checkpoint brings its own Qwen BPE (``tokenizer.json``); the CPU presets use the
1,024-id byte-level BPE shipped in ``emu3_vla/assets`` (see ``build_text_bpe.py``). Both are plain
HF ``tokenizers`` objects, so encoding, decoding and saving are one code path. The wrapper's job is
to keep text ids out of the ranges the layout reserves: a builtin BPE must fit below the action
ids, and decoding skips control, visual and action ids instead of printing them as garbage.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer

from emu3_vla.vocab import TokenLayout

BUILTIN_BPE = Path(__file__).with_name("assets") / "text_bpe.json"
TOKENIZER_FILE = "tokenizer.json"


class TextTokenizer:
    """Encode instructions / captions to token ids of a :class:`TokenLayout` and back."""

    def __init__(self, tokenizer: Tokenizer, layout: TokenLayout, *, builtin: bool) -> None:
        self._tok = tokenizer
        self.layout = layout
        self.builtin = builtin
        if builtin:
            size = tokenizer.get_vocab_size(with_added_tokens=False)
            if size > layout.action_range.start:
                raise ValueError(
                    f"text BPE has {size} ids but the layout's action ids start at "
                    f"{layout.action_range.start}; use a layout with text_size >= {size + layout.action_vocab_size}"
                )

    @classmethod
    def builtin_for(cls, layout: TokenLayout) -> TextTokenizer:
        """The shipped 1,024-id BPE, for presets (no download)."""
        return cls(Tokenizer.from_file(str(BUILTIN_BPE)), layout, builtin=True)

    @classmethod
    def from_folder(cls, folder: str | Path, layout: TokenLayout, *, builtin: bool = False) -> TextTokenizer:
        path = Path(folder) / TOKENIZER_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {TOKENIZER_FILE} in {folder}: the text tokenizer is missing")
        return cls(Tokenizer.from_file(str(path)), layout, builtin=builtin)

    def save(self, folder: str | Path) -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        self._tok.save(str(Path(folder) / TOKENIZER_FILE))

    def encode(self, text: str) -> list[int]:
        """Plain text -> ids, without any control tokens (callers add BOS etc. by layout role)."""
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Iterable[str]) -> list[list[int]]:
        return [list(e.ids) for e in self._tok.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> text; ids outside the plain-text range (actions, controls, visual codes) are dropped."""
        limit = self.layout.action_range.start
        return self._tok.decode([int(i) for i in ids if 0 <= int(i) < limit], skip_special_tokens=True)

    def text_vocab_size(self) -> int:
        """Number of ids this tokenizer can produce for plain text."""
        return min(self._tok.get_vocab_size(with_added_tokens=False), self.layout.action_range.start)
