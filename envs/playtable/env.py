"""PlayTableEnv: a CALVIN-like tabletop environment that installs from PyPI.

The interface is CALVIN's (``calvin_env``'s ``PlayTableSimEnv``), so policies, datasets and the
evaluation protocol move between the two unchanged:

* ``reset(robot_obs=..., scene_obs=...)`` sets an exact state, as in CALVIN; ``reset(state)`` starts
  from a CALVIN symbolic state (the dicts in ``eval_sequences.json``) the way CALVIN's evaluator does,
  seeded per state unless a seed is given;
* ``step(action)`` takes CALVIN's relative 7-d action (or an absolute tcp pose), runs 8 physics
  substeps at 240 Hz (30 Hz control) and returns ``(obs, 0, False, info)`` like CALVIN;
* observations are ``{"rgb_obs": {"rgb_static": 200x200x3, "rgb_gripper": 84x84x3} (uint8),
  "robot_obs": (15,), "scene_obs": (24,)}`` in CALVIN's layout and dtypes; ``get_info()`` is CALVIN's
  info dict with extras for scripted experts (see :mod:`envs.playtable.info`).

Unlike ``calvin_env`` it needs no repository checkout, renders only what is read (see
:mod:`envs.playtable.observation`), and any number of environments can live in one process: each
owns its pybullet client and every call names it.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from envs.calvin_data import load_start_states
from envs.calvin_states import DEFAULT_SCENE_OBS, NEUTRAL_ROBOT_OBS, canonical_state, scene_obs_for_state
from envs.playtable.bullet import p
from envs.playtable.cameras import (
    GRIPPER_CAMERA,
    STATIC_CAMERA,
    CameraSpec,
    Renderer,
    gripper_view_matrix,
    static_view_matrix,
)
from envs.playtable.info import build_info
from envs.playtable.layout import SceneLayout, get_layout
from envs.playtable.observation import LazyImages, StaleObservationError
from envs.playtable.robot import Panda
from envs.playtable.scene import PlayTableScene

PHYSICS_HZ = 240
CONTROL_HZ = 30
SUBSTEPS = PHYSICS_HZ // CONTROL_HZ
CAMERAS = ("rgb_static", "rgb_gripper")
ACTION_MODES = ("relative", "absolute")


class PlayTableEnv:
    """One PlayTable scene in its own pybullet client (``p.DIRECT``).

    Args:
        variant: scene variant ``"A"``..``"D"`` (``D`` is CALVIN's evaluation scene).
        renderer: ``"tiny"`` (TinyRenderer, default) or ``"egl"`` (hardware OpenGL through pybullet's
            ``eglRenderer`` plugin; falls back to TinyRenderer with a warning when it fails to load).
        action_mode: how a 7-d array passed to :meth:`step` is read: ``"relative"`` (CALVIN's
            default: deltas in [-1, 1] scaled by 0.02 m / 0.05 rad, gripper -1 close / +1 open) or
            ``"absolute"`` (tcp xyz, tcp euler, gripper). A tuple ``(pos, euler_or_quat, gripper)`` is
            always absolute, as in CALVIN.
        lazy_images: render camera images when they are read (default) instead of at every step.
        use_target_pose: CALVIN's relative-action semantics (deltas add up on a target pose); see
            :mod:`envs.playtable.robot`.
        detailed_visuals: draw the Panda with its detailed meshes (slower TinyRenderer frames).
        camera_sizes: square image sizes per camera, ``{"static": 128, "gripper": 64}`` (either key may
            be left out); default CALVIN's 200 and 84. Rendering smaller frames directly is cheaper
            than rendering CALVIN's and resizing, which matters when collecting data on a CPU.
    """

    def __init__(
        self,
        variant: str = "D",
        renderer: str = "tiny",
        action_mode: str = "relative",
        lazy_images: bool = True,
        use_target_pose: bool = True,
        detailed_visuals: bool = False,
        camera_sizes: Mapping[str, int] | None = None,
    ) -> None:
        if action_mode not in ACTION_MODES:
            raise ValueError(f"unknown action_mode {action_mode!r}; choose one of {ACTION_MODES}")
        self.cameras = _camera_specs(camera_sizes)
        self.layout: SceneLayout = get_layout(variant)
        self.action_mode = action_mode
        self.lazy_images = lazy_images
        self.client = p.connect(p.DIRECT)
        if self.client < 0:  # pragma: no cover - pybullet refuses only when out of clients
            raise RuntimeError("pybullet could not open a DIRECT physics client")
        try:
            p.resetSimulation(physicsClientId=self.client)
            p.setPhysicsEngineParameter(deterministicOverlappingPairs=1, physicsClientId=self.client)
            p.setTimeStep(1.0 / PHYSICS_HZ, physicsClientId=self.client)
            p.setGravity(0, 0, -9.81, physicsClientId=self.client)
            # The EGL plugin draws only bodies loaded after it, so the renderer comes first.
            self.renderer = Renderer(self.client, renderer)
            self.robot = Panda(self.client, detailed_visuals=detailed_visuals, use_target_pose=use_target_pose)
            self.scene = PlayTableScene(self.client, self.layout)
        except Exception:
            if hasattr(self, "robot"):
                self.robot.close()
            p.disconnect(physicsClientId=self.client)
            self.client = -1
            raise
        self._epoch = 0
        self._frames: dict[str, np.ndarray] = {}
        self.steps_since_reset = 0
        self.reset()

    @property
    def variant(self) -> str:
        return self.layout.name

    # --- reset ---------------------------------------------------------------------------------

    def reset(
        self,
        state: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        robot_obs: np.ndarray | None = None,
        scene_obs: np.ndarray | None = None,
    ) -> dict[str, Any]:
        """Reset and return the first observation.

        * ``reset(robot_obs=..., scene_obs=...)``: exactly that state (CALVIN's arrays); a missing
          ``robot_obs`` means CALVIN's neutral pose.
        * ``reset(state)``: a CALVIN symbolic state (``{"led", "lightbulb", "slider", "drawer",
          "red_block", "blue_block", "pink_block", "grasped"}``) turned into a scene as CALVIN's
          evaluator does; the table slots and block yaws are drawn from ``seed``, which defaults to
          CALVIN's per-state FNV-1 seed, so the start scene is a function of the state.
        * ``reset(seed=n)``: a start state drawn from the 192 standard ones with ``n``, then as above.
        * ``reset()``: CALVIN's default evaluation scene.
        """
        if state is not None and scene_obs is not None:
            raise ValueError("pass either a symbolic state or scene_obs to reset(), not both")
        if state is not None:
            scene_obs = scene_obs_for_state(canonical_state(state), seed=seed, slots=self.layout.start_slots())
        elif scene_obs is None and seed is not None:
            states = load_start_states()
            drawn = states[np.random.RandomState(seed).randint(len(states))]
            scene_obs = scene_obs_for_state(drawn, seed=seed, slots=self.layout.start_slots())
        elif scene_obs is None:
            scene_obs = DEFAULT_SCENE_OBS
        scene_obs = _checked_vector(scene_obs, 24, "scene_obs")
        robot_obs = _checked_vector(NEUTRAL_ROBOT_OBS if robot_obs is None else robot_obs, 15, "robot_obs")

        self.scene.reset_from_scene_obs(scene_obs)
        self.robot.reset(arm_joints=robot_obs[7:14], gripper_width=robot_obs[6], gripper_action=int(robot_obs[14]))
        p.stepSimulation(physicsClientId=self.client)
        self._new_epoch()
        self.steps_since_reset = 0
        return self.get_obs()

    # --- step ----------------------------------------------------------------------------------

    def step(self, action: Any) -> tuple[dict[str, Any], float, bool, dict[str, Any]]:
        """Apply one action for 1/30 s (8 physics substeps); returns CALVIN's ``(obs, 0, False, info)``."""
        self.apply_action(action)
        for _ in range(SUBSTEPS):
            p.stepSimulation(physicsClientId=self.client)
            # Every substep, not once per step as CALVIN does: a press shorter than 1/30 s still counts.
            self.scene.update_lights()
        self._new_epoch()
        self.steps_since_reset += 1
        return self.get_obs(), 0.0, False, self.get_info()

    def apply_action(self, action: Any) -> None:
        """Send an action to the robot's motors without stepping the physics."""
        if isinstance(action, tuple) and len(action) == 3:
            pos, orn, gripper = action
            pos = _checked_vector(pos, 3, "absolute action position")
            orn = np.asarray(orn, dtype=float)
            if orn.shape == (4,):
                orn = np.array(p.getEulerFromQuaternion(orn))
            orn = _checked_vector(orn, 3, "absolute action orientation (euler or quaternion)")
            self.robot.apply_absolute(pos, orn, _gripper_command(np.ravel(gripper)[0]))
            return
        vector = _checked_vector(action, 7, f"{self.action_mode} action")
        if self.action_mode == "relative":
            clipped = np.clip(vector, -1.0, 1.0)
            clipped[6] = _gripper_command(vector[6])
            self.robot.apply_relative(clipped)
        else:
            self.robot.apply_absolute(vector[:3], vector[3:6], _gripper_command(vector[6]))

    # --- observations --------------------------------------------------------------------------

    def get_obs(self) -> dict[str, Any]:
        """CALVIN's observation dict; the images render when read (see :mod:`envs.playtable.observation`)."""
        images = LazyImages(CAMERAS, self._render_for, self._epoch)
        if not self.lazy_images:
            images.materialize()
        return {
            "rgb_obs": images,
            "robot_obs": self.robot.observe().robot_obs(),
            "scene_obs": self.scene.scene_obs(),
        }

    def set_camera_sizes(self, camera_sizes: Mapping[str, int] | None) -> None:
        """Render at these square sizes from now on (``None``: CALVIN's 200 / 84); take a new observation
        with :meth:`get_obs` (images of one taken before are stale).

        Lets one episode be watched at one resolution and recorded at another: a policy sees what
        evaluation renders, and the expert that takes over is recorded at the dataset's sizes."""
        self.cameras = _camera_specs(camera_sizes)
        self._new_epoch()

    def get_info(self) -> dict[str, Any]:
        """CALVIN's privileged info dict (robot, blocks, contacts, joints, lights); see :mod:`envs.playtable.info`."""
        return build_info(self.robot, self.scene)

    def get_landmarks(self) -> dict[str, np.ndarray]:
        """World positions of the slider and drawer handles, button, switch knob and drawer floor."""
        return self.scene.landmarks()

    def render(self, mode: str = "rgb_array") -> np.ndarray:
        """The static camera's current frame (shared with this step's observation, rendered once)."""
        if mode != "rgb_array":
            raise ValueError(f"PlayTableEnv renders only mode 'rgb_array' (no window), got {mode!r}")
        return self._render_for("rgb_static", self._epoch)

    def render_cameras(self) -> dict[str, np.ndarray]:
        """Both cameras' current frames."""
        return {name: self._render_for(name, self._epoch) for name in CAMERAS}

    def _render_for(self, name: str, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            raise StaleObservationError(
                f"{name} of an earlier step was never rendered and the scene has moved on; read images "
                "before the next step()/reset(), or call obs['rgb_obs'].materialize() to keep them"
            )
        frame = self._frames.get(name)
        if frame is None:
            if name == "rgb_static":
                frame = self.renderer.render(self.cameras["rgb_static"], static_view_matrix())
            elif name == "rgb_gripper":
                frame = self.renderer.render(
                    self.cameras["rgb_gripper"], gripper_view_matrix(*self.robot.camera_pose())
                )
            else:
                raise KeyError(f"unknown camera {name!r}; PlayTable has {CAMERAS}")
            frame.setflags(write=False)
            self._frames[name] = frame
        return frame

    def _new_epoch(self) -> None:
        self._epoch += 1
        self._frames = {}

    # --- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        if getattr(self, "client", -1) >= 0:
            self.renderer.close()
            self.robot.close()
            with contextlib.suppress(p.error):  # already disconnected
                p.disconnect(physicsClientId=self.client)
            self.client = -1

    def __enter__(self) -> PlayTableEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown may have torn pybullet down
            self.close()


def _camera_specs(sizes: Mapping[str, int] | None) -> dict[str, CameraSpec]:
    """Camera specs with the requested square sizes (CALVIN's 200 / 84 where none is given)."""
    sizes = dict(sizes or {})
    unknown = sorted(set(sizes) - {"static", "gripper"})
    if unknown:
        raise ValueError(f"camera_sizes has unknown cameras {unknown}; PlayTable's are 'static' and 'gripper'")
    specs = {"rgb_static": STATIC_CAMERA, "rgb_gripper": GRIPPER_CAMERA}
    for short, size in sizes.items():
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not 8 <= size <= 1024:
            raise ValueError(f"camera_sizes[{short!r}] must be an integer between 8 and 1024 pixels, got {size!r}")
        name = f"rgb_{short}"
        specs[name] = dataclasses.replace(specs[name], width=int(size), height=int(size))
    return specs


def _checked_vector(value: Any, size: int, what: str) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.shape != (size,):
        raise ValueError(f"{what} must have shape ({size},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinite values: {array}")
    return array


def _gripper_command(value: float) -> int:
    """CALVIN's gripper is binary: +1 opens, -1 closes; any other number is read by its sign (0 opens)."""
    return 1 if float(value) >= 0 else -1
