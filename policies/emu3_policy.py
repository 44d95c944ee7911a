"""The closed-loop Emu3 VLA policy (DESIGN.md section 5).

Every ``execute_steps`` environment steps (default: the chunk length, 10) the policy queries the
model once per environment:

1. the current camera views are VQ-encoded (all querying environments in one batch); a model trained
   with state tokens also reads the proprioceptive state (``obs_keys["state"]``, CALVIN's ``robot_obs``);
2. the prompt is the instruction, the previous frame and the action tokens generated for it
   (a sliding two-frame window), the current frame and ``[BOA]`` — built by the same
   :class:`~emu3_vla.data.sequence.SequenceBuilder` that built the training windows;
3. the model decodes greedily with a logits mask that allows only the action tokenizer's ids and
   ``[EOA]`` (no string parsing) and, with ``exact_length=True`` (default), only ids that keep the
   stream at most one chunk of coefficients long and ``[EOA]`` exactly when it is full
   (:class:`~emu3_vla.generation.ActionLengthConstraint`), with a KV cache, all environments in one left-padded batch;
   ``decoder="static"`` / ``"parallel"`` run the same greedy decoding through
   :class:`~emu3_vla.inference.FastDecoder` (static cache, fused action head, CUDA graphs, the
   instruction's keys/values reused across queries; ``"parallel"`` verifies drafted tokens), which
   yields the same tokens;
4. the action ids are decoded by the action tokenizer in relaxed mode: a malformed stream still
   yields a finite chunk and is counted, never raised;
5. actions are un-normalised (inside the tokenizer), clipped to [-1, 1] and the gripper set to
   exactly -1 / +1; the first ``execute_steps`` of the chunk are queued for execution.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from action_tokenizer import binarize_gripper
from emu3_vla.data.sequence import STATE
from emu3_vla.generation import ActionLengthConstraint, TokenSetConstraint, decode
from emu3_vla.inference import FastDecoder
from emu3_vla.vla import VLAModel
from policies.base import Observation, get_path, resolve_env_ids

log = logging.getLogger(__name__)

CALVIN_OBS_KEYS = {"static": "rgb_obs.rgb_static", "gripper": "rgb_obs.rgb_gripper", STATE: "robot_obs"}
DECODERS = ("plain", "static", "parallel")


@dataclasses.dataclass
class PolicyStats:
    """Counters a rollout reports: model queries, generated tokens, malformed action streams."""

    queries: int = 0
    tokens: int = 0
    malformed: int = 0
    issues: dict[str, int] = dataclasses.field(default_factory=dict)
    malformed_by_env: dict[int, int] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class _EnvState:
    instruction: str | None = None
    queue: deque = dataclasses.field(default_factory=deque)
    history: list[tuple[dict[str, np.ndarray], np.ndarray]] = dataclasses.field(default_factory=list)


class Emu3VLAPolicy:
    """Batched closed-loop control with a trained :class:`~emu3_vla.vla.VLAModel`."""

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
        """``decoder``: ``"plain"`` (:func:`~emu3_vla.generation.decode`), ``"static"`` or ``"parallel"``
        (:class:`~emu3_vla.inference.FastDecoder`, same tokens; ``decoder_options`` go to it)."""
        chunk = vla.spec.chunk
        execute_steps = chunk if execute_steps is None else int(execute_steps)
        if not 1 <= execute_steps <= chunk:
            raise ValueError(f"execute_steps must be in [1, {chunk}] (the chunk length), got {execute_steps}")
        self.vla = vla
        self.execute_steps = execute_steps
        self.obs_keys = dict(CALVIN_OBS_KEYS if obs_keys is None else obs_keys)
        needed = [*vla.spec.views, *([STATE] if vla.spec.uses_state else [])]
        missing = [v for v in needed if v not in self.obs_keys]
        if missing:
            raise ValueError(f"no observation key for {missing}; pass obs_keys={{name: 'path.in.obs'}}")
        self.device = torch.device(device)
        vla.bundle.decoder.to(self.device).eval()
        if vla.bundle.vq is not None:
            vla.bundle.vq.to(self.device).eval()
        self.vision = vla.vision()
        self.builder = vla.builder()
        self.tokenizer = vla.action_tokenizer
        self.clip_actions = clip_actions
        layout = vla.layout
        counts = self.tokenizer.coefficients_per_token() if exact_length else None
        self.exact_length = counts is not None
        if counts is not None:
            total = int(self.tokenizer.time_horizon) * int(self.tokenizer.action_dim)
            self.constraint = ActionLengthConstraint(layout, counts, total)
            self.max_new_tokens = total + 1
        else:  # any action ids, [EOA] after at least one; the decoder repairs a wrong length
            n_ids = int(self.tokenizer.vocab_size)
            allowed = range(layout.last_text_id - n_ids + 1, layout.last_text_id + 1)
            self.constraint = TokenSetConstraint(
                allowed, layout.eoa_id, layout.pad_id, layout.vocab_size, min_new_tokens=1
            )
            self.max_new_tokens = int(self.tokenizer.max_stream_length()) + 1
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {DECODERS}")
        if decoder == "plain" and decoder_options:
            raise ValueError("decoder_options apply to decoder='static' or 'parallel' only")
        self.decoder = decoder
        self._fast = None
        if decoder != "plain":
            options = dict(decoder_options or {})
            self._fast = FastDecoder(vla.bundle.decoder, self.constraint, pad_id=layout.pad_id, mode=decoder, **options)
        self.gripper_dims = tuple(self.tokenizer.gripper_dims())
        self.stats = PolicyStats()
        self._envs: list[_EnvState] = []

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> Emu3VLAPolicy:
        device = kwargs.get("device", "cpu")
        return cls(VLAModel.load(path, device=device), **kwargs)

    # ----------------------------------------------------------------- state
    def reset(self, env_index: int | None = None) -> None:
        if env_index is None:
            self._envs = []
        elif env_index < len(self._envs):
            self._envs[env_index] = _EnvState()

    def _env(self, i: int) -> _EnvState:
        while len(self._envs) <= i:
            self._envs.append(_EnvState())
        return self._envs[i]

    # ------------------------------------------------------------------ act
    def step(self, obs: Observation, instruction: str) -> np.ndarray:
        return self.act([obs], [instruction])[0]

    def act(
        self, observations: Sequence[Observation], instructions: Sequence[str], env_ids: Sequence[int] | None = None
    ) -> np.ndarray:
        if len(observations) != len(instructions):
            raise ValueError(f"{len(observations)} observations but {len(instructions)} instructions")
        ids = resolve_env_ids(len(observations), env_ids)
        for i, text in zip(ids, instructions, strict=True):
            env = self._env(i)
            if env.instruction != text:  # a new instruction starts a new window
                self._envs[i] = _EnvState(instruction=text)
        needs = [k for k, i in enumerate(ids) if not self._envs[i].queue]
        if needs:
            self._query([ids[k] for k in needs], [observations[k] for k in needs])
        return np.stack([self._envs[i].queue.popleft() for i in ids])

    def encode_observations(self, observations: Sequence[Observation]) -> list[dict[str, np.ndarray]]:
        """Camera views of each observation -> VQ codes per view (one batch per view), plus the raw
        state vector under ``"state"`` when the model reads state."""
        codes: dict[str, np.ndarray] = {}
        for view in self.vla.spec.views:
            images = np.stack([np.asarray(get_path(o, self.obs_keys[view])) for o in observations])
            codes[view] = self.vision.encode_view(images, view).numpy()
        if self.vla.spec.uses_state:
            codes[STATE] = np.stack(
                [np.asarray(get_path(o, self.obs_keys[STATE]), dtype=np.float32).reshape(-1) for o in observations]
            )
        return [{v: codes[v][k] for v in codes} for k in range(len(observations))]

    def _query(self, env_ids: list[int], observations: Sequence[Observation]) -> None:
        codes = self.encode_observations(observations)
        frames = self.vla.spec.frames
        prompts = []
        for i, current in zip(env_ids, codes, strict=True):
            env = self._envs[i]
            history = env.history[-(frames - 1) :] if frames > 1 else []
            prompts.append(self.builder.prompt(env.instruction, history, current).tolist())
        if self._fast is None:
            out = decode(
                self.vla.bundle.decoder,
                prompts,
                self.constraint,
                pad_id=self.vla.layout.pad_id,
                max_new_tokens=self.max_new_tokens,
            )
        else:  # [BOS] instruction opens every prompt of an episode: its keys/values are reused
            prefixes = [len(self.builder.instruction_ids(self._envs[i].instruction)) for i in env_ids]
            out = self._fast.decode(prompts, max_new_tokens=self.max_new_tokens, prefix_lengths=prefixes)
        streams = [self._fast_ids(out.row(k)) for k in range(len(env_ids))]
        result = self.tokenizer.decode(streams)
        self._count(result, streams, env_ids)
        actions = result.actions[:, : self.execute_steps]
        if self.clip_actions:
            actions = np.clip(actions, -1.0, 1.0)
        if self.gripper_dims:
            actions = binarize_gripper(actions, self.gripper_dims)
        for k, i in enumerate(env_ids):
            env = self._envs[i]
            env.queue.extend(actions[k])
            env.history = ([*env.history, (codes[k], np.asarray(streams[k], dtype=np.int64))])[-max(frames - 1, 1) :]

    def _fast_ids(self, row: list[int]) -> list[int]:
        layout = self.vla.layout
        ids = np.asarray([t for t in row if t not in (layout.eoa_id, layout.pad_id)], dtype=np.int64)
        return layout.id_to_fast(ids).tolist() if ids.size else []

    def _count(self, result: Any, streams: list[list[int]], env_ids: list[int]) -> None:
        self.stats.queries += len(streams)
        self.stats.tokens += sum(len(s) for s in streams)
        self.stats.malformed += int(result.num_malformed)
        for i, bad in zip(env_ids, result.malformed, strict=True):
            self.stats.malformed_by_env[i] = self.stats.malformed_by_env.get(i, 0) + int(bad)
        for kind, flags in result.issues.items():
            self.stats.issues[kind] = self.stats.issues.get(kind, 0) + int(np.sum(flags))
