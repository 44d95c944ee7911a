"""Shared fixtures: small real datasets and models built on the spot (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TINY_FEATURES = {
    "observation.images.static": {"dtype": "image", "shape": (32, 32, 3), "names": ["height", "width", "channels"]},
    "observation.images.gripper": {"dtype": "image", "shape": (16, 16, 3), "names": ["height", "width", "channels"]},
    "observation.state": {"dtype": "float32", "shape": (15,), "names": None},
    "action": {"dtype": "float32", "shape": (7,), "names": None},
}
TASKS = ["open the drawer", "push the sliding door to the left side", "turn on the led", "lift the red block"]


def write_tiny_lerobot_dataset(
    root: Path, episodes: int = 4, length: int = 30, seed: int = 0, perturbed: list[np.ndarray] | None = None
) -> Path:
    """A LeRobot v3.0 dataset written through lerobot itself: smooth 7-d actions, coloured frames;
    with ``perturbed`` (one (length,) bool array per episode) also the per-frame perturbation flag."""
    from lerobot.datasets import LeRobotDataset

    from emu3_vla.data.episodes import PERTURBED_KEY

    rng = np.random.default_rng(seed)
    features = dict(TINY_FEATURES)
    if perturbed is not None:
        features[PERTURBED_KEY] = {"dtype": "bool", "shape": (1,), "names": None}
    ds = LeRobotDataset.create("local/tiny", fps=30, features=features, root=root, use_videos=False)
    t = np.arange(length)[:, None]
    for ep in range(episodes):
        phase = rng.uniform(0, 2 * np.pi, 6)
        arm = 0.6 * np.sin(t / 8.0 + phase)
        grip = np.where(t < length // 2, 1.0, -1.0)
        actions = np.concatenate([arm, grip], axis=1).astype(np.float32)
        base = rng.integers(0, 200, 3)
        for i in range(length):
            static = np.zeros((32, 32, 3), np.uint8)
            static[:] = base
            static[8:16, (i % 24) : (i % 24) + 8] = 255
            gripper = np.full((16, 16, 3), (i * 8) % 256, np.uint8)
            frame = {
                "observation.images.static": static,
                "observation.images.gripper": gripper,
                "observation.state": rng.normal(size=15).astype(np.float32),
                "action": actions[i],
                "task": TASKS[ep % len(TASKS)],
            }
            if perturbed is not None:
                frame[PERTURBED_KEY] = np.asarray(perturbed[ep][i : i + 1], dtype=bool)
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_tiny_lerobot_dataset(tmp_path_factory.mktemp("data") / "tiny")


@pytest.fixture(scope="session")
def tiny_vq_dir(tmp_path_factory) -> Path:
    """A (randomly initialised) tiny VQ tokenizer saved as `emu3-vla train-vq` saves one."""
    from emu3_vla.modeling import build_vq

    folder = tmp_path_factory.mktemp("vq")
    build_vq("tiny", seed=0).save_pretrained(folder / "vq", safe_serialization=True)
    return folder


def tiny_train_overrides(data: Path, vq: Path, run_dir: Path, cache: Path, **extra) -> list[str]:
    """Hydra overrides for a seconds-long training run on the tiny dataset."""
    values = {
        "model": "tiny",
        "model.vq": str(vq),
        "data.root": str(data),
        "data.cameras.static.size": 32,
        "data.cameras.gripper.size": 16,
        "data.cache_dir": str(cache),
        "run_dir": str(run_dir),
        "steps": 6,
        "batch_size": 4,
        "checkpoint.every": 2,
        "log_every": 1,
        "wandb.mode": "disabled",
        "progress": False,
        "schedule.warmup_steps": 2,
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture
def one_torch_thread():
    """Token loops on a tiny model are dominated by per-op overhead: two threads on two shared cores
    make them up to 10x slower, one thread keeps each test at a few seconds."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ctrl_c_after_episode(monkeypatch, after_episode: int, work):
    """Run ``work()`` and press Ctrl-C (a real SIGINT) right after the dataset's episode ``after_episode``
    is written; the KeyboardInterrupt it raises is expected."""
    import os
    import signal

    from eval.collection.writers import LeRobotWriter

    write_episode = LeRobotWriter.add

    def ctrl_c_after(writer, episode, instruction):
        index = write_episode(writer, episode, instruction)
        if index == after_episode:
            os.kill(os.getpid(), signal.SIGINT)
        return index

    # Python's own Ctrl-C handler, as in a terminal: a shell starts background jobs (`pytest &`)
    # with SIGINT ignored, and an ignored Ctrl-C interrupts nothing
    terminal_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(LeRobotWriter, "add", ctrl_c_after)
            with pytest.raises(KeyboardInterrupt):
                work()
    finally:
        signal.signal(signal.SIGINT, terminal_handler)


def episodes_written(monkeypatch) -> list[int]:
    """From now on, the index of every episode a ``LeRobotWriter`` writes (to tell a continued collection
    from one that started over: both end with the same episodes)."""
    from eval.collection.writers import LeRobotWriter

    written: list[int] = []
    write_episode = LeRobotWriter.add

    def counted(writer, episode, instruction):
        written.append(write_episode(writer, episode, instruction))
        return written[-1]

    monkeypatch.setattr(LeRobotWriter, "add", counted)
    return written
