"""Interleaved vision-action sequences: the one place that decides what the model reads.

A training window of ``frames * chunk`` steps (paper: 2 x 10 at 30 Hz) becomes (docs/design.md section 5)::

    [BOS] instruction
    for each of the frames (steps t, t + chunk, ...):
        static-view vision block   [SOV] "h*w" [SOT] rows+[EOL] [EOF] [EOV]
        wrist-view vision block    (same format, its own size)
        state tokens               optional: one bin per chosen state dimension (``state_dims``)
        [BOA] FAST tokens of the chunk's actions [EOA]

with per-token loss weights: 0 on ``[BOS]``, the instruction and the state tokens (inputs, never
predicted), ``vision_weight`` (0.5) on every token of a vision block, ``action_weight`` (1.0) on
``[BOA]``, the action tokens and ``[EOA]``. An observation is a mapping from view name to VQ codes,
plus the raw state vector under :data:`STATE` when the spec reads state.
``loss_weights[i]`` weighs the prediction *of* token ``i`` (made at position ``i - 1``).

Padding and truncation rules:

* the instruction is cut to ``max_instruction_tokens`` (its tail is dropped) — it is the only part
  that may be shortened, since every other token carries the window's meaning;
* a sequence longer than ``max_length`` raises :class:`SequenceTooLong` instead of being cut;
* batches are right-padded with ``[PAD]`` (weight 0, label -100, attention mask 0) by :func:`collate`.

The same builder makes the inference prompt (:meth:`SequenceBuilder.prompt`), so training and
closed-loop control can never disagree on the layout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from emu3_vla.data.state_tokens import StateBinning
from emu3_vla.text_tokenizer import TextTokenizer
from emu3_vla.vision_block import vision_block
from emu3_vla.vocab import TokenLayout

IGNORE_INDEX = -100
#: Observation key of the raw proprioceptive state vector (not a camera view).
STATE = "state"


class SequenceTooLong(ValueError):
    """A window does not fit the model's context; shorten the window, views or instruction."""


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """How windows become token sequences (the knobs of the paper's recipe and its ablations)."""

    views: tuple[str, ...] = ("static", "gripper")
    frames: int = 2
    chunk: int = 10
    vision_weight: float = 0.5
    action_weight: float = 1.0
    with_eol: bool = True
    blind: bool = False  # ablation: every code replaced by code 0 (same layout, no visual information)
    max_instruction_tokens: int = 48
    max_length: int | None = None
    # Proprioceptive state tokens (none: the paper's layout). ``state_low``/``state_high`` are fitted
    # on the training data (:class:`~emu3_vla.data.state_tokens.StateBinning`) before training starts.
    state_dims: tuple[int, ...] = ()
    state_low: tuple[float, ...] = ()
    state_high: tuple[float, ...] = ()
    state_bins: int = 256

    def __post_init__(self) -> None:
        if self.frames < 1 or self.chunk < 1:
            raise ValueError(f"frames and chunk must be >= 1, got frames={self.frames}, chunk={self.chunk}")
        if not self.views:
            raise ValueError("at least one camera view is needed")
        if STATE in self.views:
            raise ValueError(f"{STATE!r} is reserved for the proprioceptive state; rename that camera view")
        if self.state_low and len(self.state_low) != len(self.state_dims):
            raise ValueError(f"state_low has {len(self.state_low)} values for {len(self.state_dims)} state dims")

    @property
    def uses_state(self) -> bool:
        return bool(self.state_dims)

    def state_binning(self) -> StateBinning:
        """The fitted binning; raises if the spec reads state but its range was never fitted."""
        if not self.state_dims:
            raise ValueError("this sequence layout has no state tokens")
        if not self.state_low:
            raise ValueError("the state bins are not fitted yet (fit them on the training data first)")
        return StateBinning(self.state_dims, self.state_low, self.state_high, self.state_bins)

    @property
    def window(self) -> int:
        """Steps covered by one training window (frames x chunk)."""
        return self.frames * self.chunk

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "views": list(self.views)}

    @classmethod
    def from_dict(cls, data: Mapping) -> SequenceSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("views", "state_dims", "state_low", "state_high"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclasses.dataclass
class TokenSequence:
    """One training example. Arrays are int64 / float32 of equal length."""

    input_ids: np.ndarray
    loss_weights: np.ndarray

    @property
    def labels(self) -> np.ndarray:
        return np.where(self.loss_weights > 0, self.input_ids, IGNORE_INDEX)

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


class SequenceBuilder:
    """Builds training sequences and inference prompts for one layout and text tokenizer."""

    def __init__(self, layout: TokenLayout, text_tokenizer: TextTokenizer, spec: SequenceSpec | None = None):
        self.layout = layout
        self.text = text_tokenizer
        self.spec = spec or SequenceSpec()
        self._state = self.spec.state_binning() if self.spec.uses_state and self.spec.state_low else None
        self._instructions: dict[str, np.ndarray] = {}  # a closed loop asks for the same instruction every query

    # ------------------------------------------------------------- pieces
    def instruction_ids(self, instruction: str) -> np.ndarray:
        """``[BOS]`` and the instruction's text ids (cut to ``max_instruction_tokens``); read-only."""
        cached = self._instructions.get(instruction)
        if cached is None:
            ids = self.text.encode(instruction.strip())[: self.spec.max_instruction_tokens]
            cached = np.asarray([self.layout.bos_id, *ids], dtype=np.int64)
            cached.flags.writeable = False
            self._instructions[instruction] = cached
        return cached

    def observation_ids(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        """Everything one time step shows the model: its vision blocks, then its state tokens."""
        return np.concatenate([self.vision_ids(observation), self.state_ids(observation)])

    def state_ids(self, observation: Mapping[str, np.ndarray]) -> np.ndarray:
        """One state-bin token per state dimension the spec reads (empty without state)."""
        if not self.spec.uses_state:
            return np.zeros(0, dtype=np.int64)
        if self._state is None:
            raise ValueError("the state bins are not fitted yet (fit them on the training data first)")
        if STATE not in observation:
            raise KeyError(
                f"this model reads the proprioceptive state (dims {self.spec.state_dims}) but the observation "
                f"has no {STATE!r}; it has {sorted(observation)}"
            )
        bins = self._state.encode(np.asarray(observation[STATE]).reshape(-1))
        return np.asarray(self.layout.state_to_id(bins), dtype=np.int64)

    def vision_ids(self, codes_by_view: Mapping[str, np.ndarray]) -> np.ndarray:
        """Vision blocks of one time step, in the spec's view order."""
        missing = [v for v in self.spec.views if v not in codes_by_view]
        if missing:
            raise KeyError(f"codes for views {missing} are missing; got {sorted(codes_by_view)}")
        blocks = []
        for v in self.spec.views:
            codes = np.asarray(codes_by_view[v])
            if self.spec.blind:
                codes = np.zeros_like(codes)
            blocks.append(vision_block(codes, self.layout, self.text, with_eol=self.spec.with_eol))
        return np.concatenate(blocks)

    def action_ids(self, fast_ids: Sequence[int] | np.ndarray, *, closed: bool = True) -> np.ndarray:
        """``[BOA] actions [EOA]`` (``closed=False`` leaves out ``[EOA]``)."""
        body = self.layout.fast_to_id(np.asarray(fast_ids, dtype=np.int64))
        tail = [self.layout.eoa_id] if closed else []
        return np.concatenate([[self.layout.boa_id], body, tail]).astype(np.int64)

    # ------------------------------------------------------------ training
    def build(
        self,
        instruction: str | np.ndarray,
        observations: Sequence[Mapping[str, np.ndarray]],
        actions: Sequence[Sequence[int] | np.ndarray],
    ) -> TokenSequence:
        """One window: ``observations[i]`` holds the codes of frame i per view (and its :data:`STATE`
        when the spec reads state), ``actions[i]`` the FAST
        ids of the chunk executed after it. ``instruction`` may be text or pre-built ids (with BOS)."""
        spec = self.spec
        if len(observations) != spec.frames or len(actions) != spec.frames:
            raise ValueError(
                f"a window has {spec.frames} frames and {spec.frames} action chunks; "
                f"got {len(observations)} and {len(actions)}"
            )
        head = self.instruction_ids(instruction) if isinstance(instruction, str) else np.asarray(instruction)
        ids = [head]
        weights = [np.zeros(len(head), dtype=np.float32)]
        for obs, act in zip(observations, actions, strict=True):
            vis = self.vision_ids(obs)
            state = self.state_ids(obs)
            act_ids = self.action_ids(act)
            ids += [vis, state, act_ids]
            weights += [
                np.full(len(vis), spec.vision_weight, dtype=np.float32),
                np.zeros(len(state), dtype=np.float32),
                np.full(len(act_ids), spec.action_weight, dtype=np.float32),
            ]
        seq = TokenSequence(np.concatenate(ids), np.concatenate(weights))
        if spec.max_length is not None and len(seq) > spec.max_length:
            raise SequenceTooLong(
                f"window needs {len(seq)} tokens but max_length is {spec.max_length}; use fewer frames, "
                "smaller camera views, or a model with a longer context"
            )
        return seq

    # ----------------------------------------------------------- inference
    def prompt(
        self,
        instruction: str | np.ndarray,
        history: Sequence[tuple[Mapping[str, np.ndarray], Sequence[int] | np.ndarray]],
        current: Mapping[str, np.ndarray],
    ) -> np.ndarray:
        """Closed-loop prompt: instruction, up to ``frames - 1`` past (observation, action) pairs,
        the current observation, then ``[BOA]`` — the model continues with action ids and ``[EOA]``."""
        if len(history) > self.spec.frames - 1:
            raise ValueError(f"history holds at most {self.spec.frames - 1} steps, got {len(history)}")
        head = self.instruction_ids(instruction) if isinstance(instruction, str) else np.asarray(instruction)
        parts = [head]
        for obs, act in history:
            parts += [self.observation_ids(obs), self.action_ids(act)]
        parts += [self.observation_ids(current), np.array([self.layout.boa_id], dtype=np.int64)]
        return np.concatenate(parts)


def collate(sequences: Sequence[TokenSequence], pad_id: int, *, pad_to_multiple_of: int = 1) -> dict[str, torch.Tensor]:
    """Right-pad a batch: ``input_ids``, ``attention_mask``, ``labels`` (-100 on pads and unweighted
    tokens) and ``loss_weights`` (0 on pads)."""
    if not sequences:
        raise ValueError("cannot collate an empty batch")
    length = max(len(s) for s in sequences)
    length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    n = len(sequences)
    input_ids = np.full((n, length), pad_id, dtype=np.int64)
    weights = np.zeros((n, length), dtype=np.float32)
    mask = np.zeros((n, length), dtype=np.int64)
    for i, s in enumerate(sequences):
        input_ids[i, : len(s)] = s.input_ids
        weights[i, : len(s)] = s.loss_weights
        mask[i, : len(s)] = 1
    labels = np.where(weights > 0, input_ids, IGNORE_INDEX)
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(mask),
        "labels": torch.from_numpy(labels),
        "loss_weights": torch.from_numpy(weights),
    }
