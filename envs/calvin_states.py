"""From a CALVIN symbolic start state to a concrete scene, the way CALVIN's evaluation does it.

CALVIN's evaluator (``get_env_state_for_initial_condition``) turns a symbolic state such as
``{"led": 1, "lightbulb": 0, "slider": "left", "drawer": "open", "red_block": "table", ...}`` into
a ``robot_obs`` (a fixed neutral arm pose, gripper open) and a ``scene_obs``: joint values for the
slider, drawer and switch, the light states, and block poses at fixed slots. Which table slot a
block gets and the blocks' yaw are random, but the generator is seeded per state with a 32-bit
FNV-1 hash of ``str(state.values())``, so a chain's start scene is a function of its symbolic state.
CALVIN used the ``pyhash`` package for that hash, which no longer builds; :func:`fnv1_32` is a pure
Python equivalent (initial value 0, not the usual offset basis, over UTF-16-LE bytes).

Slot positions default to CALVIN's scene-D coordinates, which are also the coordinates of
PlayTable's scene ``D``; other scene variants pass their own :class:`StartSlots`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs.calvin_data import SYMBOLIC_KEYS

FNV1_PRIME_32 = 16777619

#: CALVIN's neutral robot state (``robot_obs``): tcp xyz, tcp euler, gripper width, 7 arm joints,
#: last gripper action. PlayTable's tcp is defined like CALVIN's (0.14 m along the hand axis), so the
#: same joints give the same tcp pose in both simulators.
NEUTRAL_ROBOT_OBS = np.array(
    [
        0.02586889,
        -0.2313129,
        0.5712808,
        3.09045411,
        -0.02908596,
        1.50013585,
        0.07999963,
        -1.21779124,
        1.03987629,
        2.11978254,
        -2.34205014,
        -0.87015899,
        1.64119093,
        0.55344928,
        1.0,
    ]
)

#: CALVIN's default evaluation scene (``get_eval_env_state``): everything closed and off, red and blue
#: blocks on the table, the pink block on the shelf behind the sliding door.
DEFAULT_SCENE_OBS = np.array(
    [
        *(0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        *(0.0, -0.12, 0.46, 0.0, 0.0, 1.57),
        *(0.2, -0.12, 0.46, 0.0, 0.0, 0.0),
        *(0.0703, 0.0924, 0.461, 0.0, 0.0, 1.5719),
    ]
)

SLIDER_LEFT_VALUE = 0.28
DRAWER_OPEN_VALUE = 0.22
SWITCH_ON_VALUE = 0.088
BLOCK_YAW_RANGE = (math.pi / 2 - math.pi / 8, math.pi / 2 + math.pi / 8)

BLOCKS = ("red_block", "blue_block", "pink_block")
BLOCK_PLACES_AT_START = ("table", "slider_left", "slider_right", "drawer")
#: Offset of each block's 6 pose values in ``scene_obs``.
BLOCK_OFFSETS = {"red_block": 6, "blue_block": 12, "pink_block": 18}


def fnv1_32(text: str) -> int:
    """32-bit FNV-1 hash of ``text``'s UTF-16-LE bytes, starting from 0 as CALVIN's ``pyhash`` did.

    ``fnv1_32("test") == 3910690890``.
    """
    value = 0
    for byte in text.encode("utf-16-le"):
        value = (value * FNV1_PRIME_32) & 0xFFFFFFFF
        value ^= byte
    return value


def canonical_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` with CALVIN's key order (see :data:`envs.calvin_data.SYMBOLIC_KEYS`), validated."""
    missing = [key for key in SYMBOLIC_KEYS if key not in state]
    extra = [key for key in state if key not in SYMBOLIC_KEYS]
    if missing or extra:
        raise ValueError(
            f"a CALVIN symbolic state needs exactly the keys {list(SYMBOLIC_KEYS)}; "
            f"missing {missing}, unexpected {extra}"
        )
    return {key: state[key] for key in SYMBOLIC_KEYS}


def calvin_state_seed(state: Mapping[str, Any]) -> int:
    """The seed CALVIN's evaluator uses for ``state``'s start scene: ``fnv1_32(str(state.values()))``.

    The state is put in CALVIN's key order first, so a dict with the same facts in another order
    gets the same seed. The first standard chain's state hashes to 2138410836.
    """
    return fnv1_32(str(canonical_state(state).values()))


@dataclass(frozen=True)
class StartSlots:
    """Where a reset puts blocks, in world coordinates (block centres).

    ``drawer_closed`` are positions inside the drawer while it is closed; they move with the drawer.
    """

    shelf_left: tuple[float, float, float] = (-0.240851662, 0.0924044687, 0.460990009)
    shelf_right: tuple[float, float, float] = (0.070341633, 0.0924044687, 0.460990009)
    table: tuple[tuple[float, float, float], tuple[float, float, float]] = (
        (0.0500000896, -0.120000177, 0.459990009),
        (0.229995412, -0.11999514, 0.45999001),
    )
    drawer_closed: tuple[tuple[float, float, float], tuple[float, float, float]] = field(
        default=((0.03, -0.085, 0.326), (0.17, -0.085, 0.326))
    )


CALVIN_D_SLOTS = StartSlots()


def _validate_start_state(state: dict[str, Any]) -> None:
    for light in ("led", "lightbulb"):
        if state[light] not in (0, 1):
            raise ValueError(f"{light} must be 0 or 1, got {state[light]!r}")
    if state["slider"] not in ("left", "right"):
        raise ValueError(f"slider must be 'left' or 'right', got {state['slider']!r}")
    if state["drawer"] not in ("open", "closed"):
        raise ValueError(f"drawer must be 'open' or 'closed', got {state['drawer']!r}")
    if state["grasped"] != 0:
        raise ValueError("a start state cannot have a grasped block (grasped must be 0), as in CALVIN's start states")
    for block in BLOCKS:
        if state[block] not in BLOCK_PLACES_AT_START:
            raise ValueError(
                f"{block} is {state[block]!r}; a reset can place blocks only at {list(BLOCK_PLACES_AT_START)}"
            )
    places = [state[block] for block in BLOCKS]
    for shelf in ("slider_left", "slider_right"):
        if places.count(shelf) > 1:
            raise ValueError(f"two blocks cannot share the {shelf} slot: {state}")
    if places.count("table") > 2:
        raise ValueError(f"at most two blocks fit the table slots, got three: {state}")
    if places.count("drawer") > 2:
        raise ValueError(f"at most two blocks fit in the drawer, got three: {state}")


def scene_obs_for_state(
    state: Mapping[str, Any], seed: int | None = None, slots: StartSlots = CALVIN_D_SLOTS
) -> np.ndarray:
    """CALVIN's 24-d ``scene_obs`` for a symbolic start state.

    Follows CALVIN's procedure draw for draw: a ``RandomState(seed)`` shuffles the two table slots,
    then draws the red, blue and pink yaw in that order from U(pi/2 - pi/8, pi/2 + pi/8). The red
    block takes the first table slot, the blue block the second if red is on the table too, the pink
    block always the second. ``seed`` defaults to :func:`calvin_state_seed`. A block in the
    ``drawer`` (which CALVIN's start states never have) goes to a drawer slot; its yaw is still drawn,
    so the other blocks' draws stay as CALVIN's.
    """
    state = canonical_state(state)
    _validate_start_state(state)
    if seed is None:
        seed = calvin_state_seed(state)
    rng = np.random.RandomState(seed)
    table_slots = [np.array(slot, dtype=float) for slot in slots.table]
    rng.shuffle(table_slots)

    scene_obs = np.zeros(24)
    drawer_value = DRAWER_OPEN_VALUE if state["drawer"] == "open" else 0.0
    scene_obs[0] = SLIDER_LEFT_VALUE if state["slider"] == "left" else 0.0
    scene_obs[1] = drawer_value
    scene_obs[3] = SWITCH_ON_VALUE if state["lightbulb"] == 1 else 0.0
    scene_obs[4] = state["lightbulb"]
    scene_obs[5] = state["led"]

    drawer_slots = [np.array(slot, dtype=float) - np.array([0.0, drawer_value, 0.0]) for slot in slots.drawer_closed]
    table_index = {
        "red_block": 0,
        "blue_block": 1 if state["red_block"] == "table" else 0,
        "pink_block": 1,
    }
    drawer_used = 0
    for block in BLOCKS:
        place = state[block]
        offset = BLOCK_OFFSETS[block]
        if place == "slider_left":
            position = np.array(slots.shelf_left)
        elif place == "slider_right":
            position = np.array(slots.shelf_right)
        elif place == "drawer":
            position = drawer_slots[drawer_used]
            drawer_used += 1
        else:
            position = table_slots[table_index[block]]
        scene_obs[offset : offset + 3] = position
        scene_obs[offset + 5] = rng.uniform(*BLOCK_YAW_RANGE)
    return scene_obs


def start_obs_for_state(
    state: Mapping[str, Any], seed: int | None = None, slots: StartSlots = CALVIN_D_SLOTS
) -> tuple[np.ndarray, np.ndarray]:
    """``(robot_obs, scene_obs)`` for a symbolic start state: CALVIN's neutral robot and :func:`scene_obs_for_state`."""
    return NEUTRAL_ROBOT_OBS.copy(), scene_obs_for_state(state, seed=seed, slots=slots)
