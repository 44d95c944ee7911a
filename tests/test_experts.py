"""Scripted experts: they solve the tasks (checked by CALVIN's oracle), act smoothly, hold still when
done, are reproducible per seed, and refuse observations without the privileged keys."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from envs import PlayTableEnv, TaskOracle, task_names
from eval.collection.jobs import task_job
from eval.collection.pool import JobRunner, RunSettings
from policies.base import Policy, privileged_observation
from policies.experts import EXPERT_TASKS, MissingPrivilegedInfo, ScriptedExpert
from policies.experts.geometry import YAW_RANGE, grasp_yaw, unwrapped_yaw, wrap

# One task per kind of skill: furniture (drawer, door, button, switch), grasping from the table, the
# shelf and the drawer, placing (after a lift), stacking, turning, pushing, pushing off the desk.
REPRESENTATIVE = [
    "open_drawer",
    "move_slider_left",
    "turn_on_led",
    "turn_off_lightbulb",
    "lift_blue_block_slider",
    "lift_pink_block_drawer",
    "place_in_drawer",
    "stack_block",
    "rotate_red_block_right",
    "push_pink_block_left",
    "push_into_drawer",
]


@pytest.fixture(scope="module")
def runner():
    runner = JobRunner(RunSettings(record_frames=False, finish_last=True))
    yield runner
    runner.close()


def test_there_is_an_expert_for_each_of_the_34_tasks():
    assert set(EXPERT_TASKS) == set(task_names()) and len(EXPERT_TASKS) == 34


def test_expert_implements_the_policy_protocol_as_a_privileged_policy():
    expert = ScriptedExpert()
    assert isinstance(expert, Policy)
    assert ScriptedExpert.needs_info is True


@pytest.mark.parametrize("task", REPRESENTATIVE)
def test_expert_solves_representative_tasks(runner, task):
    # Two start states per task, drawn as the benchmark draws them; setup subtasks (a lift before
    # place_in_drawer / stack_block) must succeed too.
    for index in range(2):
        result = runner(task_job(task, index, seed=123, allowed={task}))
        outcomes = [(o.task, o.success) for o in result.outcomes]
        assert all(ok for _, ok in outcomes) and outcomes[-1][0] == task, outcomes
        episode = result.episodes[-1]
        assert episode.task == task and episode.success_step <= 360


def test_actions_are_smooth_and_the_gripper_switches_only_to_grasp_or_release(runner):
    for task in ("lift_red_block_table", "rotate_blue_block_left", "close_drawer"):
        episode = runner(task_job(task, 0, seed=5, allowed={task})).episodes[-1]
        actions = episode.actions
        assert np.all(np.abs(actions[:, :6]) <= 1.0) and set(np.unique(actions[:, 6])) <= {-1.0, 1.0}
        steps = np.abs(np.diff(actions[:, :6], axis=0))
        # Trapezoidal speed profiles: no step-to-step jumps (a dithering or bang-bang expert has ~1).
        assert steps[:, :3].max() <= 0.2, (task, steps[:, :3].max())
        assert steps[:, 3:5].max() <= 0.25 and steps[:, 5].max() <= 0.3, task
        switches = int(np.count_nonzero(np.diff(actions[:, 6])))
        assert switches <= {"lift_red_block_table": 1, "rotate_blue_block_left": 2, "close_drawer": 1}[task]


def test_expert_holds_still_once_its_plan_is_done():
    with PlayTableEnv() as env:
        expert = ScriptedExpert(seed=1)
        job = task_job("turn_on_led", 0, seed=9)
        obs = env.reset(job.state, seed=job.scene_seed)
        actions = []
        for _ in range(200):
            action = expert.step(privileged_observation(obs, env, "turn_on_led"))
            actions.append(action)
            obs, *_ = env.step(action)
        assert expert.is_done(0)
        tail = np.array(actions[-20:])
        assert np.all(tail[:, :6] == 0) and np.all(tail[:, 6] == tail[0, 6])
        before = env.get_info()["robot_info"]["tcp_pos"]
        for _ in range(10):
            obs, *_ = env.step(expert.step(privileged_observation(obs, env, "turn_on_led")))
        assert np.allclose(env.get_info()["robot_info"]["tcp_pos"], before, atol=1e-3)


def test_same_seed_same_actions_and_other_seed_other_waypoints(runner):
    job = task_job("lift_red_block_table", 3, seed=0)
    first = runner(job).episodes[-1].actions
    runner(task_job("push_into_drawer", 0, seed=0))  # the runner's env and expert go through another job
    again = runner(job).episodes[-1].actions
    np.testing.assert_array_equal(first, again)
    other = runner(dataclasses.replace(job, expert_seed=77)).episodes[-1].actions
    assert not (len(other) == len(first) and np.allclose(other, first))


def test_environments_are_independent_in_one_batched_expert():
    """act() on two environments gives each the actions it gets alone (per-index plans and seeds)."""
    alone = {}
    for task in ("open_drawer", "turn_on_led"):
        with PlayTableEnv() as env:
            expert = ScriptedExpert()
            expert.reseed(0, 11)
            obs = env.reset(task_job(task, 0, seed=1).state, seed=4)
            alone[task] = []
            for _ in range(40):
                action = expert.step(privileged_observation(obs, env, task))
                alone[task].append(action)
                obs, *_ = env.step(action)
    with PlayTableEnv() as a, PlayTableEnv() as b:
        expert = ScriptedExpert()
        for index in (3, 8):
            expert.reseed(index, 11)
        obs_a = a.reset(task_job("open_drawer", 0, seed=1).state, seed=4)
        obs_b = b.reset(task_job("turn_on_led", 0, seed=1).state, seed=4)
        for t in range(40):
            batch = expert.act(
                [privileged_observation(obs_a, a, "open_drawer"), privileged_observation(obs_b, b, "turn_on_led")],
                ["", ""],
                env_ids=[3, 8],
            )
            np.testing.assert_array_equal(batch[0], alone["open_drawer"][t])
            np.testing.assert_array_equal(batch[1], alone["turn_on_led"][t])
            obs_a, *_ = a.step(batch[0])
            obs_b, *_ = b.step(batch[1])


def test_noise_perturbs_free_moves_only_and_the_task_still_succeeds():
    clean = JobRunner(RunSettings(record_frames=False, noise=0.0))
    noisy = JobRunner(RunSettings(record_frames=False, noise=0.2))
    try:
        job = task_job("lift_blue_block_table", 2, seed=3)
        a = clean(job).episodes[-1]
        b = noisy(job).episodes[-1]
        assert b.success_step > 0 and not np.allclose(a.actions[:10, :3], b.actions[:10, :3])
        # The grasp itself is never noisy: the gripper closes in both, exactly once.
        assert int(np.count_nonzero(np.diff(b.actions[:, 6]))) == 1
    finally:
        clean.close()
        noisy.close()


def test_noisy_collection_records_the_experts_correction_not_the_noise():
    """DART labels: the arm follows the noisy actions either way (same states), but ``labels="clean"``
    records the expert's noise-free action from each state, ``"executed"`` the noisy one sent."""
    job = task_job("open_drawer", 2, seed=5)
    runs = {}
    for labels in ("clean", "executed"):
        runner = JobRunner(RunSettings(record_frames=False, noise=0.3, labels=labels))
        try:
            runs[labels] = runner(job).episodes[-1]
        finally:
            runner.close()
    clean, executed = runs["clean"], runs["executed"]
    np.testing.assert_array_equal(clean.robot_obs, executed.robot_obs)
    moved = np.abs(clean.actions[:, :6] - executed.actions[:, :6]).max(axis=1) > 1e-9
    assert 0 < moved.sum() < len(moved)  # free moves differ; contact moves and holds are never noisy
    np.testing.assert_array_equal(clean.actions[:, 6], executed.actions[:, 6])


def test_label_is_the_action_itself_without_noise_and_needs_a_step():
    expert = ScriptedExpert(noise=0.0)
    with pytest.raises(RuntimeError, match="no label"):
        expert.label(0)
    with PlayTableEnv() as env:
        obs = env.reset()
        for _ in range(5):
            action = expert.step(privileged_observation(obs, env, "open_drawer"))
            np.testing.assert_array_equal(expert.label(0), action)
            obs, *_ = env.step(action)


def test_observation_without_privileged_keys_is_refused_with_a_hint():
    with PlayTableEnv() as env:
        obs = env.reset()
        with pytest.raises(MissingPrivilegedInfo, match="needs_info"):
            ScriptedExpert().step(obs)


def test_unknown_task_names_the_known_ones():
    with PlayTableEnv() as env:
        obs = env.reset()
        with pytest.raises(ValueError, match="open_drawer"):
            ScriptedExpert().step(privileged_observation(obs, env, "juggle_blocks"))


def test_a_failed_plan_holds_still_instead_of_flailing():
    """place_in_drawer without a held block is impossible: the expert does nothing, and the oracle agrees."""
    with PlayTableEnv() as env:
        obs = env.reset()
        start = env.get_info()
        expert = ScriptedExpert()
        for _ in range(5):
            action = expert.step(privileged_observation(obs, env, "place_in_drawer"))
            assert np.all(action[:6] == 0)
            obs, _, _, info = env.step(action)
        assert expert.is_done(0) and not TaskOracle().success("place_in_drawer", start, info)


@pytest.mark.parametrize("turn", [0.0, 1.3, -1.3])
def test_grasp_yaw_grips_across_the_block_and_keeps_the_wrist_in_range(turn):
    for block_yaw in np.linspace(-math.pi, math.pi, 25):
        yaw = grasp_yaw(block_yaw, turn)
        assert abs(wrap(2 * (yaw - block_yaw))) < 1e-9  # equal up to half turns
        assert YAW_RANGE[0] <= min(yaw, yaw + turn) and max(yaw, yaw + turn) <= YAW_RANGE[1]


def test_unwrapped_yaw_follows_the_wrist_across_the_wrap_around():
    # joint 7 at -1.66 means the gripper turned past +pi: the euler yaw reads -2.41, the wrist says 3.87.
    assert unwrapped_yaw(-2.41, -1.66) == pytest.approx(-2.41 + 2 * math.pi)
    assert unwrapped_yaw(1.5, 0.55) == pytest.approx(1.5)
