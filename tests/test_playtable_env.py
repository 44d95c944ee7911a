"""PlayTableEnv: observation format, actions, resets, laziness, determinism, independence, gymnasium."""

from __future__ import annotations

import ast
import copy
import pickle
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import (
    LAYOUTS,
    NEUTRAL_ROBOT_OBS,
    LazyImages,
    PlayTableEnv,
    StaleObservationError,
    load_start_states,
    scene_obs_for_state,
    symbolic_state,
)

HOLD_OPEN = np.array([0, 0, 0, 0, 0, 0, 1.0])


@pytest.fixture(scope="module")
def env():
    with PlayTableEnv() as playtable:
        yield playtable


def test_observation_has_calvins_layout_and_dtypes(env):
    obs = env.reset(load_start_states()[3])
    assert set(obs) == {"rgb_obs", "robot_obs", "scene_obs"}
    assert set(obs["rgb_obs"]) == {"rgb_static", "rgb_gripper"}
    static, gripper = obs["rgb_obs"]["rgb_static"], obs["rgb_obs"]["rgb_gripper"]
    assert static.shape == (200, 200, 3) and static.dtype == np.uint8
    assert gripper.shape == (84, 84, 3) and gripper.dtype == np.uint8
    assert static.std() > 10 and gripper.std() > 5  # real pictures, not blank frames
    robot_obs, scene_obs = obs["robot_obs"], obs["scene_obs"]
    assert robot_obs.shape == (15,) and robot_obs.dtype == np.float64
    assert scene_obs.shape == (24,) and scene_obs.dtype == np.float64
    assert 0.0 <= robot_obs[6] <= 0.081 and robot_obs[14] in (-1.0, 1.0)
    assert np.all(np.abs(robot_obs[3:6]) <= np.pi + 1e-6)
    assert scene_obs[4] in (0.0, 1.0) and scene_obs[5] in (0.0, 1.0)
    # CALVIN's neutral joints give CALVIN's neutral tcp pose (same tcp definition).
    np.testing.assert_allclose(robot_obs[:6], NEUTRAL_ROBOT_OBS[:6], atol=2e-3)
    np.testing.assert_allclose(robot_obs[7:14], NEUTRAL_ROBOT_OBS[7:14], atol=2e-3)


def test_reset_with_arrays_sets_that_exact_state(env):
    scene_obs = scene_obs_for_state(load_start_states()[10])
    scene_obs[0], scene_obs[1] = 0.2, 0.1
    robot_obs = NEUTRAL_ROBOT_OBS.copy()
    robot_obs[7] += 0.2
    obs = env.reset(robot_obs=robot_obs, scene_obs=scene_obs)
    np.testing.assert_allclose(obs["scene_obs"][:6], scene_obs[:6], atol=1e-3)
    np.testing.assert_allclose(obs["scene_obs"][6:], scene_obs[6:], atol=5e-3)  # blocks drop 1 mm onto surfaces
    np.testing.assert_allclose(obs["robot_obs"][7:14], robot_obs[7:14], atol=1e-3)
    with pytest.raises(ValueError, match=r"scene_obs must have shape \(24,\)"):
        env.reset(scene_obs=np.zeros(23))
    with pytest.raises(ValueError, match="NaN"):
        env.reset(robot_obs=np.full(15, np.nan))
    with pytest.raises(ValueError, match="not both"):
        env.reset(load_start_states()[0], scene_obs=scene_obs)


@pytest.mark.parametrize("index", range(0, 192, 10))
def test_reset_from_symbolic_state_reproduces_its_facts(env, index):
    state = load_start_states()[index]
    env.reset(state)
    for _ in range(3):
        env.step(HOLD_OPEN)
    assert symbolic_state(env.get_info()) == state


def test_relative_action_moves_the_tcp_like_calvin(env):
    env.reset()
    start = env.get_obs()["robot_obs"][:3].copy()
    for _ in range(10):
        obs, reward, done, info = env.step(np.array([1.0, 0, 0, 0, 0, 0, 1]))
    assert reward == 0.0 and done is False and "scene_info" in info
    for _ in range(15):
        obs, *_ = env.step(HOLD_OPEN)
    moved = obs["robot_obs"][:3] - start
    assert moved[0] == pytest.approx(0.20, abs=0.01)  # 10 steps x 0.02 m
    assert abs(moved[1]) < 0.01 and abs(moved[2]) < 0.01
    # Out-of-range values are clipped to [-1, 1].
    env.reset()
    for _ in range(5):
        obs, *_ = env.step(np.array([0, 0, 5.0, 0, 0, 0, 1]))
    for _ in range(15):
        obs, *_ = env.step(HOLD_OPEN)
    assert obs["robot_obs"][2] - start[2] == pytest.approx(0.10, abs=0.01)
    # A zero action holds still.
    before = obs["robot_obs"].copy()
    for _ in range(10):
        obs, *_ = env.step(HOLD_OPEN)
    np.testing.assert_allclose(obs["robot_obs"][:6], before[:6], atol=1e-3)


def test_relative_target_cannot_wind_up_beyond_the_workspace(env):
    env.reset()
    for _ in range(60):
        _, _, _, info = env.step(np.array([0, -1.0, -1.0, 0, 0, 0, 1]))
    target = info["robot_info"]["target_pos"]
    assert target[2] == pytest.approx(0.28) and target[1] == pytest.approx(-0.75)
    assert target[2] > NEUTRAL_ROBOT_OBS[2] - 60 * 0.02


def test_gripper_closes_and_opens(env):
    env.reset()
    for _ in range(10):
        obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, -1.0]))
    assert obs["robot_obs"][6] < 0.005 and obs["robot_obs"][14] == -1.0
    for _ in range(15):
        obs, *_ = env.step(HOLD_OPEN)
    assert obs["robot_obs"][6] > 0.075 and obs["robot_obs"][14] == 1.0


def test_absolute_actions_reach_the_pose(env):
    env.reset()
    target = np.array([0.1, -0.15, 0.55, np.pi, 0.0, np.pi / 2])
    for _ in range(40):
        obs, *_ = env.step((target[:3], target[3:], 1))
    np.testing.assert_allclose(obs["robot_obs"][:3], target[:3], atol=3e-3)
    with PlayTableEnv(action_mode="absolute") as absolute:
        for _ in range(40):
            obs, *_ = absolute.step(np.concatenate([target, [1.0]]))
        np.testing.assert_allclose(obs["robot_obs"][:3], target[:3], atol=3e-3)


def test_bad_actions_are_rejected(env):
    with pytest.raises(ValueError, match=r"relative action must have shape \(7,\)"):
        env.step(np.zeros(6))
    with pytest.raises(ValueError, match="NaN"):
        env.step(np.array([0, 0, np.nan, 0, 0, 0, 1]))
    with pytest.raises(ValueError, match="action_mode"):
        PlayTableEnv(action_mode="joint")
    with pytest.raises(ValueError, match="variant"):
        PlayTableEnv(variant="E")


def test_images_render_only_when_read_and_once_per_step(env):
    obs = env.reset()
    assert not obs["rgb_obs"].is_rendered("rgb_static")
    first = obs["rgb_obs"]["rgb_static"]
    assert obs["rgb_obs"].is_rendered("rgb_static") and not obs["rgb_obs"].is_rendered("rgb_gripper")
    assert obs["rgb_obs"]["rgb_static"] is first
    assert env.render() is first  # a video frame of the same step reuses the render
    stale = obs
    next_obs, *_ = env.step(HOLD_OPEN)
    assert stale["rgb_obs"]["rgb_static"] is first  # what was read stays readable
    with pytest.raises(StaleObservationError):
        stale["rgb_obs"]["rgb_gripper"]
    unpacked = {**env.get_obs()["rgb_obs"]}
    assert all(isinstance(image, np.ndarray) for image in unpacked.values())
    kept = next_obs["rgb_obs"].materialize()
    env.step(HOLD_OPEN)
    assert kept["rgb_gripper"].shape == (84, 84, 3)
    assert isinstance(next_obs["rgb_obs"], dict)
    for copied in (copy.deepcopy(next_obs)["rgb_obs"], pickle.loads(pickle.dumps(next_obs))["rgb_obs"]):
        assert isinstance(copied, LazyImages) and copied == kept  # rendered copies, readable forever
        assert all(copied.is_rendered(name) for name in copied)


def test_eager_images_are_rendered_in_step():
    with PlayTableEnv(lazy_images=False) as eager:
        obs, *_ = eager.step(HOLD_OPEN)
        assert obs["rgb_obs"].is_rendered("rgb_static") and obs["rgb_obs"].is_rendered("rgb_gripper")


def _rollout(playtable: PlayTableEnv, state, seed: int, steps: int = 25):
    playtable.reset(state, seed=seed)
    rng = np.random.RandomState(seed)
    frames = []
    for _ in range(steps):
        action = rng.uniform(-1, 1, 7)
        action[2] = -abs(action[2]) * 0.5
        obs, *_ = playtable.step(action)
        frames.append(np.concatenate([obs["robot_obs"], obs["scene_obs"]]))
    return np.array(frames), obs["rgb_obs"]["rgb_static"].copy()


def test_same_seed_same_rollout_and_different_seed_different_scene(env):
    state = load_start_states()[42]
    a_states, a_image = _rollout(env, state, seed=7)
    b_states, b_image = _rollout(env, state, seed=7)
    np.testing.assert_array_equal(a_states, b_states)
    np.testing.assert_array_equal(a_image, b_image)
    c_states, _ = _rollout(env, state, seed=8)
    assert not np.allclose(a_states[0, 15 + 6 :], c_states[0, 15 + 6 :])
    # Without a seed, a state's scene is CALVIN's function of the state.
    first = env.reset(state)["scene_obs"]
    second = env.reset(state)["scene_obs"]
    np.testing.assert_array_equal(first, second)


def test_two_envs_in_one_process_stay_independent(env):
    state = load_start_states()[17]
    with PlayTableEnv() as other:
        reference, reference_image = _rollout(other, state, seed=3)
        env.reset(load_start_states()[90])
        other.reset(state, seed=3)
        rng = np.random.RandomState(3)
        busy = np.random.RandomState(99)
        frames = []
        for _ in range(25):
            action = rng.uniform(-1, 1, 7)
            action[2] = -abs(action[2]) * 0.5
            env.step(busy.uniform(-1, 1, 7))  # interleaved work on the other env
            obs, *_ = other.step(action)
            env.get_obs()["rgb_obs"]["rgb_gripper"]
            frames.append(np.concatenate([obs["robot_obs"], obs["scene_obs"]]))
        np.testing.assert_array_equal(np.array(frames), reference)
        np.testing.assert_array_equal(obs["rgb_obs"]["rgb_static"], reference_image)


def test_every_pybullet_call_names_its_client():
    """Several environments share one process only if no call falls back to pybullet's default client."""
    stateless = {
        "getQuaternionFromEuler",
        "getEulerFromQuaternion",
        "getMatrixFromQuaternion",
        "computeViewMatrix",
        "computeProjectionMatrixFOV",
        "connect",
    }
    missing = []
    for path in Path(envs.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "p"
                and node.func.attr not in stateless
                and not any(keyword.arg == "physicsClientId" for keyword in node.keywords)
            ):
                missing.append(f"{path.name}:{node.lineno} p.{node.func.attr}")
    assert not missing, f"pybullet calls without physicsClientId: {missing}"


def test_info_has_what_the_oracle_and_experts_need(env):
    env.reset(load_start_states()[0])
    info = env.get_info()
    robot = info["robot_info"]
    for key in ("uid", "tcp_pos", "tcp_orn", "gripper_opening_width", "arm_joint_states", "contacts", "target_pos"):
        assert key in robot
    scene = info["scene_info"]
    assert set(scene["movable_objects"]) == {"block_red", "block_blue", "block_pink"}
    block = scene["movable_objects"]["block_blue"]
    assert block["touching"] == frozenset({"table"}) and block["grasped"] is False
    assert set(scene["doors"]) == {"base__slide", "base__drawer"}
    assert scene["lights"]["led"]["logical_state"] == 1
    assert scene["fixed_objects"]["table"]["links"]["plank_link"] >= 0
    landmarks = env.get_landmarks()
    assert set(landmarks) == {"slider_handle", "drawer_handle", "drawer_floor", "button", "switch"}
    # The drawer handle moves with the drawer (this state has the drawer open by 0.22 m).
    env.reset({**load_start_states()[0], "drawer": "closed"})
    assert env.get_landmarks()["drawer_handle"][1] - landmarks["drawer_handle"][1] == pytest.approx(0.22, abs=2e-3)


@pytest.mark.parametrize("variant", sorted(LAYOUTS))
def test_every_variant_builds_and_resets_to_calvin_states(variant):
    with PlayTableEnv(variant=variant) as playtable:
        state = load_start_states()[5]
        playtable.reset(state)
        for _ in range(3):
            playtable.step(HOLD_OPEN)
        assert playtable.variant == variant
        assert symbolic_state(playtable.get_info()) == state


def test_variants_differ_in_furniture_colours_and_block_sizes():
    layouts = list(LAYOUTS.values())
    assert len({layout.button_xy for layout in layouts}) == 4
    assert len({layout.drawer_x for layout in layouts}) == 4
    assert len({layout.desk_rgba for layout in layouts}) == 4
    assert len({(layout.switch_x, layout.cabinet_shift) for layout in layouts}) == 4
    assert len({tuple(sorted(layout.block_sizes.items())) for layout in layouts}) == 4
    assert PlayTableEnv.__init__.__defaults__[0] == "D"


def test_egl_renderer_loads_or_falls_back_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with PlayTableEnv(renderer="egl") as playtable:
            image = playtable.render()
            backend = playtable.renderer.backend
    assert image.shape == (200, 200, 3)
    if backend == "tiny":
        assert any("eglRenderer" in str(w.message) for w in caught)
    else:
        assert backend == "egl"
    with pytest.raises(ValueError, match="renderer backend"):
        PlayTableEnv(renderer="vulkan")


def test_gymnasium_env_checker_passes():
    gym_env = gymnasium.make(envs.ENV_ID, render_mode="rgb_array")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(gym_env.unwrapped)
        assert not [str(w.message) for w in caught if "gymnasium" in str(w.filename) or "WARN" in str(w.message)]
    finally:
        gym_env.close()


def test_gymnasium_registration_and_api():
    assert envs.ENV_ID in gymnasium.registry
    gym_env = gymnasium.make(envs.ENV_ID, render_mode="rgb_array")
    try:
        obs, info = gym_env.reset(seed=0)
        assert gym_env.observation_space.contains(obs)
        assert "scene_info" in info and "is_success" not in info
        obs, reward, terminated, truncated, info = gym_env.step(gym_env.action_space.sample())
        assert gym_env.observation_space.contains(obs)
        assert (reward, terminated, truncated) == (0.0, False, False)
        frame = gym_env.render()
        assert frame.shape == (200, 200, 3)
        start = load_start_states()[1]
        obs, info = gym_env.reset(options={"state": start, "task": "turn_off_led"})
        assert info["is_success"] is False and info["task"] == "turn_off_led"
        with pytest.raises(ValueError, match="unknown reset options"):
            gym_env.reset(options={"colour": "red"})
    finally:
        gym_env.close()
