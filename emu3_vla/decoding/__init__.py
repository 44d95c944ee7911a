"""Decoding with an Emu3 decoder: which tokens may come next, and the loops that write them.

Every generation in the package (actions for the policy, images, videos and text for the
generation tasks in :mod:`emu3_vla.generation`) runs through this package. Layers, each
replaceable on its own:

* :mod:`.constraints` — which tokens each batch row may write next (vectorised state machines):
  :class:`GridConstraint` (image / video grids), :class:`TokenSetConstraint` with
  :func:`text_constraint` (text + ``[EOS]``) and :func:`action_constraint` (FAST ids + ``[EOA]``),
  :class:`ActionLengthConstraint` (exactly one chunk of FAST coefficients, then ``[EOA]``);
* :mod:`.sampling` — :class:`Sampler`: greedy, temperature, top-k, top-p with per-row seeds;
* :mod:`.loop` — :func:`decode`: the KV-cached loop with left-padded batches and classifier-free
  guidance on the logits (any constraint, any sampler);
* :mod:`.fast_decoder` — :class:`FastDecoder`, greedy action decoding that yields the same tokens
  as :func:`decode` faster: static KV cache, fused action head, CUDA graphs, prefix reuse and
  exact draft-and-verify (``mode="parallel"``). Its parts: :mod:`.weights` (fused q/k/v, gate/up,
  the head of allowed ids), :mod:`.layers` / :mod:`.forward` (layer math over a static cache),
  :mod:`.steps` (the sequential and the verify step, no host syncs), :mod:`.drafting` (drafts from
  each row's own history), :mod:`.graphs` (CUDA-graph capture), :mod:`.prefix_cache` (keys/values
  of recurring prompt prefixes). ``PERFORMANCE.md`` has the measurements.
"""

from emu3_vla.decoding.constraints import (
    ActionLengthConstraint,
    Constraint,
    GridConstraint,
    TokenSetConstraint,
    action_constraint,
    text_constraint,
)
from emu3_vla.decoding.fast_decoder import MODES, FastDecoder, FastDecodeStats
from emu3_vla.decoding.loop import DecodeOutput, StepTrace, decode, left_pad
from emu3_vla.decoding.prefix_cache import PrefixCache
from emu3_vla.decoding.sampling import GREEDY, Sampler, row_generators
from emu3_vla.decoding.weights import DecoderWeights, parameter_bytes, step_read_bytes

__all__ = [
    "GREEDY",
    "MODES",
    "ActionLengthConstraint",
    "Constraint",
    "DecodeOutput",
    "DecoderWeights",
    "FastDecodeStats",
    "FastDecoder",
    "GridConstraint",
    "PrefixCache",
    "Sampler",
    "StepTrace",
    "TokenSetConstraint",
    "action_constraint",
    "decode",
    "left_pad",
    "parameter_bytes",
    "row_generators",
    "step_read_bytes",
    "text_constraint",
]
