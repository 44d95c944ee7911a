"""Turning waypoints into CALVIN relative actions: smooth straight-line moves of the target pose.

A plan is a sequence of segments: :class:`Move` (go to a position and gripper yaw), :class:`Grip`
(switch the gripper and wait while the fingers move) and :class:`Hold` (stay still). The
:class:`MotionController` turns the current segment into one 7-d action per step:

* the environment adds each relative action to its *target* pose (``info["robot_info"]
  ["target_pos"/"target_orn"]``), and inverse kinematics tracks the target; steering the target
  (not the measured tcp) in straight lines keeps the motion exact and free of feedback jitter;
* speed follows a trapezoid: it ramps up by ``ACCEL`` per step, cruises at the segment's speed and
  ramps down as ``sqrt(2 * ACCEL * distance)`` so that the target lands on the waypoint without
  overshoot or a long tail of tiny steps - a learned policy can imitate such actions;
* a move is done once the target is on the waypoint and the measured tcp is within the segment's
  tolerance (the arm lags the target by a few millimetres), or after a bounded wait;
* the gripper command stays constant except in a :class:`Grip` segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from policies.experts.geometry import wrap
from policies.experts.scene import SceneView

POSITION_SCALE = 0.02  # metres per unit of relative action (CALVIN)
ORIENTATION_SCALE = 0.05  # radians per unit of relative action (CALVIN)
ACCEL = 0.0015  # m/step^2: reaches 1 cm/step in about 7 steps
YAW_ACCEL = 0.006  # rad/step^2
DOWN_ROLL, DOWN_PITCH = math.pi, 0.0
TILT_RATE = 0.2  # action units: roll/pitch corrections towards pointing down, at most 0.01 rad per step
SETTLE_STEPS = 12  # longest wait for the tcp to catch up with a reached target
MAX_MOVE_STEPS = 400  # a move that cannot finish (blocked arm) gives up after this many steps
REACHED = 1e-4  # metres: the target is on the waypoint


@dataclass
class Move:
    """Move the target in a straight line to ``pos`` while turning to ``yaw`` (unwrapped, None: keep)."""

    pos: np.ndarray
    yaw: float | None = None
    speed: float = 0.5  # cruise speed in action units (0.5 = 1 cm per step = 0.3 m/s)
    tol: float = 0.01  # metres between tcp and waypoint that count as arrived
    yaw_tol: float = 0.08
    yaw_speed: float = 0.6  # cruise turn rate in action units (0.6 = 0.03 rad per step)
    free: bool = False  # a move through free space (no contact): demonstrations may perturb it
    label: str = ""

    def __post_init__(self) -> None:
        self.pos = np.asarray(self.pos, dtype=float)


@dataclass
class Grip:
    """Command the gripper (+1 open, -1 close) and hold still for ``steps`` steps while it moves."""

    value: float
    steps: int = 6
    label: str = ""


@dataclass
class Hold:
    """Hold still for ``steps`` steps."""

    steps: int
    label: str = ""


Segment = Move | Grip | Hold


@dataclass
class _Progress:
    steps: int = 0
    settle: int = 0
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    yaw_rate: float = 0.0


class MotionController:
    """Executes segments for one environment; keeps the velocity between steps for smooth ramps."""

    def __init__(self, gripper: float = 1.0) -> None:
        self.gripper = 1.0 if gripper >= 0 else -1.0
        self._segment: Segment | None = None
        self._progress = _Progress()
        self._velocity = np.zeros(3)
        self._yaw_rate = 0.0

    def start(self, segment: Segment) -> None:
        self._segment = segment
        self._progress = _Progress(velocity=self._velocity.copy(), yaw_rate=self._yaw_rate)
        if isinstance(segment, Grip):
            self.gripper = 1.0 if segment.value >= 0 else -1.0

    def hold_action(self) -> np.ndarray:
        self._velocity = np.zeros(3)
        self._yaw_rate = 0.0
        return np.array([0, 0, 0, 0, 0, 0, self.gripper], dtype=float)

    def step(self, view: SceneView) -> np.ndarray | None:
        """The next action of the current segment, or None when the segment is complete."""
        segment = self._segment
        if segment is None:
            return None
        progress = self._progress
        if isinstance(segment, (Grip, Hold)):
            if progress.steps >= segment.steps:
                return None
            progress.steps += 1
            return self.hold_action()
        return self._move(segment, view, progress)

    def _move(self, move: Move, view: SceneView, progress: _Progress) -> np.ndarray | None:
        delta = move.pos - view.target
        distance = float(np.linalg.norm(delta))
        yaw_goal = view.target_yaw if move.yaw is None else move.yaw
        yaw_delta = yaw_goal - view.target_yaw
        if distance < REACHED and abs(yaw_delta) < 1e-3:
            tcp_error = float(np.linalg.norm(view.tcp - move.pos))
            yaw_error = abs(wrap(yaw_goal - view.tcp_yaw_unwrapped()))
            if (tcp_error < move.tol and yaw_error < move.yaw_tol) or progress.settle >= SETTLE_STEPS:
                self._velocity = np.zeros(3)
                self._yaw_rate = 0.0
                return None
            progress.settle += 1
        if progress.steps >= MAX_MOVE_STEPS:
            return None
        progress.steps += 1
        # Position: trapezoidal speed along the straight line to the waypoint.
        cruise = move.speed * POSITION_SCALE
        speed = min(cruise, math.sqrt(2 * ACCEL * distance), distance, float(np.linalg.norm(self._velocity)) + ACCEL)
        velocity = delta / distance * speed if distance > 0 else np.zeros(3)
        # Yaw: the same profile, in radians.
        # A turn that would outlast the translation speeds up (up to a full unit) to end with it.
        steps_left = max(distance / cruise, 1.0) if cruise > 0 else 1.0
        yaw_cruise = min(max(move.yaw_speed * ORIENTATION_SCALE, abs(yaw_delta) / steps_left), ORIENTATION_SCALE)
        rate = min(
            yaw_cruise, math.sqrt(2 * YAW_ACCEL * abs(yaw_delta)), abs(yaw_delta), abs(self._yaw_rate) + YAW_ACCEL
        )
        yaw_rate = math.copysign(rate, yaw_delta)
        # Roll and pitch: keep the gripper pointing straight down.
        tilt_step = TILT_RATE * ORIENTATION_SCALE
        roll = np.clip(wrap(DOWN_ROLL - view.target_orn[0]), -tilt_step, tilt_step)
        pitch = np.clip(wrap(DOWN_PITCH - view.target_orn[1]), -tilt_step, tilt_step)
        self._velocity, self._yaw_rate = velocity, yaw_rate
        action = np.empty(7)
        action[:3] = velocity / POSITION_SCALE
        action[3] = roll / ORIENTATION_SCALE
        action[4] = pitch / ORIENTATION_SCALE
        action[5] = yaw_rate / ORIENTATION_SCALE
        action[6] = self.gripper
        return np.clip(action, -1.0, 1.0)
