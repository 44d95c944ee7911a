"""Training and building the byte-level BPE models (HF ``tokenizers``) behind FAST.

Trainer settings, identical for both schemes and taken from the public FAST processor:

* ``vocab_size``: 1,024 (the action ids Emu3 carves out of its text vocabulary)
* ``min_frequency=2``: a pair seen once is noise, not structure
* ``initial_alphabet``: every symbol an encodable coefficient can need, so no coefficient in the
  fitted range is ever unknown to the model (an unknown symbol would be dropped silently)
* ``max_token_length=10000``: effectively unlimited; long runs of zero high-frequency
  coefficients are exactly what should merge into one token
* no special tokens, no progress bar (fits run inside tests and CLIs)

The two pre-tokenisation schemes differ in what merges may cross:

``native``
    ``ByteLevel(use_regex=False)``: the whole chunk is one word, so a merge may span any
    neighbouring coefficients. The initial alphabet is the byte-level symbols of exactly the
    UTF-8 bytes the fitted code range uses.
``reference``
    The public processor's ``ByteLevelBPETokenizer`` pipeline: ``ByteLevel`` with the GPT-2 regex,
    which cuts each chunk's string into ~10-14 pieces at letter/digit/space/punctuation
    boundaries that no merge can cross. Its initial alphabet is ``chr(0) .. chr(max - min)``.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

#: Recorded in every saved ``processor_config.json`` so a reader can see how the BPE was trained.
BPE_TRAINER_SETTINGS = {"min_frequency": 2, "max_token_length": 10000, "special_tokens": []}


def _trainer(vocab_size: int, alphabet: list[str]) -> trainers.BpeTrainer:
    return trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=BPE_TRAINER_SETTINGS["min_frequency"],
        max_token_length=BPE_TRAINER_SETTINGS["max_token_length"],
        special_tokens=[],
        initial_alphabet=alphabet,
        show_progress=False,
    )


def native_pipeline() -> Tokenizer:
    """An untrained byte-level BPE whose pre-tokenizer maps bytes to symbols and never splits."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def reference_pipeline() -> Tokenizer:
    """An untrained BPE set up exactly like ``tokenizers.ByteLevelBPETokenizer()`` (the reference's)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def byte_symbols_for_codes(max_code: int) -> list[str]:
    """Byte-level symbols of every UTF-8 byte used by code points 0..max_code, sorted.

    Asks the byte-level pre-tokenizer itself for its byte -> symbol map, so the alphabet can
    never disagree with what encoding produces.
    """
    text = "".join(chr(c) for c in range(max_code + 1))
    pieces = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False).pre_tokenize_str(text)
    return sorted({ch for piece, _ in pieces for ch in piece})


def train_native(strings: Iterable[str], vocab_size: int, max_code: int) -> Tokenizer:
    """Train the native (unsplit, byte-level) BPE on coefficient strings."""
    tok = native_pipeline()
    tok.train_from_iterator(strings, trainer=_trainer(vocab_size, byte_symbols_for_codes(max_code)))
    return tok


def train_reference(strings: Iterable[str], vocab_size: int, max_code: int) -> Tokenizer:
    """Train a BPE the way the public FAST processor does (regex-split byte-level BPE)."""
    tok = reference_pipeline()
    tok.train_from_iterator(strings, trainer=_trainer(vocab_size, [chr(i) for i in range(max_code + 1)]))
    return tok
