"""What an expert knows about the scene: a read-only view of one privileged observation.

Experts may not import the simulator (``policies`` sits above ``emu3_vla`` only), so everything
comes from the observation dict an evaluator hands to a policy with ``needs_info = True``:
``info`` (the simulator's ``get_info()``: robot and target pose, blocks with their contacts,
joints, lights, and the layout facts ``shelf_split_x`` / ``drawer_x_range``), ``landmarks``
(handles, button, switch knob, drawer floor) and ``task``. A few facts about the desk that neither
carries are measured constants here (they hold for every PlayTable scene variant).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.experts.geometry import unwrapped_yaw

BLOCKS = ("red", "blue", "pink")
TABLE_Z = 0.44  # desk work surface
DESK_FRONT_Y = -0.20  # the desk's front edge (the drawer pulls out in front of it)
DESK_X = (-0.60, 0.46)
CABINET_FRONT_Y = 0.015
SHELF_Z = 0.441  # the cabinet's shelf surface
SHELF_Y = 0.0924  # depth of a block standing in a compartment (CALVIN's slot)
COMPARTMENT_WIDTH = 0.30  # each half of the cabinet, either side of ``shelf_split_x``
DOOR_WIDTH = 0.30  # the sliding door covers one compartment
BLOCK_HALF_HEIGHT = 0.02  # every block is 4 cm tall
BLOCK_HALF_LENGTH = 0.04  # the longest block is 8 cm long
PRIVILEGED_KEYS = ("info", "landmarks", "task")


class MissingPrivilegedInfo(KeyError):
    """An expert got an observation without the privileged keys."""


@dataclass(frozen=True)
class Block:
    name: str  # "red" | "blue" | "pink"
    pos: np.ndarray
    yaw: float
    touching: frozenset[str]
    grasped: bool

    @property
    def on_table(self) -> bool:
        return "table" in self.touching and not self.grasped

    def on_other_blocks(self) -> bool:
        """Resting only on other blocks (the top of a stack)."""
        others = {f"{c}_block" for c in BLOCKS if c != self.name}
        return bool(self.touching & others) and not (self.touching - others - {"robot"}) and not self.grasped


class SceneView:
    """Accessors over one observation's ``info`` and ``landmarks``."""

    def __init__(self, obs: Mapping[str, Any]) -> None:
        missing = [key for key in PRIVILEGED_KEYS if key not in obs]
        if missing:
            raise MissingPrivilegedInfo(
                f"scripted experts need the privileged observation keys {list(PRIVILEGED_KEYS)}, missing {missing}; "
                "run them through an evaluator that honours `needs_info = True` (it adds env.get_info(), "
                "env.get_landmarks() and the subtask name to each observation)"
            )
        self.info = obs["info"]
        self.landmarks = {name: np.asarray(value, dtype=float) for name, value in obs["landmarks"].items()}
        self.task = str(obs["task"])
        robot = self.info["robot_info"]
        self.tcp = np.asarray(robot["tcp_pos"], dtype=float)
        self.tcp_yaw = float(robot["tcp_orn"][2])
        self.target = np.asarray(robot["target_pos"], dtype=float)
        self.target_orn = np.asarray(robot["target_orn"], dtype=float)
        joint7 = float(robot["arm_joint_states"][6])
        # The target yaw on the wrist's continuous scale, and how far the environment's number is off it.
        self.target_yaw = unwrapped_yaw(float(self.target_orn[2]), joint7)
        self.yaw_offset = self.target_yaw - float(self.target_orn[2])
        self.gripper_width = float(robot["gripper_opening_width"])
        scene = self.info["scene_info"]
        table = scene["fixed_objects"]["table"]
        self.shelf_split_x = float(table["shelf_split_x"])
        self.drawer_x_range = tuple(float(v) for v in table["drawer_x_range"])
        self.slider = float(scene["doors"]["base__slide"]["current_state"])
        self.drawer = float(scene["doors"]["base__drawer"]["current_state"])
        self.blocks = {
            color: Block(
                name=color,
                pos=np.asarray(block["current_pos"], dtype=float),
                yaw=float(block["current_euler"][2]),
                touching=frozenset(block["touching"]),
                grasped=bool(block["grasped"]),
            )
            for color in BLOCKS
            for block in (scene["movable_objects"][f"block_{color}"],)
        }

    def block(self, color: str) -> Block:
        return self.blocks[color]

    def held_block(self) -> Block | None:
        held = [block for block in self.blocks.values() if block.grasped]
        return held[0] if len(held) == 1 else None

    def tcp_yaw_unwrapped(self) -> float:
        return self.tcp_yaw + self.yaw_offset

    def shelf_openings(self) -> list[tuple[float, float]]:
        """x ranges of the shelf that the sliding door leaves open, widest first.

        The door is as wide as one compartment; part-way along its travel it leaves a part of each
        compartment open, so the openings come from where the door is, not from the symbolic state.
        """
        door_x = float(self.landmarks["slider_handle"][0])
        lo, hi = self.shelf_split_x - COMPARTMENT_WIDTH, self.shelf_split_x + COMPARTMENT_WIDTH
        door_lo, door_hi = door_x - DOOR_WIDTH / 2, door_x + DOOR_WIDTH / 2
        openings = [(lo, min(hi, door_lo)), (max(lo, door_hi), hi)]
        return sorted((o for o in openings if o[1] > o[0]), key=lambda o: o[0] - o[1])

    def is_open_at(self, x: float, margin: float = 0.0) -> bool:
        """Whether the shelf at ``x`` is reachable (not behind the door), ``margin`` inside an opening."""
        return any(lo + margin <= x <= hi - margin for lo, hi in self.shelf_openings())

    def in_cabinet(self, point: np.ndarray) -> bool:
        """Whether a point is inside the cabinet's compartments (behind its front, below its top)."""
        lo = self.shelf_split_x - COMPARTMENT_WIDTH
        hi = self.shelf_split_x + COMPARTMENT_WIDTH
        return bool(point[1] > CABINET_FRONT_Y - 0.01 and lo - 0.03 < point[0] < hi + 0.03 and point[2] < 0.62)

    def in_drawer(self, point: np.ndarray) -> bool:
        """Whether a point is below the desk top in front of its edge (inside the pulled-out drawer)."""
        return bool(point[1] < DESK_FRONT_Y + 0.01 and point[2] < TABLE_Z + 0.01)
