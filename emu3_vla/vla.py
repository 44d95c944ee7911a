"""A trained vision-language-action model: everything between camera pixels and an action chunk.

On top of an :class:`~emu3_vla.checkpoint.Emu3Bundle` (decoder, VQ tokenizer, layout, text
tokenizer) a VLA checkpoint carries the action tokenizer it was trained with (``action_tokenizer/``),
the sequence settings (views and their sizes, frames per window, chunk length, state tokens) and
its inputs (which dataset key each view and the state came from, the action's dimension and bounds)
under ``extra["vla"]`` in ``emu3_vla.json``. Loading it gives back exactly the token layout the
model was trained on, so a policy cannot silently disagree with training.

The token side lives here too, one call each way (docs/design.md section 5):

* :meth:`VLAModel.tokenize`: camera images (and the robot state) -> VQ codes per view;
* :meth:`VLAModel.predict`: instruction, the window's earlier frames with their action ids, and the
  current frame -> the prompt (:class:`~emu3_vla.data.sequence.SequenceBuilder`, the same builder
  that made the training windows) -> greedy decoding under a logits mask that admits only FAST ids
  and ``[EOA]`` (with ``exact_length``: exactly one chunk of coefficients,
  :class:`~emu3_vla.decoding.ActionLengthConstraint`) -> FAST ids -> the action chunk, in action
  units, clipped to the model's action bounds, gripper dimensions exactly -1 / +1.

Which frames a window holds for which environment is the caller's business (the closed-loop
policy keeps one window per environment, :mod:`policies.emu3_policy`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from action_tokenizer import binarize_gripper, load_action_tokenizer
from emu3_vla.checkpoint import CheckpointError, Emu3Bundle
from emu3_vla.cli_args import DECODER_NAMES
from emu3_vla.data.sequence import STATE, SequenceBuilder, SequenceSpec
from emu3_vla.vision import ViewSpec, VisionTokenizer

ACTION_TOKENIZER_DIR = "action_tokenizer"
#: Decoding engines: ``plain`` (:func:`emu3_vla.decoding.decode`), ``static`` / ``parallel``
#: (:class:`emu3_vla.decoding.FastDecoder`: the same tokens, faster).
DECODERS = DECODER_NAMES
#: A frame as :meth:`VLAModel.tokenize` reads it: view -> ``(H, W, 3) uint8`` pixels or ``(h, w)``
#: VQ codes, plus :data:`~emu3_vla.data.sequence.STATE` -> the robot state vector when the model reads state.
Frame = Mapping[str, np.ndarray]
#: A tokenized frame: view -> ``(h, w)`` int64 codes (plus the state vector).
FrameCodes = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class ModelInputs:
    """Where a model's inputs came from and what its actions are: saved with the checkpoint so that
    serving and evaluation need no flags to feed it.

    ``view_keys``: model view -> the dataset key its frames were read from (e.g. ``static`` ->
    ``observation.images.static``); ``state_key`` / ``state_size``: the dataset's state feature and
    its length (None without state tokens); ``action_key`` / ``action_dim``; ``action_low`` /
    ``action_high``: per-dimension bounds the executed actions are clipped to.
    """

    view_keys: Mapping[str, str]
    state_key: str | None = None
    state_size: int | None = None
    action_key: str = "action"
    action_dim: int = 7
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if len(self.action_low) != len(self.action_high):
            raise ValueError("action_low and action_high must have the same length")
        if self.action_low and len(self.action_low) not in (1, self.action_dim):
            raise ValueError(f"action bounds need 1 or {self.action_dim} values, got {len(self.action_low)}")

    @classmethod
    def calvin(cls, views: Sequence[str] = ("static", "gripper"), *, state: bool = True) -> ModelInputs:
        """The inputs of a model trained on a CALVIN-format dataset (``emu3-vla collect`` or CALVIN's
        own): relative actions in [-1, 1], the 15-d ``robot_obs``. Also the fallback for checkpoints
        saved before the inputs were recorded."""
        keys = {"static": "observation.images.static", "gripper": "observation.images.gripper"}
        return cls(
            view_keys={v: keys.get(v, v) for v in views},
            state_key="observation.state" if state else None,
            state_size=15 if state else None,
            action_dim=7,
            action_low=(-1.0,),
            action_high=(1.0,),
        )

    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.action_low:
            return None
        shape = (self.action_dim,)
        low = np.broadcast_to(np.asarray(self.action_low, dtype=np.float64), shape)
        high = np.broadcast_to(np.asarray(self.action_high, dtype=np.float64), shape)
        return low, high

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "view_keys": dict(self.view_keys)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInputs:
        values = dict(data)
        for key in ("action_low", "action_high"):
            values[key] = tuple(float(v) for v in values.get(key) or ())
        return cls(**values)


@dataclasses.dataclass
class ChunkPrediction:
    """What :meth:`VLAModel.predict` returns for a batch of B windows."""

    actions: np.ndarray  # (B, chunk, action_dim): action units, clipped to the bounds, gripper +-1
    action_ids: list[np.ndarray]  # each row's FAST ids: the action tokens a window keeps for this frame
    frames: list[FrameCodes]  # each row's current frame as tokens (what a window keeps beside its action ids)
    decoded: Any  # action_tokenizer DecodeResult: per row, the problems found in the stream and repaired

    @property
    def tokens(self) -> int:
        return sum(len(ids) for ids in self.action_ids)


class ActionDecoding:
    """How :meth:`VLAModel.predict` turns a prompt into an action chunk: the constraint, the engine and
    whether to clip. Built by :meth:`VLAModel.action_decoding`; each policy holds its own (a fast
    decoder keeps per-policy caches)."""

    def __init__(
        self,
        vla: VLAModel,
        decoder: str = "plain",
        *,
        exact_length: bool = True,
        options: Mapping[str, Any] | None = None,
        clip_actions: bool = True,
    ) -> None:
        from emu3_vla.decoding import ActionLengthConstraint, FastDecoder, TokenSetConstraint

        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {DECODERS}")
        if decoder == "plain" and options:
            raise ValueError("decoder_options apply to decoder='static' or 'parallel' only")
        layout, tokenizer = vla.layout, vla.action_tokenizer
        counts = tokenizer.coefficients_per_token() if exact_length else None
        self.exact_length = counts is not None
        if counts is not None:
            total = int(tokenizer.time_horizon) * int(tokenizer.action_dim)
            self.constraint = ActionLengthConstraint(layout, counts, total)
            self.max_new_tokens = total + 1
        else:  # any action ids, [EOA] after at least one; the action tokenizer repairs a wrong length
            n_ids = int(tokenizer.vocab_size)
            allowed = range(layout.last_text_id - n_ids + 1, layout.last_text_id + 1)
            self.constraint = TokenSetConstraint(
                allowed, layout.eoa_id, layout.pad_id, layout.vocab_size, min_new_tokens=1
            )
            self.max_new_tokens = int(tokenizer.max_stream_length()) + 1
        self.decoder = decoder
        self.clip_actions = clip_actions
        self.pad_id = layout.pad_id
        self.model = vla.bundle.decoder
        self.fast = None
        if decoder != "plain":
            self.fast = FastDecoder(
                self.model, self.constraint, pad_id=layout.pad_id, mode=decoder, **dict(options or {})
            )

    def run(self, prompts: list[list[int]], prefix_lengths: list[int]) -> Any:
        from emu3_vla.decoding import decode

        if self.fast is None:
            return decode(self.model, prompts, self.constraint, pad_id=self.pad_id, max_new_tokens=self.max_new_tokens)
        # [BOS] instruction opens every prompt of an episode: the fast decoder reuses its keys/values
        return self.fast.decode(prompts, max_new_tokens=self.max_new_tokens, prefix_lengths=prefix_lengths)


@dataclasses.dataclass
class VLAModel:
    bundle: Emu3Bundle
    action_tokenizer: Any  # action_tokenizer.ActionTokenizer (FAST or binning)
    spec: SequenceSpec
    views: dict[str, ViewSpec]
    inputs: ModelInputs | None = None  # None: CALVIN's (checkpoints saved before inputs were recorded)
    _cached: dict[str, Any] = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        missing = [v for v in self.spec.views if v not in self.views]
        if missing:
            raise ValueError(f"sequence views {missing} have no size in views {sorted(self.views)}")
        vocab = int(self.action_tokenizer.vocab_size)
        if vocab > self.bundle.layout.action_vocab_size:
            raise ValueError(
                f"the action tokenizer has {vocab} ids but the layout reserves {self.bundle.layout.action_vocab_size}"
            )

    @property
    def layout(self):
        return self.bundle.layout

    @property
    def action_dim(self) -> int:
        return int(self.action_tokenizer.action_dim)

    def model_inputs(self) -> ModelInputs:
        """The recorded inputs, or CALVIN's for the current layout (checkpoints saved before they were recorded)."""
        if self.inputs is not None:
            return self.inputs
        calvin = ModelInputs.calvin(self.spec.views, state=self.spec.uses_state)
        return dataclasses.replace(calvin, action_dim=self.action_dim)

    def builder(self) -> SequenceBuilder:
        """The sequence builder of the current spec (rebuilt when training replaces the spec)."""
        if self._cached.get("builder_spec") is not self.spec:
            self._cached["builder"] = SequenceBuilder(self.bundle.layout, self.bundle.text_tokenizer, self.spec)
            self._cached["builder_spec"] = self.spec
        return self._cached["builder"]

    def vision(self) -> VisionTokenizer:
        if self._cached.get("vision_vq") is not self.bundle.vq:
            self._cached["vision"] = self.bundle.vision_tokenizer(self.views)
            self._cached["vision_vq"] = self.bundle.vq
        return self._cached["vision"]

    # ------------------------------------------------------------ inference
    def to(self, device: str | torch.device) -> VLAModel:
        """Move the decoder and the VQ tokenizer to ``device`` in eval mode (decoding is rebuilt)."""
        self.bundle.decoder.to(device).eval()
        if self.bundle.vq is not None:
            self.bundle.vq.to(device).eval()
        self._cached.pop("vision_vq", None)
        self._cached.pop("decoding", None)
        return self

    def action_decoding(
        self,
        decoder: str = "plain",
        *,
        exact_length: bool = True,
        options: Mapping[str, Any] | None = None,
        clip_actions: bool = True,
    ) -> ActionDecoding:
        """A decoding setting for :meth:`predict`: ``decoder`` ``plain`` | ``static`` | ``parallel`` (the
        same tokens, faster; ``options`` go to the fast decoder); ``exact_length=False`` admits any
        number of FAST ids (the action tokenizer repairs the length); ``clip_actions`` clips to the
        model's action bounds."""
        return ActionDecoding(self, decoder, exact_length=exact_length, options=options, clip_actions=clip_actions)

    def tokenize(self, frames: Sequence[Frame]) -> list[FrameCodes]:
        """Frames -> VQ codes per view (one VQ batch per view), the state vector passed on.

        A view given as ``(h, w)`` codes (token mode: the client ran the VQ tokenizer) is taken as
        is; pixels of any size are resized to the view's size first.
        """
        vision = self.vision()
        out: list[FrameCodes] = [{} for _ in frames]
        for view in self.spec.views:
            todo = []
            for k, frame in enumerate(frames):
                if view not in frame:
                    raise KeyError(f"frame {k} has no view {view!r}; it has {sorted(frame)}")
                value = np.asarray(frame[view])
                if value.ndim == 2:
                    out[k][view] = value.astype(np.int64)
                else:
                    todo.append(k)
            if not todo:
                continue
            shapes = {np.asarray(frames[k][view]).shape for k in todo}
            if len(shapes) == 1:
                prepared = vision.prepare_view(np.stack([np.asarray(frames[k][view]) for k in todo]), view)
            else:  # clients may send different sizes: resize each to the view, then one VQ batch
                prepared = torch.stack([vision.prepare_view(np.asarray(frames[k][view])[None], view)[0] for k in todo])
            codes = vision.encode_images(prepared).numpy()
            for row, k in enumerate(todo):
                out[k][view] = codes[row]
        if self.spec.uses_state:
            for k, frame in enumerate(frames):
                if STATE not in frame:
                    raise KeyError(f"this model reads the robot state but frame {k} has none (key {STATE!r})")
                out[k][STATE] = np.asarray(frame[STATE], dtype=np.float32).reshape(-1)
        return out

    def predict(
        self,
        instructions: Sequence[str],
        histories: Sequence[Sequence[tuple[FrameCodes, np.ndarray]]],
        frames: Sequence[Frame],
        *,
        decoding: ActionDecoding | None = None,
    ) -> ChunkPrediction:
        """One action chunk per window: ``frames[k]`` is window ``k``'s current frame (pixels or codes
        per view, and the state; :meth:`tokenize`), ``histories[k]`` up to ``spec.frames - 1`` earlier
        (frame codes, FAST ids) pairs of it (from earlier predictions' ``frames`` and ``action_ids``);
        ``decoding`` defaults to plain greedy decoding of exactly one chunk."""
        if not len(instructions) == len(histories) == len(frames):
            raise ValueError(f"{len(instructions)} instructions, {len(histories)} histories, {len(frames)} frames")
        frames = self.tokenize(frames)
        builder = self.builder()
        prompts = [
            builder.prompt(text, history, frame).tolist()
            for text, history, frame in zip(instructions, histories, frames, strict=True)
        ]
        prefixes = [len(builder.instruction_ids(text)) for text in instructions]
        if decoding is None:
            decoding = self._cached.get("decoding") or self._cached.setdefault("decoding", self.action_decoding())
        out = decoding.run(prompts, prefixes)
        streams = [self._fast_ids(out.row(k)) for k in range(len(prompts))]
        decoded = self.action_tokenizer.decode(streams)
        return ChunkPrediction(self.executable(decoded.actions, clip=decoding.clip_actions), streams, frames, decoded)

    def executable(self, actions: np.ndarray, *, clip: bool = True) -> np.ndarray:
        """Decoded chunks -> what a robot executes: clipped to the action bounds, gripper exactly +-1."""
        bounds = self.model_inputs().bounds()
        if clip and bounds is not None:
            actions = np.clip(actions, *bounds)
        dims = tuple(self.action_tokenizer.gripper_dims())
        return binarize_gripper(actions, dims) if dims else actions

    def _fast_ids(self, row: list[int]) -> np.ndarray:
        layout = self.layout
        stop = (layout.eoa_id, layout.pad_id)
        ids = np.asarray([t for t in row if t not in stop], dtype=np.int64)
        return layout.id_to_fast(ids).astype(np.int64) if ids.size else np.zeros(0, dtype=np.int64)

    # ---------------------------------------------------------------- files
    def metadata(self) -> dict[str, Any]:
        return {
            "spec": self.spec.to_dict(),
            "views": {name: [v.height, v.width] for name, v in self.views.items()},
            "action_dim": self.action_tokenizer.action_dim,
            "inputs": self.model_inputs().to_dict(),
        }

    def save(
        self,
        folder: str | Path,
        *,
        decoder_state_dict: dict[str, torch.Tensor] | None = None,
        adapter_writer: Callable[[Path], None] | None = None,
    ) -> Path:
        """Write the VLA checkpoint. With ``adapter_writer`` the decoder's weights are left out and the
        writer adds a LoRA adapter and its base (see :mod:`emu3_vla.training.lora`)."""
        self.bundle.extra = {**self.bundle.extra, "vla": self.metadata()}

        def write_extra(tmp: Path) -> None:
            self.action_tokenizer.save(tmp / ACTION_TOKENIZER_DIR)
            if adapter_writer is not None:
                adapter_writer(tmp)

        return self.bundle.save(
            folder,
            extra_writer=write_extra,
            decoder_state_dict=decoder_state_dict,
            decoder_weights=adapter_writer is None,
        )

    @classmethod
    def load(
        cls, folder: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
    ) -> VLAModel:
        bundle = Emu3Bundle.load(folder, device=device, dtype=dtype)
        meta = bundle.extra.get("vla")
        if meta is None:
            raise CheckpointError(
                f"{folder} is an Emu3 model but not a trained VLA (no 'vla' settings in emu3_vla.json); "
                "train one with `emu3-vla train`"
            )
        tok_dir = Path(folder) / ACTION_TOKENIZER_DIR
        try:
            action_tokenizer = load_action_tokenizer(tok_dir)
        except (FileNotFoundError, ValueError) as err:
            raise CheckpointError(f"action tokenizer of {folder} is missing or unreadable: {err}") from err
        views = {name: ViewSpec(name, int(h), int(w)) for name, (h, w) in meta["views"].items()}
        inputs = ModelInputs.from_dict(meta["inputs"]) if meta.get("inputs") else None
        return cls(bundle, action_tokenizer, SequenceSpec.from_dict(meta["spec"]), views, inputs)
