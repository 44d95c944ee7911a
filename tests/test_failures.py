"""The block-task failure breakdown: each label comes from the simulator's state in a real PlayTable
episode staged to fail that way (the scripted expert doing the wrong thing on purpose)."""

from __future__ import annotations

import numpy as np
import pytest

from envs import PlayTableEnv, TaskOracle
from envs.playtable.cameras import static_camera_sees
from eval.failures import FailureProbe, failure_breakdown, probe_factory, task_blocks
from policies.base import privileged_observation
from policies.experts import ScriptedExpert

# Red and blue on the table, pink in the slider: every lift below applies from here.
STATE = {
    "led": 0,
    "lightbulb": 0,
    "slider": "right",
    "drawer": "closed",
    "red_block": "table",
    "blue_block": "table",
    "pink_block": "slider_left",
    "grasped": 0,
}


@pytest.fixture(scope="module")
def env():
    with PlayTableEnv() as env:
        yield env


def run_expert(env, expert_task: str, probe: FailureProbe | None, steps: int, oracle_task: str | None = None):
    """Step the expert solving ``expert_task`` while ``probe`` watches; stop after ``steps`` or at the
    oracle's success of ``oracle_task``."""
    expert = ScriptedExpert(seed=0)
    expert.reset(0)
    start = env.get_info()
    oracle = TaskOracle()
    obs = env.get_obs() if hasattr(env, "get_obs") else None
    for _ in range(steps):
        obs, _, _, info = env.step(expert.step(privileged_observation(obs or {}, env, expert_task)))
        if probe is not None:
            probe.observe(info)
        if oracle_task and oracle.success(oracle_task, start, info):
            return True
    return False


def fresh(env, seed: int = 3):
    env.reset(STATE, seed=seed)
    for _ in range(5):
        env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    return env.get_info()


def test_targets_of_each_kind_of_block_task(env):
    start = fresh(env)
    assert task_blocks("lift_red_block_table", start) == {"block_red"}
    assert task_blocks("rotate_pink_block_left", start) == {"block_pink"}
    assert task_blocks("open_drawer", start) is None
    assert task_blocks("stack_block", start) == set()  # nothing held yet


def test_handling_another_block_is_a_wrong_block(env):
    start = fresh(env)
    probe = FailureProbe("lift_red_block_table", start, sees=static_camera_sees)
    assert run_expert(env, "lift_blue_block_table", probe, 300, oracle_task="lift_blue_block_table")
    assert probe.label() == "wrong_block"


def test_never_touching_anything_is_a_missed_grasp(env):
    start = fresh(env)
    probe = FailureProbe("lift_red_block_table", start, sees=static_camera_sees)
    for _ in range(30):
        _, _, _, info = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
        probe.observe(info)
    assert probe.label() == "grasp_missed"


def test_holding_the_block_when_time_runs_out_is_a_time_out_and_letting_go_a_drop(env):
    start = fresh(env)
    probe = FailureProbe("lift_red_block_table", start, sees=static_camera_sees)
    assert run_expert(env, "lift_red_block_table", probe, 300, oracle_task="lift_red_block_table")
    assert probe.label() == "time_out"  # had the task not been counted, it held the right block
    held = env.get_info()
    stack = FailureProbe("stack_block", held, sees=static_camera_sees)
    assert task_blocks("stack_block", held) == {"block_red"}
    for _ in range(40):  # open the gripper in the air: the block falls to the table
        _, _, _, info = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
        stack.observe(info)
    assert stack.label() == "block_dropped"


def test_driving_out_of_the_static_view_is_out_of_view(env):
    start = fresh(env)
    probe = FailureProbe("push_red_block_left", start, sees=static_camera_sees)
    for _ in range(80):  # up and away from the desk
        _, _, _, info = env.step(np.array([0, 1.0, 1.0, 0, 0, 0, 1.0]))
        probe.observe(info)
    assert not static_camera_sees(info["robot_info"]["tcp_pos"])
    assert probe.label() == "out_of_view"


def test_factory_covers_block_tasks_only_and_breakdown_counts(env):
    start = fresh(env)
    make = probe_factory("playtable")
    assert make("open_drawer", start) is None and isinstance(make("push_into_drawer", start), FailureProbe)
    breakdown = failure_breakdown([("lift_red_block_table", "wrong_block"), ("stack_block", "block_dropped")] * 2)
    assert breakdown["counts"] == {"wrong_block": 2, "block_dropped": 2}
    assert breakdown["per_task"]["stack_block"] == {"block_dropped": 2}
