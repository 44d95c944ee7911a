"""Angles and yaws for a gripper that points straight down.

The experts keep the gripper vertical (roll pi, pitch 0) and only turn it about the world z axis,
so an orientation is one yaw. At yaw pi/2 (the neutral pose) the fingers close along world x. The
yaw accumulates in the environment's target pose without wrapping, and the wrist can turn about
-0.8 .. 4.9 rad of that unwrapped yaw, so the experts choose among equivalent yaws (a block's grasp
is symmetric under half turns) the one that keeps the wrist near its neutral angle and inside that
range, and never command a wrap-around.
"""

from __future__ import annotations

import math

HOME_YAW = math.pi / 2
#: Unwrapped gripper yaws the wrist (joint 7, limits +-2.9 rad) reaches comfortably: the yaw grows
#: as joint 7 falls, yaw ~= WRIST_YAW_SUM - joint7, with a margin of about 0.2 rad to the limits.
WRIST_YAW_SUM = 2.05
YAW_RANGE = (-0.6, 4.6)


def wrap(angle: float) -> float:
    """``angle`` in [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def equivalent_near(angle: float, reference: float, period: float) -> float:
    """The angle ``angle + k * period`` closest to ``reference``."""
    return angle + period * round((reference - angle) / period)


def unwrapped_yaw(target_yaw: float, joint7: float) -> float:
    """The environment's (accumulated) target yaw, shifted by whole turns into the wrist's frame.

    After a reset from arbitrary joints the target yaw is read back from an euler angle in
    (-pi, pi]; the wrist angle says which turn it is really on.
    """
    return equivalent_near(target_yaw, WRIST_YAW_SUM - joint7, 2 * math.pi)


def grasp_yaw(block_yaw: float, turn: float = 0.0, period: float = math.pi) -> float:
    """Gripper yaw that grips a block across its width, then can turn by ``turn`` within the wrist's range.

    Fingers close along the gripper's x axis, which is world x at yaw pi/2; a block lying at yaw
    ``block_yaw`` has its width along its own y axis, so the grasp yaw equals the block's yaw up to
    half turns. Of the candidates, the one whose turn ends closest to neutral is chosen.
    """
    best = None
    for k in range(-3, 4):
        yaw = block_yaw + k * period
        end = yaw + turn
        if not (YAW_RANGE[0] <= min(yaw, end) and max(yaw, end) <= YAW_RANGE[1]):
            continue
        cost = abs(yaw + turn / 2 - HOME_YAW)
        if best is None or cost < best[0]:
            best = (cost, yaw)
    if best is None:  # a turn wider than the wrist's range: start as close to neutral as possible
        return equivalent_near(block_yaw, HOME_YAW - turn / 2, period)
    return best[1]
