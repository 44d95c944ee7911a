"""The closed-loop Emu3 VLA policy: a :class:`~emu3_vla.vla.VLAModel` driven per environment.

The model does the token work (:meth:`VLAModel.tokenize`, :meth:`VLAModel.predict`); this module
keeps only what belongs to one environment:

* :class:`VLAWindows` — each environment's sliding window (docs/design.md section 5): the
  instruction, the previous frame's codes and the action ids generated for it. One query encodes
  the current frames of every environment that needs a chunk (one VQ batch per view) and decodes
  their chunks as one batch;
* :class:`Emu3VLAPolicy` — the :class:`~policies.base.Policy` a rollout steps with: the windows
  behind a :class:`~policies.chunk_broker.ChunkBroker` (a queue per environment, a new instruction
  starts a new window, ``execute_steps`` of each 10-step chunk are executed, then the model is
  asked again).

Observations are CALVIN's dicts by default; where to find each view and the robot state is read
from the checkpoint (``obs_keys`` overrides it for simulators that name things differently).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emu3_vla.data.sequence import STATE
from emu3_vla.vla import DECODERS, ActionDecoding, ChunkPrediction, Frame, FrameCodes, VLAModel
from policies.base import Observation, get_path, observation_keys
from policies.chunk_broker import ChunkBroker

log = logging.getLogger(__name__)

__all__ = ["DECODERS", "Emu3VLAPolicy", "PolicyStats", "VLAWindows", "frame_reader"]


@dataclasses.dataclass
class PolicyStats:
    """Counters a rollout reports: model queries, generated tokens, malformed action streams."""

    queries: int = 0
    tokens: int = 0
    malformed: int = 0
    saturated: int = 0  # chunks with a coefficient at the edge of FAST's fitted range (see DecodeResult)
    issues: dict[str, int] = dataclasses.field(default_factory=dict)
    malformed_by_env: dict[int, int] = dataclasses.field(default_factory=dict)

    def count(self, prediction: ChunkPrediction, env_ids: Sequence[int]) -> None:
        decoded = prediction.decoded
        self.queries += len(env_ids)
        self.tokens += prediction.tokens
        self.malformed += int(decoded.num_malformed)
        self.saturated += int(getattr(decoded, "num_saturated", 0))
        for i, bad in zip(env_ids, decoded.malformed, strict=True):
            self.malformed_by_env[i] = self.malformed_by_env.get(i, 0) + int(bad)
        for kind, flags in decoded.issues.items():
            self.issues[kind] = self.issues.get(kind, 0) + int(np.sum(flags))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def frame_reader(vla: VLAModel, obs_keys: Mapping[str, str] | None = None) -> Callable[[Observation], Frame]:
    """Observation -> the frame the model reads (views, state), with keys from the checkpoint or ``obs_keys``."""
    inputs = vla.model_inputs()
    keys = observation_keys(inputs.view_keys, inputs.state_key if vla.spec.uses_state else None)
    keys.update(obs_keys or {})
    needed = [*vla.spec.views, *([STATE] if vla.spec.uses_state else [])]
    missing = [v for v in needed if v not in keys]
    if missing:
        raise ValueError(f"no observation key for {missing}; pass obs_keys={{name: 'path.in.obs'}}")

    def read(obs: Observation) -> Frame:
        return {name: np.asarray(get_path(obs, keys[name])) for name in needed}

    read.keys = {name: keys[name] for name in needed}  # type: ignore[attr-defined]
    return read


class VLAWindows:
    """Per-environment sliding windows over a :class:`VLAModel`: a :class:`~policies.chunk_broker.ChunkSource`."""

    def __init__(
        self, vla: VLAModel, read_frame: Callable[[Any], Frame], decoding: ActionDecoding | None = None
    ) -> None:
        self.vla = vla
        self.read_frame = read_frame
        self.decoding = decoding or vla.action_decoding()
        self.stats = PolicyStats()
        self._history: dict[int, list[tuple[FrameCodes, np.ndarray]]] = {}

    def reset(self, env_index: int | None = None) -> None:
        if env_index is None:
            self._history.clear()
        else:
            self._history.pop(env_index, None)

    def query(self, env_ids: list[int], observations: Sequence[Any], instructions: Sequence[str]) -> np.ndarray:
        """Full chunks ``(N, chunk, action_dim)``; each environment's window moves on by one frame."""
        past = self.vla.spec.frames - 1
        histories = [self._history.get(i, [])[-past:] if past else [] for i in env_ids]
        frames = [self.read_frame(o) for o in observations]
        prediction = self.vla.predict(instructions, histories, frames, decoding=self.decoding)
        self.stats.count(prediction, env_ids)
        for i, frame, ids in zip(env_ids, prediction.frames, prediction.action_ids, strict=True):
            self._history[i] = [*self._history.get(i, []), (frame, ids)][-max(past, 1) :]
        return prediction.actions


class Emu3VLAPolicy(ChunkBroker):
    """Batched closed-loop control with a trained :class:`~emu3_vla.vla.VLAModel`: its
    :class:`VLAWindows` behind the chunk broker (``act``, ``step``, ``reset`` are the broker's)."""

    def __init__(
        self,
        vla: VLAModel,
        *,
        execute_steps: int | None = None,
        obs_keys: Mapping[str, str] | None = None,
        device: str | torch.device = "cpu",
        clip_actions: bool = True,
        decoder: str = "plain",
        decoder_options: Mapping[str, Any] | None = None,
        exact_length: bool = True,
    ) -> None:
        """``decoder``: ``"plain"``, ``"static"`` or ``"parallel"`` (the same actions; see
        :meth:`VLAModel.configure_decoding`); ``execute_steps``: actions run per query (default: the chunk)."""
        chunk = vla.spec.chunk
        execute_steps = chunk if execute_steps is None else int(execute_steps)
        if not 1 <= execute_steps <= chunk:
            raise ValueError(f"execute_steps must be in [1, {chunk}] (the chunk length), got {execute_steps}")
        self.vla = vla.to(device)
        decoding = vla.action_decoding(
            decoder, exact_length=exact_length, options=decoder_options, clip_actions=clip_actions
        )
        self.windows = VLAWindows(vla, frame_reader(vla, obs_keys), decoding)
        super().__init__(self.windows, execute_steps)

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> Emu3VLAPolicy:
        return cls(VLAModel.load(path, device=kwargs.get("device", "cpu")), **kwargs)

    @property
    def stats(self) -> PolicyStats:
        return self.windows.stats

    @property
    def decoding(self) -> ActionDecoding:
        return self.windows.decoding

    @property
    def obs_keys(self) -> dict[str, str]:
        return dict(self.windows.read_frame.keys)
