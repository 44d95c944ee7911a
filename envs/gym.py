"""Gymnasium wrapper and registration: ``gymnasium.make("envs/PlayTable-v0")``.

``import envs`` registers the id. The wrapper follows gymnasium's API (``reset(seed, options)`` ->
``(obs, info)``, ``step`` -> ``(obs, reward, terminated, truncated, info)``) around
:class:`envs.playtable.env.PlayTableEnv`, whose own API is CALVIN's.

``reset(options=...)`` accepts ``{"state": <CALVIN symbolic state>}`` or ``{"robot_obs": ...,
"scene_obs": ...}``; without options a start state is drawn from CALVIN's 192 standard ones with the
episode's seed. ``{"task": "open_drawer"}`` (alone or with the above) makes the episode a single
CALVIN subtask: the reward is 1 and the episode terminates when the oracle sees the task done, and
``info["is_success"]`` says so (LeRobot's convention). Episodes are truncated after 360 steps, a
CALVIN subtask's budget.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium
import numpy as np
from gymnasium import spaces

from envs.calvin_data import SUBTASK_STEPS
from envs.playtable.cameras import GRIPPER_CAMERA, STATIC_CAMERA
from envs.playtable.env import PlayTableEnv
from envs.tasks import TaskOracle

ENV_ID = "envs/PlayTable-v0"
_ANGLE = np.pi + 1e-3
# Generous but finite bounds: tcp xyz, tcp euler, gripper width, 7 Panda joints (limits plus a
# margin), gripper action.
ROBOT_OBS_LOW = np.array([-2, -2, -1, -_ANGLE, -_ANGLE, -_ANGLE, 0, -3.0, -1.9, -3.0, -3.2, -3.0, -0.2, -3.0, -1])
ROBOT_OBS_HIGH = np.array([2, 2, 3, _ANGLE, _ANGLE, _ANGLE, 0.1, 3.0, 1.9, 3.0, 0.1, 3.0, 3.9, 3.0, 1])
# Furniture joints (slightly past their soft limits when pushed), lights, then 3 x (xyz, euler).
SCENE_OBS_LOW = np.array([-1, -1, -1, -1, 0, 0] + [-5, -5, -1, -_ANGLE, -_ANGLE, -_ANGLE] * 3)
SCENE_OBS_HIGH = np.array([1, 1, 1, 1, 1, 1] + [5, 5, 5, _ANGLE, _ANGLE, _ANGLE] * 3)


def observation_space() -> spaces.Dict:
    """CALVIN's observation layout as a gymnasium space."""

    def image(spec) -> spaces.Box:
        return spaces.Box(0, 255, (spec.height, spec.width, 3), dtype=np.uint8)

    return spaces.Dict(
        {
            "rgb_obs": spaces.Dict({"rgb_static": image(STATIC_CAMERA), "rgb_gripper": image(GRIPPER_CAMERA)}),
            "robot_obs": spaces.Box(ROBOT_OBS_LOW, ROBOT_OBS_HIGH, dtype=np.float64),
            "scene_obs": spaces.Box(SCENE_OBS_LOW, SCENE_OBS_HIGH, dtype=np.float64),
        }
    )


def action_space(action_mode: str) -> spaces.Box:
    """Relative: 6 deltas and the gripper in [-1, 1]. Absolute: tcp xyz (m), euler (rad), gripper."""
    if action_mode == "relative":
        return spaces.Box(-1.0, 1.0, (7,), dtype=np.float64)
    low = np.array([-1.0, -1.0, 0.0, -np.pi, -np.pi, -np.pi, -1.0])
    high = np.array([1.0, 1.0, 1.5, np.pi, np.pi, np.pi, 1.0])
    return spaces.Box(low, high, dtype=np.float64)


class PlayTableGymEnv(gymnasium.Env):
    """PlayTable with gymnasium's API; keyword arguments go to :class:`PlayTableEnv`.

    Unlike the raw environment, images are rendered at every step by default
    (``lazy_images=False``): gymnasium code keeps observations around (frame stacks, buffers,
    ``check_env``) and expects them to stay readable. Pass ``lazy_images=True`` to render only what
    is read before the next step.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None, **env_kwargs: Any) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"PlayTable supports render_mode None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        env_kwargs.setdefault("lazy_images", False)
        self.env = PlayTableEnv(**env_kwargs)
        self.observation_space = observation_space()
        self.action_space = action_space(self.env.action_mode)
        self.oracle = TaskOracle()
        self.task: str | None = None
        self._start_info: dict[str, Any] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = dict(options or {})
        task = options.pop("task", None)
        if task is not None and task not in self.oracle.tasks:
            raise ValueError(f"unknown CALVIN task {task!r}")
        unknown = sorted(set(options) - {"state", "robot_obs", "scene_obs"})
        if unknown:
            raise ValueError(f"unknown reset options {unknown}; use 'state', 'robot_obs', 'scene_obs', 'task'")
        if options:
            obs = self.env.reset(
                options.get("state"), robot_obs=options.get("robot_obs"), scene_obs=options.get("scene_obs")
            )
        else:
            obs = self.env.reset(seed=int(self.np_random.integers(2**31)))
        self.task = task
        info = self.env.get_info()
        self._start_info = info
        return obs, self._with_success(info)

    def step(self, action):
        obs, _, _, info = self.env.step(action)
        info = self._with_success(info)
        success = bool(info.get("is_success", False))
        return obs, float(success), success, False, info

    def _with_success(self, info: dict[str, Any]) -> dict[str, Any]:
        if self.task is not None and self._start_info is not None:
            info["is_success"] = self.oracle.success(self.task, self._start_info, info)
            info["task"] = self.task
        return info

    def render(self):
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without render_mode='rgb_array'; returning the static camera anyway")
        return self.env.render()

    def close(self) -> None:
        self.env.close()


def register() -> None:
    """Register ``envs/PlayTable-v0`` with gymnasium (idempotent)."""
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="envs.gym:PlayTableGymEnv", max_episode_steps=SUBTASK_STEPS)
