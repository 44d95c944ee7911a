"""CALVIN data loaders and the symbolic start state -> scene procedure (no simulator needed)."""

from __future__ import annotations

import hashlib
import math
from importlib import resources

import numpy as np
import pytest

from envs import (
    NEUTRAL_ROBOT_OBS,
    SYMBOLIC_KEYS,
    calvin_state_seed,
    fnv1_32,
    load_eval_sequences,
    load_start_states,
    load_symbolic_tasks,
    scene_obs_for_state,
    start_obs_for_state,
    task_instructions,
    task_names,
)
from envs.calvin_states import BLOCK_YAW_RANGE, CALVIN_D_SLOTS

FIRST_CHAIN_STATE = {
    "led": 1,
    "lightbulb": 1,
    "slider": "left",
    "drawer": "open",
    "red_block": "slider_left",
    "blue_block": "table",
    "pink_block": "slider_right",
    "grasped": 0,
}


def test_fnv1_32_matches_calvins_pyhash_values():
    # Reference values of pyhash.fnv1_32 as CALVIN used it (docs/design.md section 6).
    assert fnv1_32("test") == 3910690890
    assert calvin_state_seed(FIRST_CHAIN_STATE) == 2138410836
    assert fnv1_32("") == 0
    assert fnv1_32("tesu") != fnv1_32("test")


def test_state_seed_ignores_key_order_but_not_values():
    reordered = dict(reversed(list(FIRST_CHAIN_STATE.items())))
    assert calvin_state_seed(reordered) == calvin_state_seed(FIRST_CHAIN_STATE)
    assert calvin_state_seed({**FIRST_CHAIN_STATE, "led": 0}) != calvin_state_seed(FIRST_CHAIN_STATE)


def test_eval_sequences_are_calvins_standard_chains():
    raw = resources.files("envs").joinpath("calvin_data", "eval_sequences.json").read_bytes()
    assert hashlib.md5(raw).hexdigest().startswith("dd9695b4")
    chains = load_eval_sequences()
    assert len(chains) == 1000
    assert chains[0][0] == FIRST_CHAIN_STATE
    names = set(task_names())
    for state, tasks in chains:
        assert tuple(state) == SYMBOLIC_KEYS
        assert len(tasks) == 5 and set(tasks) <= names
    starts = load_start_states()
    assert len(starts) == 192
    assert len({tuple(s.items()) for s in starts}) == 192
    chains[0][0]["led"] = 7  # callers get copies
    assert load_eval_sequences()[0][0]["led"] == 1


def test_task_table_and_instructions_cover_the_34_tasks():
    names = task_names()
    assert len(names) == 34 and len(set(names)) == 34
    table = load_symbolic_tasks()
    assert set(table["tasks"]) == set(names)
    validation = task_instructions("validation")
    training = task_instructions("training")
    assert set(validation) == set(training) == set(names)
    assert all(len(validation[name]) == 1 for name in names)
    assert all(len(training[name]) >= 1 for name in names)
    with pytest.raises(ValueError, match="split"):
        task_instructions("test")


@pytest.mark.parametrize("index", [0, 7, 50, 120, 191])
def test_scene_obs_follows_calvins_procedure(index):
    state = load_start_states()[index]
    scene_obs = scene_obs_for_state(state)
    assert scene_obs.shape == (24,)
    assert scene_obs[0] == (0.28 if state["slider"] == "left" else 0.0)
    assert scene_obs[1] == (0.22 if state["drawer"] == "open" else 0.0)
    assert scene_obs[2] == 0.0
    assert scene_obs[3] == (0.088 if state["lightbulb"] else 0.0)
    assert scene_obs[4] == state["lightbulb"] and scene_obs[5] == state["led"]
    table_slots = {tuple(np.round(slot, 6)) for slot in CALVIN_D_SLOTS.table}
    used_table_slots = []
    for offset, block in ((6, "red_block"), (12, "blue_block"), (18, "pink_block")):
        position = tuple(np.round(scene_obs[offset : offset + 3], 6))
        place = state[block]
        if place == "slider_left":
            assert position == tuple(np.round(CALVIN_D_SLOTS.shelf_left, 6))
        elif place == "slider_right":
            assert position == tuple(np.round(CALVIN_D_SLOTS.shelf_right, 6))
        else:
            assert position in table_slots
            used_table_slots.append(position)
        assert scene_obs[offset + 3] == scene_obs[offset + 4] == 0.0
        assert BLOCK_YAW_RANGE[0] <= scene_obs[offset + 5] <= BLOCK_YAW_RANGE[1]
    assert len(set(used_table_slots)) == len(used_table_slots)
    np.testing.assert_array_equal(scene_obs, scene_obs_for_state(dict(reversed(list(state.items())))))


def test_seed_changes_slot_order_and_yaws_only():
    state = FIRST_CHAIN_STATE
    default = scene_obs_for_state(state)
    np.testing.assert_array_equal(default, scene_obs_for_state(state, seed=calvin_state_seed(state)))
    others = [scene_obs_for_state(state, seed=seed) for seed in range(5)]
    assert any(not np.allclose(other[[11, 17, 23]], default[[11, 17, 23]]) for other in others)
    for other in others:
        np.testing.assert_array_equal(other[:6], default[:6])


def test_calvin_draw_order_red_then_blue_then_pink():
    # Two blocks on the table: with red on the table, red takes shuffled slot 0 and blue slot 1.
    state = {**FIRST_CHAIN_STATE, "red_block": "table", "blue_block": "table", "pink_block": "slider_left"}
    seed = calvin_state_seed(state)
    rng = np.random.RandomState(seed)
    slots = [np.array(s) for s in CALVIN_D_SLOTS.table]
    rng.shuffle(slots)
    yaws = [rng.uniform(*BLOCK_YAW_RANGE) for _ in range(3)]
    scene_obs = scene_obs_for_state(state)
    np.testing.assert_allclose(scene_obs[6:9], slots[0])
    np.testing.assert_allclose(scene_obs[12:15], slots[1])
    np.testing.assert_allclose(scene_obs[[11, 17, 23]], yaws)


def test_start_obs_uses_calvins_neutral_robot():
    robot_obs, scene_obs = start_obs_for_state(FIRST_CHAIN_STATE)
    np.testing.assert_array_equal(robot_obs, NEUTRAL_ROBOT_OBS)
    assert robot_obs[6] == pytest.approx(0.08, abs=1e-6) and robot_obs[14] == 1.0
    assert math.isclose(scene_obs[0], 0.28)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grasped": 1}, "grasped"),
        ({"red_block": "table", "blue_block": "table", "pink_block": "table"}, "at most two"),
        ({"red_block": "slider_right"}, "share"),
        ({"slider": "middle"}, "slider"),
        ({"led": 2}, "led"),
        ({"red_block": "stacked_top"}, "can place blocks only"),
    ],
)
def test_invalid_start_states_are_rejected_with_a_reason(change, message):
    with pytest.raises(ValueError, match=message):
        scene_obs_for_state({**FIRST_CHAIN_STATE, **change})


def test_missing_or_extra_keys_are_named():
    broken = dict(FIRST_CHAIN_STATE)
    del broken["drawer"]
    broken["door"] = "open"
    with pytest.raises(ValueError, match=r"missing \['drawer'\].*unexpected \['door'\]"):
        calvin_state_seed(broken)
