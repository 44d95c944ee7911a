"""Token generation with an Emu3 decoder: the decoding core and the generation tasks built on it.

Layers, each replaceable on its own:

* :mod:`.constraints` — which tokens each batch row may write next (vectorised state machines):
  :class:`GridConstraint` (image / video grids), :class:`TokenSetConstraint` with
  :func:`text_constraint` (text + ``[EOS]``) and :func:`action_constraint` (FAST ids + ``[EOA]``);
* :mod:`.sampling` — :class:`Sampler`: greedy, temperature, top-k, top-p with per-row seeds;
* :mod:`.decoding` — :func:`decode`: the KV-cached loop with left-padded batches and
  classifier-free guidance on the logits;
* :mod:`.tasks` — :func:`text_to_image`, :func:`text_to_video`, :func:`extend_video`,
  :func:`image_to_text` on VQ codes;
* :mod:`.caption_eval` — does image-to-text name the right robot task? (:func:`evaluate_captions`);
* :mod:`.media` and :mod:`.cli` — PNG / mp4 files and ``emu3-vla generate``.
"""

from emu3_vla.generation.caption_eval import CaptionScore, evaluate_captions, evaluate_checkpoint, score_captions
from emu3_vla.generation.constraints import (
    ActionLengthConstraint,
    Constraint,
    GridConstraint,
    TokenSetConstraint,
    action_constraint,
    text_constraint,
)
from emu3_vla.generation.decoding import DecodeOutput, StepTrace, decode, left_pad
from emu3_vla.generation.prompts import generation_prompt, image_to_text_prompt
from emu3_vla.generation.sampling import GREEDY, Sampler, row_generators
from emu3_vla.generation.tasks import (
    TextGeneration,
    VisualGeneration,
    extend_video,
    generate_frames,
    image_to_text,
    text_to_image,
    text_to_video,
)

__all__ = [
    "GREEDY",
    "ActionLengthConstraint",
    "CaptionScore",
    "Constraint",
    "DecodeOutput",
    "GridConstraint",
    "Sampler",
    "StepTrace",
    "TextGeneration",
    "TokenSetConstraint",
    "VisualGeneration",
    "action_constraint",
    "decode",
    "evaluate_captions",
    "evaluate_checkpoint",
    "extend_video",
    "generate_frames",
    "generation_prompt",
    "image_to_text",
    "image_to_text_prompt",
    "left_pad",
    "row_generators",
    "score_captions",
    "text_constraint",
    "text_to_image",
    "text_to_video",
]
