"""Fast greedy action decoding: static KV cache, fused action head, CUDA graphs, prefix reuse and
exact draft-and-verify parallel decoding (:class:`FastDecoder`).

Layers, each replaceable on its own:

* :mod:`.weights` — the decoder's weights with fused q/k/v and gate/up and a head of the allowed ids;
* :mod:`.layers` / :mod:`.forward` — the layer math over a static cache (slot = position);
* :mod:`.steps` — device-resident state, the sequential and the verify step (no host syncs);
* :mod:`.drafting` — drafts from each row's own history (prompt lookup) or Jacobi guesses;
* :mod:`.graphs` — CUDA-graph capture and the lagged "all done" flag;
* :mod:`.prefix_cache` — keys/values of recurring prompt prefixes;
* :mod:`.engine` — :class:`FastDecoder`, the drop-in for :func:`emu3_vla.generation.decode`.
"""

from emu3_vla.inference.engine import MODES, FastDecoder, FastDecodeStats
from emu3_vla.inference.prefix_cache import PrefixCache
from emu3_vla.inference.weights import DecoderWeights, parameter_bytes, step_read_bytes

__all__ = [
    "MODES",
    "DecoderWeights",
    "FastDecodeStats",
    "FastDecoder",
    "PrefixCache",
    "parameter_bytes",
    "step_read_bytes",
]
