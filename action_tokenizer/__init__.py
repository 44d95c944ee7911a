"""Action tokenizers for emu3-vla: FAST (DCT + byte-level BPE) and uniform binning.

Typical use::

    from action_tokenizer import FastTokenizer, load_action_tokenizer, binarize_gripper

    tok = FastTokenizer.fit(chunks)              # chunks (N, T, D) in action units; fits the normaliser too
    ids = tok.encode(chunks)                     # N lists of FAST ids in [0, 1024)
    report = tok.encode_with_report(chunks)      # EncodeResult: the same .ids, .clamped, .error_bound per chunk
    out = tok.decode(ids)                        # DecodeResult: .actions (N, T, D), .malformed, .saturated, .counts()
    tok.save("runs/fast"); tok = load_action_tokenizer("runs/fast")
    actions = binarize_gripper(out.actions)      # gripper exactly -1 / +1 before it reaches the robot

This package imports nothing else of emu3-vla; the mapping of FAST ids onto the language vocabulary
(``last_text_id - fast_id``) lives in ``emu3_vla.vocab.TokenLayout``.
"""

from action_tokenizer.binning import BinningTokenizer
from action_tokenizer.data import ActionSource, load_chunks, make_chunks, register_action_source
from action_tokenizer.dct import RoundingErrorBound, rounding_error_bound
from action_tokenizer.decoding import ISSUE_KINDS, DecodeResult, MalformedTokensError
from action_tokenizer.encoding import EncodeResult
from action_tokenizer.fast import FastConfig, FastTokenizer
from action_tokenizer.gripper import NEUTRAL_GRIPPER, binarize_gripper, default_gripper_dims
from action_tokenizer.loading import ActionTokenizer, load_action_tokenizer
from action_tokenizer.normalizer import ActionNormalizer

__all__ = [
    "ISSUE_KINDS",
    "NEUTRAL_GRIPPER",
    "ActionNormalizer",
    "ActionSource",
    "ActionTokenizer",
    "BinningTokenizer",
    "DecodeResult",
    "EncodeResult",
    "FastConfig",
    "FastTokenizer",
    "MalformedTokensError",
    "RoundingErrorBound",
    "binarize_gripper",
    "default_gripper_dims",
    "load_action_tokenizer",
    "load_chunks",
    "make_chunks",
    "register_action_source",
    "rounding_error_bound",
]
