"""Datasets made the way a LeRobot user makes them: ``LeRobotDataset.create`` / ``add_frame`` /
``save_episode`` / ``finalize`` with lerobot's default video encoder, nothing of ours involved.

* :func:`make_own_dataset`: the issue's dataset of someone else's robot: two video cameras of
  different sizes under non-CALVIN names (``observation.images.front`` 96x96,
  ``observation.images.wrist`` 64x64), an 8-d ``observation.state``, a 6-d ``action`` (5
  continuous dims and a -1/+1 gripper), 15 fps.
* :func:`make_pusht_dataset`: LeRobot's PushT features (``observation.image`` 96x96,
  ``observation.state`` 2-d, ``action`` 2-d in [0, 512], 10 fps), recorded in the real
  ``gym_pusht/PushT-v0`` environment with a scripted pusher.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np

OWN_TASKS = ["pick up the red cube", "put the cube in the bowl"]
OWN_FEATURES = {
    "observation.images.front": {"dtype": "video", "shape": (96, 96, 3), "names": ["height", "width", "channels"]},
    "observation.images.wrist": {"dtype": "video", "shape": (64, 64, 3), "names": ["height", "width", "channels"]},
    "observation.state": {"dtype": "float32", "shape": (8,), "names": None},
    "action": {"dtype": "float32", "shape": (6,), "names": None},
}
OWN_FPS = 15
OWN_ACTION_DIM = 6
OWN_STATE_DIM = 8

PUSHT_TASK = "Push the T-shaped block onto the T-shaped target."
PUSHT_FEATURES = {
    "observation.image": {"dtype": "video", "shape": (96, 96, 3), "names": ["height", "width", "channels"]},
    "observation.state": {"dtype": "float32", "shape": (2,), "names": ["x", "y"]},
    "action": {"dtype": "float32", "shape": (2,), "names": ["x", "y"]},
}
PUSHT_FPS = 10


def make_own_dataset(root: Path, episodes: int = 3, length: int = 30, seed: int = 0) -> Path:
    """The issue's dataset (see the module docstring): a coloured square the 'arm' moves, smooth actions."""
    from lerobot.datasets import LeRobotDataset

    rng = np.random.default_rng(seed)
    ds = LeRobotDataset.create("me/my_robot", fps=OWN_FPS, features=OWN_FEATURES, root=root)
    t = np.arange(length)[:, None]
    for ep in range(episodes):
        phase = rng.uniform(0, 2 * np.pi, OWN_ACTION_DIM - 1)
        arm = 0.5 * np.sin(t / 6.0 + phase)
        grip = np.where(t < length // 2, 1.0, -1.0)
        actions = np.concatenate([arm, grip], axis=1).astype(np.float32)
        colour = rng.integers(40, 200, 3)
        for i in range(length):
            front = np.zeros((96, 96, 3), np.uint8)
            front[:] = colour
            x = 8 + (i * 2) % 72
            front[40:56, x : x + 16] = 255
            wrist = np.zeros((64, 64, 3), np.uint8)
            wrist[:, :, 1] = (i * 8) % 256
            wrist[: 32 if grip[i, 0] > 0 else 16] = 200
            state = np.concatenate([actions[i], [np.cos(i / 5), np.sin(i / 5)]]).astype(np.float32)
            ds.add_frame(
                {
                    "observation.images.front": front,
                    "observation.images.wrist": wrist,
                    "observation.state": state,
                    "action": actions[i],
                    "task": OWN_TASKS[ep % len(OWN_TASKS)],
                }
            )
        ds.save_episode()
    ds.finalize()
    return root


def make_pusht_dataset(root: Path, episodes: int = 3, length: int = 30, seed: int = 0) -> Path:
    """PushT demonstrations recorded in ``gym_pusht/PushT-v0`` (``obs_type="pixels_agent_pos"``): the
    agent heads for a few random targets in [0, 512]^2 (absolute targets, PushT's action)."""
    import os

    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import gym_pusht  # noqa: F401  (registers gym_pusht/PushT-v0)
    import gymnasium as gym
    from lerobot.datasets import LeRobotDataset

    rng = np.random.default_rng(seed)
    ds = LeRobotDataset.create("me/pusht", fps=PUSHT_FPS, features=PUSHT_FEATURES, root=root)
    env = gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos")
    try:
        for ep in range(episodes):
            obs, _ = env.reset(seed=seed + ep)
            targets = rng.uniform(100, 412, size=(3, 2))
            for i in range(length):
                goal = targets[min(i * len(targets) // length, len(targets) - 1)]
                pos = np.asarray(obs["agent_pos"], dtype=np.float64)
                action = np.clip(pos + np.clip(goal - pos, -40, 40), 0, 512).astype(np.float32)
                ds.add_frame(
                    {
                        "observation.image": np.asarray(obs["pixels"], dtype=np.uint8),
                        "observation.state": pos.astype(np.float32),
                        "action": action,
                        "task": PUSHT_TASK,
                    }
                )
                obs, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    obs, _ = env.reset(seed=seed + 100 + ep)
            ds.save_episode()
    finally:
        env.close()
    ds.finalize()
    return root


# --------------------------------------------------------------------------- README blocks
def readme_section(readme: Path, heading: str) -> str:
    """The text of the README section ``## heading`` (up to the next ``## `` heading)."""
    text = readme.read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    if match is None:
        raise AssertionError(f"README has no section '## {heading}'")
    return match.group(1)


def code_blocks(section: str, language: str) -> list[str]:
    """The fenced ``language`` code blocks of a README section, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", section, flags=re.S | re.M)


def shell_commands(block: str) -> list[list[str]]:
    """The commands of a bash block as argument lists: ``\\`` continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", block)
    return [shlex.split(line, comments=True) for line in joined.splitlines() if shlex.split(line, comments=True)]
