"""Where things are on the PlayTable desk, per scene variant (``A``..``D``, like CALVIN's scenes).

All coordinates are CALVIN's world frame in metres: x to the right as seen from the robot, y away
from the robot, z up; the desk's work surface is at z = 0.44 and the robot base at
(-0.34, -0.46, 0.24), both as in CALVIN. Scene ``D`` puts everything where CALVIN's scene D has it
as far as the task definitions and start states reveal it (block slots, joint ranges, which way
the slider and drawer move), so a CALVIN ``scene_obs`` means the same scene here; the mapping from
CALVIN's scene D to PlayTable's scene ``D`` is the identity. Variants ``A``..``C`` move the
cabinet, drawer, button and switch, recolour the furniture and swap the block sizes, so that
training on ``A``..``C`` and testing on ``D`` is a real generalisation test, as in CALVIN.
"""

from __future__ import annotations

from dataclasses import dataclass

from envs.calvin_states import StartSlots

RGBA = tuple[float, float, float, float]
Size = tuple[float, float, float]

TABLE_TOP_Z = 0.44
TABLE_THICKNESS = 0.03
DESK_X = (-0.60, 0.46)
DESK_Y = (-0.20, 0.20)

# The cabinet: two compartments on a shelf, closed by one sliding door.
SHELF_TOP_Z = 0.441
COMPARTMENT_X = (-0.38, 0.22)  # interior, scene D
COMPARTMENT_Y = (0.035, 0.18)
CABINET_FRONT_Y = 0.015
CABINET_BACK_Y = 0.20
CABINET_TOP_Z = 0.60  # underside of the top shelf
# The top shelf (carrying the LED and the bulb) covers only the back of the compartments, so the arm's
# wrist passes above the door into them when the gripper points down, as it must to lift a block there.
TOP_SHELF_Y = 0.14
WALL = 0.02
COLUMN_WIDTH = 0.10  # the column that carries the switch
DOOR_WIDTH = 0.30
DOOR_Y = 0.024
DOOR_THICKNESS = 0.012
SLIDER_RANGE = (0.0, 0.28)
# The door's handle is low, below the hand of a gripper working at table height, which reaches up
# to 10 cm towards the cabinet when turned (a handle at hand height would block it).
DOOR_HANDLE_Z = (0.46, 0.52)
DOOR_HANDLE_DEPTH = 0.035

# The drawer under the desk, pulled out towards the robot (-y).
DRAWER_WIDTH = 0.34
DRAWER_DEPTH = 0.30
DRAWER_Z = (0.295, 0.405)
DRAWER_FRONT_Y = -0.21
DRAWER_RANGE = (0.0, 0.22)
DRAWER_HANDLE_OFFSET = 0.05  # bar's distance in front of the drawer front
DRAWER_HANDLE_Z = 0.39

BUTTON_RANGE = (0.0, 0.02)
BUTTON_RADIUS = 0.022
SWITCH_RANGE = (0.0, 0.088)
SWITCH_LOW_Z = 0.52  # knob centre when off (above the blocks, which are 4 cm tall)
SWITCH_KNOB_DEPTH = 0.08  # how far the knob sticks out towards the robot (within the arm's reach)
SWITCH_KNOB_INSET = 0.04  # knob centre from the column's side next to the compartments

# CALVIN's block sizes after its 0.8 scaling: 0.04 m cubes, 5.6 cm and 8 cm long bars.
BLOCK_SIZES: dict[str, Size] = {
    "small": (0.04, 0.04, 0.04),
    "medium": (0.056, 0.04, 0.04),
    "large": (0.08, 0.04, 0.04),
}
BLOCK_COLORS: dict[str, RGBA] = {
    "red_block": (0.86, 0.08, 0.08, 1.0),
    "blue_block": (0.08, 0.22, 0.86, 1.0),
    "pink_block": (0.96, 0.42, 0.78, 1.0),
}


@dataclass(frozen=True)
class SceneLayout:
    """One desk variant: positions of the movable furniture, colours and block sizes."""

    name: str
    cabinet_shift: float  # x offset of the cabinet (compartments, door, column) from scene D
    switch_side: str  # "right" or "left": the column with the switch, the bulb above it
    drawer_x: float
    button_xy: tuple[float, float]
    desk_rgba: RGBA
    desk_texture: str  # "wood" | "speckle" | "plain" (see textures.py), tinted with desk_rgba
    leg_rgba: RGBA
    cabinet_rgba: RGBA
    door_rgba: RGBA
    door_texture: str
    drawer_rgba: RGBA
    block_sizes: dict[str, str]  # block -> "small" | "medium" | "large"

    @property
    def compartment_x(self) -> tuple[float, float]:
        return (COMPARTMENT_X[0] + self.cabinet_shift, COMPARTMENT_X[1] + self.cabinet_shift)

    @property
    def column_x(self) -> tuple[float, float]:
        """x range of the switch column (outside the compartment walls)."""
        left, right = self.compartment_x
        if self.switch_side == "right":
            return (right + WALL, right + WALL + COLUMN_WIDTH)
        return (left - WALL - COLUMN_WIDTH, left - WALL)

    @property
    def switch_x(self) -> float:
        """x of the switch knob: on the column, near the compartments (the far side is out of reach)."""
        col0, col1 = self.column_x
        return col0 + SWITCH_KNOB_INSET if self.switch_side == "right" else col1 - SWITCH_KNOB_INSET

    @property
    def cabinet_x(self) -> tuple[float, float]:
        """Outer x range of the whole cabinet, column included."""
        left, right = self.compartment_x
        column = self.column_x
        return (min(left - WALL, column[0]), max(right + WALL, column[1]))

    @property
    def door_x_closed_right(self) -> float:
        """Door centre at slider value 0 (door on the right half); it moves to -x as the value grows."""
        return self.compartment_x[1] - DOOR_WIDTH / 2

    @property
    def drawer_x_range(self) -> tuple[float, float]:
        return (self.drawer_x - DRAWER_WIDTH / 2, self.drawer_x + DRAWER_WIDTH / 2)

    @property
    def shelf_split_x(self) -> float:
        """Boundary between the left and right compartment (for the symbolic state)."""
        return sum(self.compartment_x) / 2

    def block_size(self, block: str) -> Size:
        return BLOCK_SIZES[self.block_sizes[block]]

    def start_slots(self) -> StartSlots:
        """Block slots for resets from CALVIN symbolic states (scene D: exactly CALVIN's)."""
        default = StartSlots()
        shift = self.cabinet_shift
        drawer_shift = self.drawer_x - LAYOUTS_D_DRAWER_X
        return StartSlots(
            shelf_left=(default.shelf_left[0] + shift, *default.shelf_left[1:]),
            shelf_right=(default.shelf_right[0] + shift, *default.shelf_right[1:]),
            table=default.table,
            drawer_closed=tuple((x + drawer_shift, y, z) for x, y, z in default.drawer_closed),
        )


LAYOUTS_D_DRAWER_X = 0.10

LAYOUTS: dict[str, SceneLayout] = {
    "A": SceneLayout(
        name="A",
        cabinet_shift=0.02,
        switch_side="left",
        drawer_x=0.12,
        button_xy=(-0.33, -0.15),
        desk_rgba=(0.42, 0.27, 0.17, 1.0),
        desk_texture="wood",
        leg_rgba=(0.2, 0.2, 0.2, 1.0),
        cabinet_rgba=(0.78, 0.79, 0.80, 1.0),
        door_rgba=(0.95, 0.95, 0.93, 1.0),
        door_texture="plain",
        drawer_rgba=(0.78, 0.79, 0.80, 1.0),
        block_sizes={"red_block": "large", "blue_block": "small", "pink_block": "medium"},
    ),
    "B": SceneLayout(
        name="B",
        cabinet_shift=-0.03,
        switch_side="right",
        drawer_x=0.08,
        button_xy=(-0.19, -0.16),
        desk_rgba=(0.55, 0.56, 0.58, 1.0),
        desk_texture="speckle",
        leg_rgba=(0.15, 0.15, 0.15, 1.0),
        cabinet_rgba=(0.93, 0.89, 0.80, 1.0),
        door_rgba=(0.72, 0.55, 0.36, 1.0),
        door_texture="wood",
        drawer_rgba=(0.93, 0.89, 0.80, 1.0),
        block_sizes={"red_block": "small", "blue_block": "medium", "pink_block": "large"},
    ),
    "C": SceneLayout(
        name="C",
        cabinet_shift=0.0,
        switch_side="left",
        drawer_x=0.11,
        button_xy=(-0.30, -0.08),
        desk_rgba=(0.90, 0.88, 0.84, 1.0),
        desk_texture="plain",
        leg_rgba=(0.3, 0.3, 0.32, 1.0),
        cabinet_rgba=(0.36, 0.37, 0.40, 1.0),
        door_rgba=(0.80, 0.64, 0.44, 1.0),
        door_texture="wood",
        drawer_rgba=(0.36, 0.37, 0.40, 1.0),
        block_sizes={"red_block": "medium", "blue_block": "small", "pink_block": "large"},
    ),
    "D": SceneLayout(
        name="D",
        cabinet_shift=0.0,
        switch_side="right",
        drawer_x=LAYOUTS_D_DRAWER_X,
        button_xy=(-0.28, -0.12),
        desk_rgba=(0.80, 0.65, 0.46, 1.0),
        desk_texture="wood",
        leg_rgba=(0.25, 0.25, 0.25, 1.0),
        cabinet_rgba=(0.94, 0.94, 0.92, 1.0),
        door_rgba=(0.58, 0.42, 0.28, 1.0),
        door_texture="wood",
        drawer_rgba=(0.94, 0.94, 0.92, 1.0),
        block_sizes={"red_block": "medium", "blue_block": "large", "pink_block": "small"},
    ),
}


def get_layout(variant: str) -> SceneLayout:
    """The layout of scene variant ``"A"``..``"D"``."""
    try:
        return LAYOUTS[variant]
    except KeyError:
        raise ValueError(f"unknown scene variant {variant!r}; choose one of {sorted(LAYOUTS)}") from None
