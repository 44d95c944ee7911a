"""``emu3-vla eval gym`` against LeRobot's PushT (``gym_pusht/PushT-v0``, a dev dependency).

A tiny model is trained for 2 steps on a PushT dataset recorded in the real environment and made with
lerobot's ``LeRobotDataset.create`` (``observation.image`` 96x96, ``observation.state`` 2-d, ``action``
2-d in [0, 512], :func:`lerobot_made.make_pusht_dataset`), then evaluated in the environment by the
README's "Evaluating in a gymnasium environment" block, as written plus appended sizing flags. This is
plumbing, not competence: nothing here expects the policy to push the T anywhere; success is checked
through the environment's own ``info["is_success"]`` from a start state that is already solved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lerobot_made import PUSHT_TASK, code_blocks, make_pusht_dataset, readme_section, shell_commands

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "Evaluating in a gymnasium environment"
ENV = "gym_pusht/PushT-v0"
SIZING = {
    "train-vq": ["steps=2", "batch_size=4", "max_frames=40", "progress=false"],
    "train": ["steps=2", "batch_size=2", "checkpoint.every=2", "progress=false", "wandb.mode=disabled"],
    "eval": ["--episodes", "3", "--envs", "2", "--max-steps", "12", "--videos", "1", "--no-progress"],
}
# the agent away and the T on its goal (256, 256, pi/4): gym-pusht sets the angle after the position,
# turning the T about its centre of mass, so the position given is offset by what that turn moves it
SOLVED = [100, 100, 256 - 31.81980515, 256 - 13.18019485, np.pi / 4]

pytestmark = pytest.mark.timeout(600)


def cli() -> list[str]:
    script = Path(sys.executable).with_name("emu3-vla")
    return [str(script)] if script.exists() else [sys.executable, "-m", "emu3_vla.cli"]


def run(command: list[str], cwd: Path) -> str:
    assert command[0] == "emu3-vla", command
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run([*cli(), *command[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def readme_commands() -> list[list[str]]:
    (block,) = code_blocks(readme_section(README, SECTION), "bash")
    return shell_commands(block)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A user's folder with data/pusht (recorded in PushT) after the README's train-vq and train."""
    root = tmp_path_factory.mktemp("pusht")
    make_pusht_dataset(root / "data" / "pusht")
    for command in readme_commands():
        if command[1] in ("train-vq", "train"):
            run([*command, *SIZING[command[1]]], root)
    return root


@pytest.fixture
def env():
    from eval.gym_eval import import_env_package

    import_env_package(ENV)
    import gymnasium as gym

    e = gym.make(ENV, obs_type="pixels_agent_pos")
    yield e
    e.close()


def settings(out: Path, policy: str, **kw):
    from eval.gym_eval import GymEvalSettings

    values = {
        "env": ENV,
        "policy": policy,
        "out": out,
        "episodes": 2,
        "max_steps": 10,
        "envs": 2,
        "env_kwargs": {"obs_type": "pixels_agent_pos"},
        "instruction": PUSHT_TASK,
        "videos": 0,
        "progress": False,
        **kw,
    }
    return GymEvalSettings(**values)


# ------------------------------------------------------------------------------- the README block
def test_readme_block_trains_and_evaluates_in_pusht(trained):
    commands = readme_commands()
    assert [c[:2] for c in commands] == [["emu3-vla", "train-vq"], ["emu3-vla", "train"], ["emu3-vla", "eval"]]
    evaluate = commands[2]
    assert evaluate[2] == "gym" and evaluate[evaluate.index("--env") + 1] == ENV
    out = trained / evaluate[evaluate.index("--out") + 1]
    printed = run([*evaluate, *SIZING["eval"]], trained)
    assert f"{ENV}: success" in printed and "'image': 'pixels'" in printed

    results = json.loads((out / "results.json").read_text())
    assert results["kind"] == "gym" and results["env"] == ENV and results["num_episodes"] == 3
    assert results["observation_map"] == {"image": "pixels", "state": "agent_pos"}
    assert results["action_map"] == "absolute" and results["model_queries"] > 0
    episodes = results["episodes"]
    assert [e["episode"] for e in episodes] == [0, 1, 2]
    for e in episodes:
        assert e["task"] == PUSHT_TASK and isinstance(e["success"], bool) and 1 <= e["steps"] <= 12
        assert "coverage" in e["final_info"]
    assert len((out / "episodes.jsonl").read_text().splitlines()) == 3

    # the video: PushT's render beside the model's 96x96 view over the instruction, the outcome's border
    import av

    assert episodes[0]["video"] == "episode_0000.mp4" and episodes[1]["video"] is None
    with av.open(str(out / "videos" / "episode_0000.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    from eval.video import BAR, FAILURE, PANEL, SUCCESS, ChainVideo

    assert frames[0].shape == (PANEL + BAR, 2 * PANEL, 3)
    assert len(frames) == episodes[0]["steps"] + 1 + ChainVideo.MARK_FRAMES
    border = frames[-1][2, PANEL].astype(int)  # the top edge, middle column
    expected = SUCCESS if episodes[0]["success"] else FAILURE
    assert np.abs(border - np.asarray(expected)).max() < 40, border

    report = (out / "report.html").read_text()
    assert "episode 0" in report and "data:video/mp4;base64," in report


def test_the_model_reaches_the_environment_through_the_maps(trained, env):
    """The checkpoint's inputs map onto PushT's observation by LeRobot's convention; its 2-d actions
    pass into PushT's Box; a wrong map or dimension is refused before any episode."""
    from eval.gym_eval import ActionMap, GymEvalSettings, build_policy, observation_map

    policy, model = build_policy(
        GymEvalSettings(env=ENV, policy=str(trained / "runs/pusht_policy/model"), out=trained), env.action_space
    )
    assert model.inputs == {"image": "observation.image", "state": "observation.state"}
    assert model.action_dim == 2
    assert policy.vla.action_tokenizer.gripper_dims() == ()  # PushT's 2-d target: nothing binarised
    obs, _ = env.reset(seed=0)
    assert observation_map(obs, model) == {"image": "pixels", "state": "agent_pos"}
    assert observation_map(obs, model, {"pixels": "image"}) == {"image": "pixels", "state": "agent_pos"}
    with pytest.raises(ValueError, match="this model reads"):
        observation_map(obs, model, {"pixels": "front"})
    with pytest.raises(ValueError, match="no environment observation for the model's image"):
        observation_map({"agent_pos": obs["agent_pos"]}, model)
    ActionMap.parse("absolute").check(env.action_space, model)
    import gymnasium as gym

    with pytest.raises(ValueError, match="2-d but the environment"):
        ActionMap().check(gym.spaces.Box(-1, 1, (7,)), model)


def test_action_maps():
    import gymnasium as gym

    from eval.gym_eval import ActionMap, ModelSide

    model = ModelSide(
        {"image": "observation.image"}, {"image": "observation.image"}, 2, np.array([-1.0, -1.0]), np.ones(2)
    )
    space = gym.spaces.Box(0, 512, (2,), np.float32)
    a = np.array([[-1.0, 0.0], [0.5, 2.0]])
    np.testing.assert_allclose(ActionMap.parse("absolute")(a, [{}, {}], space, model), [[0, 0], [0.5, 2.0]])
    np.testing.assert_allclose(ActionMap.parse("rescale")(a, [{}, {}], space, model), [[0, 256], [384, 512]])
    obs = [{"agent_pos": np.array([100.0, 510.0])}] * 2
    np.testing.assert_allclose(ActionMap.parse("relative:agent_pos")(a, obs, space, model), [[99, 510], [100.5, 512]])
    for bad in ("relative", "delta", "absolute:x"):
        with pytest.raises(ValueError):
            ActionMap.parse(bad)


# ------------------------------------------------------------------------------- success and policies
def test_success_comes_from_the_environment(tmp_path):
    """From a solved start state PushT reports info['is_success'] on the first step: every episode
    succeeds at step 1. From random start states a random policy does not within 3 steps."""
    from eval.gym_eval import evaluate_gym

    solved = evaluate_gym(settings(tmp_path / "solved", "random", reset_options={"reset_to_state": SOLVED}))
    assert [(e["success"], e["steps"]) for e in solved["episodes"]] == [(True, 1), (True, 1)]
    assert solved["success_rate"] == 1.0 and solved["episodes"][0]["final_info"]["is_success"] is True
    unsolved = evaluate_gym(settings(tmp_path / "random", "random", max_steps=3))
    assert [(e["success"], e["steps"]) for e in unsolved["episodes"]] == [(False, 3), (False, 3)]
    threshold = evaluate_gym(settings(tmp_path / "threshold", "random", max_steps=3, success_reward=0.0))
    assert [(e["success"], e["steps"]) for e in threshold["episodes"]] == [(True, 1), (True, 1)]


def test_the_cli_runs_a_random_policy_and_writes_the_report(tmp_path, capsys):
    from emu3_vla.cli import main

    out = tmp_path / "cli"
    argv = ["eval", "gym", "--env", ENV, "--env-arg", "obs_type=pixels_agent_pos", "--policy", "random"]
    argv += ["--instruction", PUSHT_TASK, "--episodes", "3", "--envs", "2", "--max-steps", "4", "--out", str(out)]
    assert main([*argv, "--videos", "2", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"{ENV}: success 0/3" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["env_kwargs"] == {"obs_type": "pixels_agent_pos"} and results["envs"] == 2
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["episode_0000.mp4", "episode_0001.mp4"]
    assert (out / "report.html").is_file()
    # PushT names no task: without --instruction the command says so
    assert main(["eval", "gym", "--env", ENV, "--policy", "random", "--out", str(tmp_path / "x")]) == 1
    assert "--instruction" in capsys.readouterr().err


def test_a_served_policy_gives_the_same_episodes(trained, tmp_path):
    """remote://host:port: the same model behind `emu3-vla serve` plays the same episodes as the local one."""
    from eval.gym_eval import evaluate_gym
    from policies.server import PolicyServer, ServerConfig, ServerThread, load_policy

    checkpoint = trained / "runs/pusht_policy/model"
    local = evaluate_gym(settings(tmp_path / "local", str(checkpoint)))
    served = load_policy(checkpoint)
    with ServerThread(PolicyServer(served, ServerConfig(port=0))) as thread:
        remote = evaluate_gym(settings(tmp_path / "remote", f"remote://127.0.0.1:{thread.port}"))
    keys = ("episode", "success", "steps", "return")
    assert [{k: e[k] for k in keys} for e in remote["episodes"]] == [{k: e[k] for k in keys} for e in local["episodes"]]
    assert remote["observation_map"] == local["observation_map"] == {"image": "pixels", "state": "agent_pos"}
