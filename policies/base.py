"""The policy interface every controller in the package implements.

A policy maps observations (CALVIN's dict format: ``rgb_obs.rgb_static``, ``rgb_obs.rgb_gripper``,
``robot_obs``, ``scene_obs``) and a language instruction to 7-d relative actions. ``act`` is the
batched form used with several environments at once: row ``k`` belongs to environment
``env_ids[k]`` (default ``k``), and ``reset(i)`` forgets environment ``i``'s history (a new subtask
or episode). ``env_ids`` lets an evaluator query only the environments still running.

Privileged policies (scripted experts) set the class attribute ``needs_info = True``; their
observations then also carry ``"info"`` (the simulator's ``get_info()``), ``"landmarks"``
(``get_landmarks()``) and ``"task"`` (the CALVIN name of the current subtask).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

Observation = Mapping[str, Any]


@runtime_checkable
class Policy(Protocol):
    def reset(self, env_index: int | None = None) -> None:
        """Forget the history of one environment (or of all when ``env_index`` is None)."""

    def step(self, obs: Observation, instruction: str) -> np.ndarray:
        """One action ``(7,)`` for a single environment (index 0)."""

    def act(
        self, observations: Sequence[Observation], instructions: Sequence[str], env_ids: Sequence[int] | None = None
    ) -> np.ndarray:
        """Actions ``(N, 7)`` for the N environments ``env_ids`` (default ``0..N-1``)."""


def privileged_observation(obs: Observation, env: Any, task: str, info: Any = None) -> dict[str, Any]:
    """``obs`` with the keys a ``needs_info`` policy reads: ``info`` (``env.get_info()`` unless the
    caller already has it from ``env.step``), ``landmarks`` and ``task``. One place that builds them,
    so every evaluator hands an expert the same observation."""
    return {
        **obs,
        "info": env.get_info() if info is None else info,
        "landmarks": env.get_landmarks(),
        "task": task,
    }


def resolve_env_ids(n: int, env_ids: Sequence[int] | None) -> list[int]:
    if env_ids is None:
        return list(range(n))
    ids = [int(i) for i in env_ids]
    if len(ids) != n or len(set(ids)) != n:
        raise ValueError(f"env_ids must name {n} distinct environments, got {env_ids}")
    return ids


def get_path(obs: Observation, path: str) -> Any:
    """``obs["rgb_obs"]["rgb_static"]`` for ``path="rgb_obs.rgb_static"`` (a flat key is tried first)."""
    if path in obs:
        return obs[path]
    value: Any = obs
    for part in path.split("."):
        try:
            value = value[part]
        except (KeyError, TypeError):
            raise KeyError(f"observation has no {path!r} (keys: {sorted(obs)})") from None
    return value


#: Where CALVIN's observation dict (and PlayTable's) holds what our datasets store under their keys.
CALVIN_OBSERVATION_PATHS: dict[str, str] = {
    "observation.images.static": "rgb_obs.rgb_static",
    "observation.images.gripper": "rgb_obs.rgb_gripper",
    "observation.state": "robot_obs",
}
#: The observation key of the robot state in a model's input map (the same name as in a frame).
STATE_INPUT = "state"


def observation_keys(view_keys: Mapping[str, str], state_key: str | None = None) -> dict[str, str]:
    """A model's inputs (view -> dataset key, and its state key) -> where to find them in an
    observation: CALVIN's path for the keys of CALVIN-format data, else the dataset key itself (an
    observation keyed like the dataset, as LeRobot's environments and robots produce them)."""
    # CALVIN's paths only for a model trained on CALVIN-format data (our collector's view keys): a
    # LeRobot dataset's "observation.state" is the dataset's own state, not CALVIN's robot_obs.
    calvin = set(view_keys.values()) <= {"observation.images.static", "observation.images.gripper"}
    paths = CALVIN_OBSERVATION_PATHS if calvin else {}
    keys = {view: paths.get(key, key) for view, key in view_keys.items()}
    if state_key:
        keys[STATE_INPUT] = paths.get(state_key, state_key)
    return keys


class RandomPolicy:
    """Uniform random relative actions with a random ±1 gripper: the floor of every benchmark.

    Each environment draws from its own generator, reseeded per chain by evaluators
    (:meth:`reseed`), so a chain's actions do not depend on which other chains ran beside it.
    """

    def __init__(self, seed: int = 0, action_dim: int = 7) -> None:
        self.seed = seed
        self.action_dim = action_dim
        self._rngs: dict[int, np.random.Generator] = {}

    def reseed(self, env_index: int, seed: int) -> None:
        self._rngs[env_index] = np.random.default_rng(seed)

    def reset(self, env_index: int | None = None) -> None:
        return None

    def step(self, obs: Observation, instruction: str) -> np.ndarray:
        return self.act([obs], [instruction])[0]

    def act(
        self, observations: Sequence[Observation], instructions: Sequence[str], env_ids: Sequence[int] | None = None
    ) -> np.ndarray:
        out = np.empty((len(observations), self.action_dim))
        for row, i in enumerate(resolve_env_ids(len(observations), env_ids)):
            rng = self._rngs.setdefault(i, np.random.default_rng([self.seed, i]))
            out[row] = rng.uniform(-1, 1, self.action_dim)
            out[row, -1] = 1.0 if rng.random() < 0.5 else -1.0
        return out
