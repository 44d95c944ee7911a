"""Waypoint plans for the 34 CALVIN tasks.

A plan is a generator of motion segments (:mod:`policies.experts.motion`). It reads the scene
through ``ctx.view``, which the expert refreshes before asking for each next segment, so later
waypoints use where things are *then* (a block after it was lifted, a handle after the drawer
moved). Each plan is one simple, repeatable way of doing its task, as a person would teleoperate
it:

* grasps come from above with the fingers across the block's width; lifts rise a few centimetres;
* pushes use the closed fingers with the hand at its neutral yaw (the 22 cm wide hand then stays
  clear of the cabinet); the door, drawer, button and switch are pushed or pulled at their handles
  (the environment's landmarks);
* moves between places rise to a safe height first (above the switch knob when passing it) and
  leave the cabinet the way they came in, so long chains do not sweep through furniture;
* a task that finds the scene left mid-way by the previous subtask finishes that first: a door
  standing part-way is pushed off the block to lift, a block still in the hand is set down;
* randomisation (``ctx.jitter``) moves waypoints by millimetres to centimetres and varies speeds,
  turn angles and gripper waits, so demonstrations differ while staying equally clean.

A plan that finds its task impossible (nothing held to place, the drawer closed for a placement)
ends at once; the expert then holds still and the episode fails, as it should.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from policies.experts.geometry import HOME_YAW, equivalent_near, grasp_yaw
from policies.experts.motion import Grip, Move, Segment
from policies.experts.scene import (
    BLOCK_HALF_HEIGHT,
    BLOCKS,
    CABINET_FRONT_Y,
    DESK_FRONT_Y,
    DOOR_WIDTH,
    SHELF_Y,
    SHELF_Z,
    TABLE_Z,
    Block,
    SceneView,
)

TRANSIT = 0.7  # cruise speed through free space, in action units (1.4 cm per step; the arm lags ~1 cm)
SAFE_Z = 0.58  # tcp height for moving about above the desk (blocks, stacks and handles stay below)
CABINET_Z = 0.555  # tcp height inside the compartments (the top shelf starts at 0.60 at the back)
KNOB_CLEARANCE_X = 0.15  # m: the hand (11 cm either side of the tcp) clears the switch knob beyond this
KNOB_NEAR = 0.14  # m: transits passing this close to the switch knob's centre go above it
KNOB_HALF_HEIGHT = 0.0125
BELOW_TCP = 0.045  # m: how far a held block (or the fingertips, 2 cm) reaches below the tcp, with margin
SHORT_HOP = 0.06  # m: horizontal trips shorter than this need not rise to SAFE_Z
IN_FRONT_OF_CABINET_Y = -0.06  # where the tcp lines up before entering or after leaving a compartment
FINGER_HALF_THICKNESS = 0.012  # closed fingers, along the direction they close
GRASP_DEPTH = 0.005  # the tcp goes this far below a block's centre to grasp it
CABINET_MAX_TURN = 0.12  # rad: largest grasp yaw away from neutral under the top shelf
CABINET_GRASP_SHIFT = 0.01  # m: grasp a block in a compartment this far in front of its centre
SLIDER_TRAVEL = 0.28  # the door's joint range
SHELF_EDGE_MARGIN = 0.065  # m: open fingers (8 cm) around a block keep this far from a wall or the door
SHELF_PLACE_Y = SHELF_Y - 0.008  # set blocks down a little in front of CALVIN's slot (hand clearance)


@dataclass
class PlanContext:
    """What a plan works with: the current view, a random generator and how much to randomise."""

    view: SceneView
    rng: np.random.Generator
    randomize: bool = True

    def jitter(self, scale: float) -> float:
        """A uniform offset in [-scale, scale] (0 when randomisation is off)."""
        return float(self.rng.uniform(-scale, scale)) if self.randomize else 0.0

    def speed(self, base: float) -> float:
        """A cruise speed varied by +-15 % per segment."""
        return base * (1.0 + self.jitter(0.15))

    def wait(self, base: int) -> int:
        """A gripper wait varied by +-1 step."""
        return base + (int(self.rng.integers(-1, 2)) if self.randomize else 0)


Plan = Iterator[Segment]
PlanFactory = Callable[[PlanContext], Plan]


# --- shared moves -------------------------------------------------------------------------------


def _xyz(x: float, y: float, z: float) -> np.ndarray:
    return np.array([x, y, z], dtype=float)


def clear_up(ctx: PlanContext, z: float = SAFE_Z) -> Plan:
    """Leave the cabinet or the drawer the way in, then rise to ``z`` (skipped when already there)."""
    here = ctx.view.target
    if ctx.view.in_cabinet(here):
        if here[2] < CABINET_Z - 0.01:
            yield Move(
                _xyz(here[0], here[1], CABINET_Z), speed=ctx.speed(0.4), tol=0.02, free=True, label="rise in cabinet"
            )
        yield Move(
            _xyz(here[0], IN_FRONT_OF_CABINET_Y, CABINET_Z),
            speed=ctx.speed(0.5),
            tol=0.02,
            free=True,
            label="leave cabinet",
        )
        here = ctx.view.target
    if here[2] < z - 0.015:
        yield Move(_xyz(here[0], here[1], z), speed=ctx.speed(TRANSIT), tol=0.025, free=True, label="rise")


def travel_above(ctx: PlanContext, xy: np.ndarray, z: float, yaw: float | None, gripper: float | None = None) -> Plan:
    """Get over ``xy`` at height ``z``, turning to ``yaw``; switch the gripper to ``gripper`` on the way.

    Longer trips rise to ``SAFE_Z`` first: the hand is 22 cm wide and its underside only 6 cm above
    the tcp, so lower transits sweep it through the switch knob and over blocks. A compartment is
    entered straight from the front. The gripper switches only after leaving the last place, so
    fingers that just let go of a block never close on it again.
    """
    view = ctx.view
    goal = _xyz(xy[0], xy[1], z)
    inside = view.in_cabinet(goal)
    entry = _xyz(xy[0], IN_FRONT_OF_CABINET_Y, z) if inside else goal
    far = float(np.linalg.norm(entry[:2] - view.target[:2])) > SHORT_HOP
    transit_z = max(z, SAFE_Z) if far else max(z, min(float(view.target[2]), SAFE_Z))
    knob = view.landmarks["switch"]
    if far and _distance_to_segment(knob[:2], view.target[:2], entry[:2]) < KNOB_NEAR:
        # Raised, the knob reaches the fingers (and a held block) at SAFE_Z: pass above it.
        transit_z = max(transit_z, float(knob[2]) + KNOB_HALF_HEIGHT + BELOW_TCP)
    yield from clear_up(ctx, transit_z)
    if gripper is not None:
        yield Grip(gripper, steps=0)
    yield Move(_xyz(entry[0], entry[1], transit_z), yaw, speed=ctx.speed(TRANSIT), tol=0.02, free=True, label="above")
    if transit_z > z + 0.005:
        yield Move(entry, yaw, speed=ctx.speed(0.55), tol=0.015, free=True, label="approach")
    if inside:
        yield Move(goal, yaw, speed=ctx.speed(0.5), tol=0.012, free=True, label="enter cabinet")


def _distance_to_segment(point: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Horizontal distance from ``point`` to the segment ``a``-``b``."""
    ab = np.asarray(b, dtype=float) - a
    t = float(np.clip((point - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(point - (a + t * ab)))


def held_offset(view: SceneView, block: Block) -> float:
    """Height of a held block's centre above the tcp (it may have slipped a little)."""
    return float(block.pos[2] - view.tcp[2])


def clearance(point: np.ndarray, others: list[np.ndarray]) -> float:
    if not others:
        return 1.0
    return min(float(np.linalg.norm(point[:2] - other[:2])) for other in others)


def roomiest(candidates: list[np.ndarray], obstacles: list[np.ndarray], preferred: np.ndarray) -> np.ndarray:
    """The candidate farthest from the obstacles (ties: nearest the preferred spot)."""
    return max(
        candidates,
        key=lambda c: (round(min(clearance(c, obstacles), 0.12), 3), -float(np.linalg.norm(c[:2] - preferred[:2]))),
    )


def half_extent_along(block: Block, direction: np.ndarray) -> float:
    """How far a block (up to 8 x 4 cm, lying flat) reaches from its centre along a horizontal direction."""
    axis = np.array([math.cos(block.yaw), math.sin(block.yaw)])
    side = np.array([-axis[1], axis[0]])
    return 0.04 * abs(float(axis @ direction)) + 0.02 * abs(float(side @ direction))


# --- blocks ------------------------------------------------------------------------------------


def grasp(ctx: PlanContext, block: Block, yaw: float, depth: float = GRASP_DEPTH) -> Plan:
    """Open, come down over ``block`` at ``yaw`` and close the fingers on it.

    In a compartment the hand (9 cm thick, 22 cm wide along the fingers) fits under the top shelf only
    when it points straight along x and stays a centimetre in front of the block's centre: the grasp
    there keeps within 0.12 rad of the neutral yaw, and the closing fingers turn the block square.
    """
    y_offset = 0.0
    if ctx.view.in_cabinet(block.pos):
        neutral = equivalent_near(HOME_YAW, yaw, math.pi)
        yaw = float(np.clip(yaw, neutral - CABINET_MAX_TURN, neutral + CABINET_MAX_TURN))
        y_offset = -CABINET_GRASP_SHIFT
    above = block.pos[2] + 0.075 + ctx.jitter(0.015)
    if ctx.view.in_cabinet(block.pos):
        above = min(above, CABINET_Z)
    yield from travel_above(ctx, block.pos + _xyz(0, y_offset, 0), above, yaw, gripper=1.0)
    x, y = block.pos[0] + ctx.jitter(0.003), block.pos[1] + y_offset + ctx.jitter(0.003)
    yield Move(
        _xyz(x, y, block.pos[2] - depth + ctx.jitter(0.002)), yaw, speed=ctx.speed(0.35), tol=0.005, label="down"
    )
    yield Grip(-1.0, ctx.wait(6), label="close")


def lift(ctx: PlanContext, color: str) -> Plan:
    """Grasp the block and lift it; a block in a compartment the door half covers is uncovered first."""
    block = ctx.view.block(color)
    if ctx.view.in_cabinet(block.pos) and not ctx.view.is_open_at(float(block.pos[0]), SHELF_EDGE_MARGIN):
        yield from uncover(ctx, float(block.pos[0]))
        block = ctx.view.block(color)
    yaw = grasp_yaw(block.yaw)
    yield from grasp(ctx, block, yaw)
    rise = (0.06 if ctx.view.in_cabinet(block.pos) else 0.09) + ctx.jitter(0.01)
    target = ctx.view.target
    yield Move(_xyz(target[0], target[1], block.pos[2] + rise), speed=ctx.speed(0.4), tol=0.015, label="lift")


def carry_yaw(along: float) -> float:
    """Gripper yaw that lays a held bar along the angle ``along`` (a held bar lies along the gripper's yaw),
    of the two choices the one nearer the wrist's neutral angle."""
    return equivalent_near(along, HOME_YAW, math.pi)


def release(ctx: PlanContext, spot: np.ndarray, block_z: float, yaw: float, travel_z: float) -> Plan:
    """Carry the held block over ``spot``, set it down with its centre at ``block_z``, let go and rise."""
    view = ctx.view
    block = view.held_block()
    if block is None:
        return
    offset = held_offset(view, block)
    yield from travel_above(ctx, spot, travel_z, yaw)
    down = _xyz(spot[0], spot[1], block_z + 0.006 - offset)
    yield Move(down, yaw, speed=ctx.speed(0.35), tol=0.006, label="set down")
    yield Grip(1.0, ctx.wait(6), label="open")
    rise_to = min(down[2] + 0.07, CABINET_Z) if view.in_cabinet(down) else down[2] + 0.07
    yield Move(_xyz(down[0], down[1], rise_to), speed=ctx.speed(0.4), tol=0.02, free=True, label="rise")


def place_in_slider(ctx: PlanContext) -> Plan:
    view = ctx.view
    held = view.held_block()
    if held is None:
        return
    openings = view.shelf_openings()
    if not openings or openings[0][1] - openings[0][0] < 2 * SHELF_EDGE_MARGIN:
        return  # the door covers the shelf
    lo, hi = openings[0]
    inside = [b.pos for b in view.blocks.values() if not b.grasped and view.in_cabinet(b.pos) and lo < b.pos[0] < hi]
    candidates = [
        _xyz(x, SHELF_PLACE_Y, SHELF_Z) for x in np.linspace(lo + SHELF_EDGE_MARGIN, hi - SHELF_EDGE_MARGIN, 9)
    ]
    spot = roomiest(candidates, inside, _xyz((lo + hi) / 2, SHELF_PLACE_Y, SHELF_Z))
    spot = spot + _xyz(ctx.jitter(0.01), ctx.jitter(0.005), 0.0)
    yield from release(ctx, spot, SHELF_Z + BLOCK_HALF_HEIGHT, carry_yaw(HOME_YAW), CABINET_Z)


def place_in_drawer(ctx: PlanContext) -> Plan:
    view = ctx.view
    held = view.held_block()
    if held is None or view.drawer < 0.11:
        return
    floor = view.landmarks["drawer_floor"]
    drawer_front = view.landmarks["drawer_handle"][1] + 0.06
    y = (drawer_front + 0.05 + DESK_FRONT_Y - 0.07) / 2
    lo, hi = view.drawer_x_range
    inside = [b.pos for b in view.blocks.values() if not b.grasped and view.in_drawer(b.pos)]
    candidates = [_xyz(x, y, floor[2]) for x in np.linspace(lo + 0.07, hi - 0.07, 9)]
    spot = roomiest(candidates, inside, _xyz(floor[0], y, floor[2]))
    spot = spot + _xyz(ctx.jitter(0.02), ctx.jitter(0.01), 0.0)
    yield from release(ctx, spot, floor[2] + BLOCK_HALF_HEIGHT + 0.004, carry_yaw(HOME_YAW), SAFE_Z)


def stack_block(ctx: PlanContext) -> Plan:
    view = ctx.view
    held = view.held_block()
    if held is None:
        return
    bases = [b for b in view.blocks.values() if b.on_table]
    if not bases:
        return
    base = min(bases, key=lambda b: float(np.linalg.norm(b.pos[:2] - held.pos[:2])))
    spot = base.pos + _xyz(ctx.jitter(0.004), ctx.jitter(0.004), 0.0)
    yaw = carry_yaw(base.yaw + ctx.jitter(0.1))
    yield from release(ctx, spot, base.pos[2] + 2 * BLOCK_HALF_HEIGHT, yaw, SAFE_Z)


def free_table_spot(ctx: PlanContext, near: np.ndarray, avoid: list[np.ndarray]) -> np.ndarray:
    """A spot on the desk in front of the cabinet, 10-16 cm from ``near`` and clear of ``avoid``."""
    candidates = []
    for angle in np.linspace(0, 2 * math.pi, 16, endpoint=False):
        for radius in (0.11, 0.14):
            point = near + _xyz(radius * math.cos(angle), radius * math.sin(angle), 0.0)
            if -0.30 < point[0] < 0.35 and DESK_FRONT_Y + 0.05 < point[1] < CABINET_FRONT_Y - 0.07:
                candidates.append(point)
    button = ctx.view.landmarks["button"]
    obstacles = [*avoid, button]
    preferred = near + _xyz(0.0, -0.05, 0.0)
    return roomiest(candidates or [near + _xyz(0.12, 0, 0)], obstacles, preferred)


def unstack_block(ctx: PlanContext) -> Plan:
    view = ctx.view
    tops = [b for b in view.blocks.values() if b.on_other_blocks()]
    if not tops:
        return
    top = max(tops, key=lambda b: float(b.pos[2]))
    yaw = grasp_yaw(top.yaw)
    yield from grasp(ctx, top, yaw, depth=0.0)
    yield Move(top.pos + _xyz(0, 0, 0.05), speed=ctx.speed(0.35), tol=0.015, label="lift off")
    others = [b.pos for b in view.blocks.values() if b.name != top.name]
    spot = free_table_spot(ctx, top.pos, others)
    spot = spot + _xyz(ctx.jitter(0.01), ctx.jitter(0.01), 0.0)
    yield from release(ctx, spot, TABLE_Z + BLOCK_HALF_HEIGHT, ctx.view.target_yaw, top.pos[2] + 0.05)


def rotate(ctx: PlanContext, color: str, direction: str) -> Plan:
    """Grasp, lift 1.5 cm, turn by about 75 degrees (right = clockwise seen from above), set down, let go."""
    block = ctx.view.block(color)
    turn = (1.3 + ctx.jitter(0.12)) * (-1.0 if direction == "right" else 1.0)
    yaw = grasp_yaw(block.yaw, turn)
    yield from grasp(ctx, block, yaw)
    grasped_at = ctx.view.target.copy()
    # Turned away from neutral, the 22 cm wide hand reaches towards the cabinet (the switch knob sticks
    # out 8 cm), so the block is turned a few centimetres nearer the robot (it may move up to 10 cm).
    toward_robot = float(np.clip(grasped_at[1] - (DESK_FRONT_Y + 0.045), 0.0, 0.045 + ctx.jitter(0.005)))
    where = grasped_at - _xyz(0, toward_robot, 0)
    raised = where + _xyz(0, 0, 0.015)
    yield Move(grasped_at + _xyz(0, 0, 0.015), yaw, speed=ctx.speed(0.3), tol=0.008, label="raise")
    yield Move(raised, yaw, speed=ctx.speed(0.3), tol=0.008, label="draw nearer")
    yield Move(raised, yaw + turn, speed=0.3, yaw_speed=ctx.speed(0.9), tol=0.01, yaw_tol=0.06, label="turn")
    yield Move(where + _xyz(0, 0, 0.003), yaw + turn, speed=ctx.speed(0.3), tol=0.006, label="set down")
    yield Grip(1.0, ctx.wait(6), label="open")
    yield Move(where + _xyz(0, 0, 0.07), speed=ctx.speed(0.4), tol=0.02, free=True, label="rise")


def push_block(ctx: PlanContext, block: Block, goal: np.ndarray, speed: float = 0.35) -> Plan:
    """Push ``block`` with the closed fingers in a straight line until its centre reaches ``goal`` (x, y)."""
    offset = np.asarray(goal[:2], dtype=float) - block.pos[:2]
    distance = float(np.linalg.norm(offset))
    if distance < 1e-6:
        return
    direction = offset / distance
    # The hand is 22 cm wide along the fingers' closing axis and only 6 cm above the tcp: turned
    # across a sideways push it would sweep the cabinet front and the switch knob, so the gripper
    # keeps its neutral yaw (hand along x) and pushes with the leading finger or the fingers' flat side.
    yaw = HOME_YAW
    gap = half_extent_along(block, direction) + FINGER_HALF_THICKNESS + 0.02 + ctx.jitter(0.005)
    height = block.pos[2] + 0.004 + ctx.jitter(0.003)
    start = _xyz(*(block.pos[:2] - direction * gap), height)
    yield from travel_above(ctx, start, height + 0.07 + ctx.jitter(0.01), yaw, gripper=-1.0)
    yield Move(start, yaw, speed=ctx.speed(0.35), tol=0.006, label="down beside")
    contact = gap - half_extent_along(block, direction) - FINGER_HALF_THICKNESS
    end = start + _xyz(*(direction * (contact + distance)), 0.0)
    yield Move(end, yaw, speed=ctx.speed(speed), tol=0.012, label="push")
    back = end - _xyz(*(direction * 0.02), 0.0)
    yield Move(back + _xyz(0, 0, 0.01), yaw, speed=ctx.speed(0.3), tol=0.015, label="back off")
    yield Move(back + _xyz(0, 0, 0.08), yaw, speed=ctx.speed(0.4), tol=0.02, free=True, label="rise")


def push_sideways(ctx: PlanContext, color: str, direction: str) -> Plan:
    block = ctx.view.block(color)
    sign = 1.0 if direction == "right" else -1.0
    goal = block.pos[:2] + np.array([sign * (0.13 + ctx.jitter(0.015)), ctx.jitter(0.005)])
    yield from push_block(ctx, block, goal)


def push_into_drawer(ctx: PlanContext) -> Plan:
    """Push the table block towards the robot, over the desk's edge, into the open drawer.

    From behind a block near the switch column the hand would hit the knob, so such a block is first
    pushed sideways, away from the knob.
    """
    view = ctx.view
    if view.drawer < 0.11:
        return
    on_table = [b for b in view.blocks.values() if b.on_table]
    if not on_table:
        return
    block = min(on_table, key=lambda b: float(b.pos[1]))  # the one closest to the desk's front edge
    knob = view.landmarks["switch"]
    lo, hi = view.drawer_x_range
    if abs(float(block.pos[0] - knob[0])) < KNOB_CLEARANCE_X:
        side = -1.0 if (lo + hi) / 2 < knob[0] else 1.0  # towards the drawer's side of the knob
        aside = np.array([knob[0] + side * (KNOB_CLEARANCE_X + 0.01 + ctx.jitter(0.005)), block.pos[1]])
        yield from push_block(ctx, block, aside)
        block = ctx.view.block(block.name)
    x = float(np.clip(block.pos[0], lo + 0.08, hi - 0.08)) + ctx.jitter(0.01)
    goal = np.array([x, DESK_FRONT_Y - 0.10 + ctx.jitter(0.01)])
    yield from push_block(ctx, block, goal, speed=0.4)


# --- furniture ---------------------------------------------------------------------------------


def slide_door(ctx: PlanContext, direction: str, travel: float) -> Plan:
    """Push the door's handle sideways by ``travel`` with the closed fingers: left = the door moves to -x."""
    view = ctx.view
    handle = view.landmarks["slider_handle"]
    sign = 1.0 if direction == "left" else -1.0  # start on the +x side to push towards -x
    start = handle + _xyz(sign * (0.042 + ctx.jitter(0.004)), ctx.jitter(0.004), ctx.jitter(0.006))
    yield from travel_above(ctx, start, start[2] + 0.08 + ctx.jitter(0.01), HOME_YAW, gripper=-1.0)
    yield Move(start, HOME_YAW, speed=ctx.speed(0.35), tol=0.006, label="beside handle")
    end = start - _xyz(sign * (travel + 0.03), 0.0, 0.0)
    yield Move(end, HOME_YAW, speed=ctx.speed(0.4), tol=0.02, label="slide")
    yield Move(end + _xyz(0, -0.06, 0.05), HOME_YAW, speed=ctx.speed(0.4), tol=0.02, free=True, label="retreat")


def move_slider(ctx: PlanContext, direction: str) -> Plan:
    view = ctx.view
    room = (SLIDER_TRAVEL - view.slider) if direction == "left" else view.slider
    yield from slide_door(ctx, direction, min(0.22 + ctx.jitter(0.02), room + 0.005))


def uncover(ctx: PlanContext, x: float) -> Plan:
    """Slide the door off the shelf at ``x`` (it may stand part-way after a short move_slider)."""
    view = ctx.view
    door_x = float(view.landmarks["slider_handle"][0])
    if x > door_x:  # door to the left of x: push it further left (-x, slider value grows)
        direction, travel, room = "left", door_x + DOOR_WIDTH / 2 - (x - SHELF_EDGE_MARGIN), SLIDER_TRAVEL - view.slider
    else:
        direction, travel, room = "right", (x + SHELF_EDGE_MARGIN) - (door_x - DOOR_WIDTH / 2), view.slider
    travel = min(travel + 0.015 + abs(ctx.jitter(0.01)), room + 0.005)
    if travel > 0.005:
        yield from slide_door(ctx, direction, travel)


def set_down_held(ctx: PlanContext) -> Plan:
    """Put a block still in the hand on the table first (after an unstack that ended at lift-off)."""
    view = ctx.view
    held = view.held_block()
    if held is None:
        return
    others = [b.pos for b in view.blocks.values() if b.name != held.name]
    spot = free_table_spot(ctx, held.pos, others)
    yield from release(ctx, spot, TABLE_Z + BLOCK_HALF_HEIGHT, view.target_yaw, SAFE_Z)


def open_drawer(ctx: PlanContext) -> Plan:
    """Hook the closed fingers behind the handle bar and pull the drawer out."""
    view = ctx.view
    handle = view.landmarks["drawer_handle"]
    start = handle + _xyz(ctx.jitter(0.02), 0.035 + ctx.jitter(0.003), ctx.jitter(0.004))
    pull = min(0.20 + ctx.jitter(0.015), 0.22 - view.drawer + 0.005)
    yield from travel_above(ctx, start, TABLE_Z + 0.09 + ctx.jitter(0.01), HOME_YAW, gripper=-1.0)
    yield Move(start, HOME_YAW, speed=ctx.speed(0.35), tol=0.006, label="behind handle")
    end = start - _xyz(0.0, pull, 0.0)
    yield Move(end, HOME_YAW, speed=ctx.speed(0.4), tol=0.02, label="pull")
    yield Move(end + _xyz(0, 0, 0.10), HOME_YAW, speed=ctx.speed(0.4), tol=0.02, free=True, label="rise")


def close_drawer(ctx: PlanContext) -> Plan:
    """Push the handle bar from the front until the drawer is nearly shut."""
    view = ctx.view
    handle = view.landmarks["drawer_handle"]
    start = handle + _xyz(ctx.jitter(0.02), -0.04 + ctx.jitter(0.004), ctx.jitter(0.004))
    push = view.drawer + 0.04 - FINGER_HALF_THICKNESS - 0.01 + ctx.jitter(0.005)
    yield from travel_above(ctx, start, TABLE_Z + 0.09 + ctx.jitter(0.01), HOME_YAW, gripper=-1.0)
    yield Move(start, HOME_YAW, speed=ctx.speed(0.35), tol=0.006, label="in front of handle")
    end = start + _xyz(0.0, push, 0.0)
    yield Move(end, HOME_YAW, speed=ctx.speed(0.4), tol=0.02, label="push shut")
    yield Move(end + _xyz(0, -0.05, 0.08), HOME_YAW, speed=ctx.speed(0.4), tol=0.02, free=True, label="retreat")


def press_button(ctx: PlanContext) -> Plan:
    """Press the LED's push button once with the closed fingertips."""
    button = ctx.view.landmarks["button"] + _xyz(ctx.jitter(0.006), ctx.jitter(0.006), 0.0)
    yield from travel_above(ctx, button, button[2] + 0.07 + ctx.jitter(0.01), HOME_YAW, gripper=-1.0)
    yield Move(button - _xyz(0, 0, 0.025), HOME_YAW, speed=ctx.speed(0.3), tol=0.008, label="press")
    yield Move(button + _xyz(0, 0, 0.06), HOME_YAW, speed=ctx.speed(0.35), tol=0.02, label="release")


def slide_switch(ctx: PlanContext, up: bool) -> Plan:
    """Grasp the switch knob and slide it up (bulb on) or down (bulb off), then let go."""
    knob = ctx.view.landmarks["switch"] + _xyz(ctx.jitter(0.004), -0.01 + ctx.jitter(0.004), 0.0)
    yield from travel_above(ctx, knob, knob[2] + 0.07 + ctx.jitter(0.01), HOME_YAW, gripper=1.0)
    yield Move(knob, HOME_YAW, speed=ctx.speed(0.35), tol=0.006, label="at knob")
    yield Grip(-1.0, ctx.wait(6), label="grasp knob")
    end = knob + _xyz(0, 0, 0.095 if up else -0.095)
    yield Move(end, HOME_YAW, speed=ctx.speed(0.3), tol=0.02, label="slide")
    yield Grip(1.0, ctx.wait(5), label="let go")
    yield Move(end + _xyz(0, -0.07, 0.03), HOME_YAW, speed=ctx.speed(0.4), tol=0.02, free=True, label="retreat")


# --- registry ----------------------------------------------------------------------------------


def _registry() -> dict[str, PlanFactory]:
    plans: dict[str, PlanFactory] = {}
    for color in BLOCKS:
        for direction in ("right", "left"):
            plans[f"rotate_{color}_block_{direction}"] = lambda ctx, c=color, d=direction: rotate(ctx, c, d)
            plans[f"push_{color}_block_{direction}"] = lambda ctx, c=color, d=direction: push_sideways(ctx, c, d)
        for surface in ("table", "slider", "drawer"):
            plans[f"lift_{color}_block_{surface}"] = lambda ctx, c=color: lift(ctx, c)
    plans["move_slider_left"] = lambda ctx: move_slider(ctx, "left")
    plans["move_slider_right"] = lambda ctx: move_slider(ctx, "right")
    plans["open_drawer"] = open_drawer
    plans["close_drawer"] = close_drawer
    plans["place_in_slider"] = place_in_slider
    plans["place_in_drawer"] = place_in_drawer
    plans["stack_block"] = stack_block
    plans["unstack_block"] = unstack_block
    plans["turn_on_lightbulb"] = lambda ctx: slide_switch(ctx, up=True)
    plans["turn_off_lightbulb"] = lambda ctx: slide_switch(ctx, up=False)
    plans["turn_on_led"] = press_button
    plans["turn_off_led"] = press_button
    plans["push_into_drawer"] = push_into_drawer
    return plans


PLANS: dict[str, PlanFactory] = _registry()
EXPERT_TASKS: tuple[str, ...] = tuple(sorted(PLANS))


#: Tasks that start with a block in the hand; every other plan first puts a held block down.
HOLDING_TASKS = frozenset({"place_in_slider", "place_in_drawer", "stack_block"})


def make_plan(task: str, ctx: PlanContext) -> Plan:
    """The plan for CALVIN task ``task`` (raises ValueError for an unknown name)."""
    try:
        factory = PLANS[task]
    except KeyError:
        raise ValueError(
            f"no scripted expert for task {task!r}; experts exist for: {', '.join(EXPERT_TASKS)}"
        ) from None
    if task in HOLDING_TASKS:
        return factory(ctx)
    return _after(set_down_held(ctx), lambda: factory(ctx))


def _after(first: Plan, then: Callable[[], Plan]) -> Plan:
    """``first``, then the plan ``then()`` builds from the scene as it is when ``first`` is done."""
    yield from first
    yield from then()
