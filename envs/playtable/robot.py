"""The Franka Panda that ships in ``pybullet_data``, controlled the way CALVIN controls its Panda.

CALVIN's relative action moves a *target* tcp pose (``use_target_pose``): every step adds the
scaled delta (x 0.02 m, x 0.05 rad) to the previous target, inverse kinematics turns the target
into joint targets and position control tracks them (200 N, 2 rad/s). The target starts at the
tcp pose after a reset.

Inverse kinematics runs in two passes on a kinematic copy of the arm in a private pybullet client
(so it never disturbs the simulated arm): pybullet's null-space IK pulls the posture towards the
neutral rest pose, but leaves millimetres to centimetres of error near the edge of the workspace;
a second, plain IK pass started from that posture removes the error while moving the joints as
little as possible. Adding to the target instead of to the measured pose keeps a zero action
still and stops small tracking errors from accumulating; ``use_target_pose=False`` gives the other
variant (target = measured tcp pose + delta).

Two changes to the stock URDF, both written into a temporary copy at load time:

* the tcp is 0.14 m along the hand axis (CALVIN's definition: the stock ``panda_grasptarget`` is at
  0.105 m), so CALVIN's neutral joints give CALVIN's neutral tcp pose, and the fingers are
  stretched 1.8x along their length (like CALVIN's longer fingers) so that their pads sit at that
  tcp;
* by default the light convex collision meshes are also used for drawing (``detailed_visuals=False``),
  which makes TinyRenderer frames about twice as fast; the arm looks faceted but keeps its shape.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from envs.playtable.bullet import p, pybullet_data

ARM_JOINTS = (0, 1, 2, 3, 4, 5, 6)
FINGER_JOINTS = (9, 10)
HAND_LINK = 8
TCP_LINK = 11
TCP_OFFSET = 0.14
FINGER_STRETCH = 1.8
FINGER_MAX = 0.04

BASE_POSITION = (-0.34, -0.46, 0.24)
NEUTRAL_JOINTS = (-1.21779206, 1.03987646, 2.11978261, -2.34205014, -0.87015947, 1.64119353, 0.55344866)

MAX_JOINT_FORCE = 200.0
MAX_JOINT_VELOCITY = 2.0
GRIPPER_FORCE = 200.0
MAX_REL_POS = 0.02
MAX_REL_ORN = 0.05
# The target position stays inside this box (metres, world frame): a policy that keeps pushing one
# way cannot wind the target up metres away from the desk (CALVIN lets it; nothing reachable changes).
TARGET_LOW = (-0.7, -0.75, 0.28)
TARGET_HIGH = (0.7, 0.35, 1.0)

# Real Panda limits for the 7 arm joints, then the two fingers (IK wants one entry per degree of freedom).
LOWER_LIMITS = (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973, 0.0, 0.0)
UPPER_LIMITS = (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973, FINGER_MAX, FINGER_MAX)
JOINT_RANGES = tuple(u - lo for lo, u in zip(LOWER_LIMITS, UPPER_LIMITS, strict=True))
REST_POSES = (*NEUTRAL_JOINTS, FINGER_MAX, FINGER_MAX)

# Gripper camera, as in CALVIN's panda.urdf: a frame on the hand, 0.1 m along -x, rpy (1.3, 0, -1.57),
# looking along its +y with -z up.
GRIPPER_CAM_OFFSET = (-0.1, 0.0, 0.0)
GRIPPER_CAM_RPY = (1.3, 0.0, -1.57)

LINK_COLORS = {
    **{link: (0.92, 0.92, 0.92, 1.0) for link in (-1, 0, 1, 2, 3, 4, 5)},
    6: (0.25, 0.25, 0.27, 1.0),
    HAND_LINK: (0.9, 0.9, 0.9, 1.0),
    9: (0.32, 0.32, 0.34, 1.0),
    10: (0.32, 0.32, 0.34, 1.0),
}


def panda_urdf_text(detailed_visuals: bool = False) -> str:
    """The stock ``pybullet_data`` Panda URDF with PlayTable's tcp, fingers and mesh choice."""
    root = os.path.join(pybullet_data.getDataPath(), "franka_panda")
    with open(os.path.join(root, "panda.urdf"), encoding="utf-8") as handle:
        text = handle.read()
    if not detailed_visuals:
        text = text.replace("package://meshes/visual/", "package://meshes/collision/")
    text = text.replace("package://meshes/", root.replace(os.sep, "/") + "/meshes/")
    text, n_fingers = re.subn(r'(<mesh filename="[^"]*/finger\.obj")\s*/>', rf'\1 scale="1 1 {FINGER_STRETCH}"/>', text)
    text, n_tcp = re.subn(r'xyz="0 0 0\.105"', f'xyz="0 0 {TCP_OFFSET}"', text)
    if n_fingers != 4 or n_tcp != 1:
        raise RuntimeError(
            "pybullet_data's franka_panda/panda.urdf is not the version PlayTable was written for "
            f"(found {n_fingers} finger meshes and {n_tcp} grasp-target joints, expected 4 and 1); "
            "install pybullet 3.2.x"
        )
    return text


@dataclass
class RobotState:
    """What :meth:`Panda.observe` reads in one go (CALVIN's ``robot_obs`` plus what experts need)."""

    tcp_pos: np.ndarray
    tcp_quat: np.ndarray
    tcp_euler: np.ndarray
    gripper_width: float
    arm_joints: np.ndarray
    gripper_action: int

    def robot_obs(self) -> np.ndarray:
        """CALVIN's 15-d ``robot_obs``."""
        return np.concatenate(
            [self.tcp_pos, self.tcp_euler, [self.gripper_width], self.arm_joints, [float(self.gripper_action)]]
        )


def load_panda(client: int, detailed_visuals: bool = False) -> int:
    """Load PlayTable's Panda at CALVIN's base pose; returns its body id."""
    with tempfile.TemporaryDirectory(prefix="playtable_panda_") as tmp:
        path = os.path.join(tmp, "panda.urdf")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(panda_urdf_text(detailed_visuals))
        return p.loadURDF(
            path,
            BASE_POSITION,
            (0.0, 0.0, 0.0, 1.0),
            useFixedBase=True,
            flags=p.URDF_USE_INERTIA_FROM_FILE,
            physicsClientId=client,
        )


class InverseKinematics:
    """Two-pass IK (null space towards the rest pose, then exact) on a private kinematic copy of the arm."""

    def __init__(self) -> None:
        self.client = p.connect(p.DIRECT)
        self.uid = load_panda(self.client)

    def solve(self, seed: Sequence[float], pos: Sequence[float], quat: Sequence[float]) -> list[float]:
        """Joint targets for the 7 arm joints that put the tcp at ``pos``/``quat``, starting from ``seed``."""
        self._set(seed)
        nullspace = p.calculateInverseKinematics(
            self.uid,
            TCP_LINK,
            pos,
            quat,
            lowerLimits=LOWER_LIMITS,
            upperLimits=UPPER_LIMITS,
            jointRanges=JOINT_RANGES,
            restPoses=REST_POSES,
            maxNumIterations=20,
            residualThreshold=1e-4,
            physicsClientId=self.client,
        )
        self._set(nullspace[:7])
        exact = p.calculateInverseKinematics(
            self.uid,
            TCP_LINK,
            pos,
            quat,
            jointDamping=[1e-3] * 9,
            maxNumIterations=20,
            residualThreshold=1e-5,
            physicsClientId=self.client,
        )
        return list(exact[:7])

    def _set(self, joints: Sequence[float]) -> None:
        for joint, value in zip(ARM_JOINTS, joints, strict=True):
            p.resetJointState(self.uid, joint, value, physicsClientId=self.client)

    def close(self) -> None:
        if self.client >= 0:
            p.disconnect(physicsClientId=self.client)
            self.client = -1


class Panda:
    """Loads the Panda into one pybullet client and turns CALVIN actions into motor commands."""

    def __init__(self, client: int, detailed_visuals: bool = False, use_target_pose: bool = True) -> None:
        self.client = client
        self.use_target_pose = use_target_pose
        self.uid = load_panda(client, detailed_visuals)
        self.ik = InverseKinematics()
        for link, rgba in LINK_COLORS.items():
            p.changeVisualShape(self.uid, link, rgbaColor=rgba, physicsClientId=client)
        for finger in FINGER_JOINTS:
            p.changeDynamics(
                self.uid,
                finger,
                lateralFriction=1.0,
                spinningFriction=0.001,
                frictionAnchor=True,
                physicsClientId=client,
            )
        gear = p.createConstraint(
            self.uid,
            FINGER_JOINTS[0],
            self.uid,
            FINGER_JOINTS[1],
            jointType=p.JOINT_GEAR,
            jointAxis=(1, 0, 0),
            parentFramePosition=(0, 0, 0),
            childFramePosition=(0, 0, 0),
            physicsClientId=client,
        )
        p.changeConstraint(gear, gearRatio=-1, erp=0.1, maxForce=50, physicsClientId=client)
        self.gripper_action = 1
        self.target_pos = np.zeros(3)
        self.target_orn = np.zeros(3)
        self._add_pedestal()
        self.reset()

    def _add_pedestal(self) -> None:
        """CALVIN's white cylinder under the robot base: drawn only, no collision."""
        height = BASE_POSITION[2]
        shape = p.createVisualShape(
            p.GEOM_CYLINDER, radius=0.13, length=height, rgbaColor=(0.95, 0.95, 0.95, 1.0), physicsClientId=self.client
        )
        p.createMultiBody(
            baseMass=0,
            baseVisualShapeIndex=shape,
            basePosition=(BASE_POSITION[0] - 0.05, BASE_POSITION[1], height / 2),
            physicsClientId=self.client,
        )

    # --- state -------------------------------------------------------------------------------

    def reset(
        self,
        arm_joints: Sequence[float] = NEUTRAL_JOINTS,
        gripper_width: float = 2 * FINGER_MAX,
        gripper_action: int = 1,
    ) -> None:
        """Teleport the arm, hold it there, and make the current tcp pose the target."""
        finger = float(np.clip(gripper_width / 2, 0.0, FINGER_MAX))
        for joint, value in zip(ARM_JOINTS, arm_joints, strict=True):
            p.resetJointState(self.uid, joint, float(value), physicsClientId=self.client)
            p.setJointMotorControl2(
                self.uid,
                joint,
                p.POSITION_CONTROL,
                targetPosition=float(value),
                force=MAX_JOINT_FORCE,
                maxVelocity=MAX_JOINT_VELOCITY,
                physicsClientId=self.client,
            )
        for joint in FINGER_JOINTS:
            p.resetJointState(self.uid, joint, finger, physicsClientId=self.client)
        self.gripper_action = 1 if gripper_action >= 0 else -1
        self._command_gripper(self.gripper_action)
        pos, quat = self.tcp_pose()
        self.target_pos = np.array(pos)
        self.target_orn = np.array(p.getEulerFromQuaternion(quat))

    def tcp_pose(self) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
        """World position and quaternion (xyzw) of the tcp."""
        state = p.getLinkState(self.uid, TCP_LINK, computeForwardKinematics=True, physicsClientId=self.client)
        return state[4], state[5]

    def observe(self) -> RobotState:
        pos, quat = self.tcp_pose()
        joints = p.getJointStates(self.uid, ARM_JOINTS + FINGER_JOINTS, physicsClientId=self.client)
        values = [state[0] for state in joints]
        return RobotState(
            tcp_pos=np.array(pos),
            tcp_quat=np.array(quat),
            tcp_euler=np.array(p.getEulerFromQuaternion(quat)),
            gripper_width=float(values[7] + values[8]),
            arm_joints=np.array(values[:7]),
            gripper_action=self.gripper_action,
        )

    def camera_pose(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """World pose of CALVIN's gripper camera frame."""
        hand = p.getLinkState(self.uid, HAND_LINK, computeForwardKinematics=True, physicsClientId=self.client)
        return p.multiplyTransforms(
            hand[4], hand[5], GRIPPER_CAM_OFFSET, p.getQuaternionFromEuler(GRIPPER_CAM_RPY), physicsClientId=self.client
        )

    # --- control -----------------------------------------------------------------------------

    def apply_relative(self, action: np.ndarray) -> None:
        """CALVIN's relative action: 6 deltas in [-1, 1] (scaled by 0.02 m / 0.05 rad) and the gripper."""
        delta_pos = action[:3] * MAX_REL_POS
        delta_orn = action[3:6] * MAX_REL_ORN
        if self.use_target_pose:
            self.target_pos = self.target_pos + delta_pos
            self.target_orn = self.target_orn + delta_orn
        else:
            pos, quat = self.tcp_pose()
            self.target_pos = np.array(pos) + delta_pos
            self.target_orn = np.array(p.getEulerFromQuaternion(quat)) + delta_orn
        self.target_pos = np.clip(self.target_pos, TARGET_LOW, TARGET_HIGH)
        self._drive(self.target_pos, self.target_orn, int(action[6]))

    def apply_absolute(self, pos: np.ndarray, euler: np.ndarray, gripper: int) -> None:
        """Absolute tcp pose (world xyz + euler) and gripper; it also becomes the relative actions' target."""
        self.target_pos = np.clip(np.array(pos, dtype=float), TARGET_LOW, TARGET_HIGH)
        self.target_orn = np.array(euler, dtype=float)
        self._drive(self.target_pos, self.target_orn, gripper)

    def _drive(self, pos: np.ndarray, euler: np.ndarray, gripper: int) -> None:
        quat = p.getQuaternionFromEuler(euler)
        current = [state[0] for state in p.getJointStates(self.uid, ARM_JOINTS, physicsClientId=self.client)]
        joints = self.ik.solve(current, pos, quat)
        for joint in ARM_JOINTS:
            p.setJointMotorControl2(
                self.uid,
                joint,
                p.POSITION_CONTROL,
                targetPosition=joints[joint],
                force=MAX_JOINT_FORCE,
                maxVelocity=MAX_JOINT_VELOCITY,
                physicsClientId=self.client,
            )
        self.gripper_action = 1 if gripper >= 0 else -1
        self._command_gripper(self.gripper_action)

    def close(self) -> None:
        self.ik.close()

    def _command_gripper(self, action: int) -> None:
        # As CALVIN: open gently (1% force), close with full force.
        target, force = (FINGER_MAX, GRIPPER_FORCE / 100) if action == 1 else (0.0, GRIPPER_FORCE)
        for joint in FINGER_JOINTS:
            p.setJointMotorControl2(
                self.uid,
                joint,
                p.POSITION_CONTROL,
                targetPosition=target,
                force=force,
                maxVelocity=1.0,
                physicsClientId=self.client,
            )


def euler_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Angle (rad) of the rotation between two euler orientations; handy for tests and experts."""
    qa = p.getQuaternionFromEuler(a)
    qb = p.getQuaternionFromEuler(b)
    dot = abs(sum(x * y for x, y in zip(qa, qb, strict=True)))
    return 2 * math.acos(min(1.0, dot))
