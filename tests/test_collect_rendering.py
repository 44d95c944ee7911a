"""How collection renders: ``render_every`` (every k-th step, the frame held in between) and
``render_sizes`` (render as evaluation does, store resized as a policy resizes).

The claim that makes ``render_every`` safe for the demo: a model and a VQ tokenizer that encode every
k-th frame see exactly the images of a full-rate recording (the same simulation, the same renders),
and a stride that would encode a held copy is refused, by the demo and by training, before any work.
The claim of ``render_sizes``: the stored frames are the pixels a policy is fed in evaluation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from emu3_vla.data.held_frames import RECORDING_FILE, check_frame_stride, render_every
from eval.collection.collect import CollectConfig, collect, demonstration_jobs, run_settings
from eval.collection.pool import JobRunner

SIZES = {"static_size": 48, "gripper_size": 32}


def run(job, settings):
    runner = JobRunner(settings)
    try:
        return runner(job)
    finally:
        runner.close()


def test_held_frames_are_the_full_rate_renders_at_every_kth_step():
    config = CollectConfig(out=Path("unused"), chain_fraction=1.0, seed=2, handover=True, progress=False, **SIZES)
    job = next(j for j in demonstration_jobs(config, limit=20) if len(j.tasks) == 5)
    job = dataclasses.replace(job, record=(True,) * len(job.tasks))
    full = run(job, run_settings(config))
    held = run(job, dataclasses.replace(run_settings(config), render_every=5))
    assert full.env_steps == held.env_steps and len(full.episodes) == len(held.episodes) >= 2
    changed = 0
    for a, b in zip(full.episodes, held.episodes, strict=True):
        assert np.array_equal(a.actions, b.actions) and np.array_equal(a.robot_obs, b.robot_obs)
        for view in ("static", "gripper"):
            x, y = getattr(a, view), getattr(b, view)
            assert x.shape == y.shape
            rendered = np.arange(0, len(a), 5)  # counted from each episode's (segment's) own start
            assert np.array_equal(x[rendered], y[rendered]), "every k-th frame is the full-rate render"
            for t in range(len(a)):
                assert np.array_equal(y[t], y[t - t % 5]), "in between, the last rendered frame is held"
            changed += int(sum(not np.array_equal(x[t], y[t]) for t in range(len(a))))
    assert changed > 0, "the held frames should differ from the full-rate ones somewhere (the arm moves)"


def test_a_held_frame_dataset_says_so_and_training_refuses_strides_that_encode_copies(tmp_path):
    report = collect(tmp_path / "col", episodes=2, seed=3, render_every=5, progress=False, **SIZES)
    assert report.to_json()["config"]["render_every"] == 5
    root = report.lerobot_root
    assert json.loads((root / RECORDING_FILE).read_text()) == {"render_every": 5}
    assert render_every(root) == 5 and render_every(tmp_path) == 1
    from lerobot.datasets import LeRobotDataset

    assert LeRobotDataset("local/col", root=root).num_episodes == 2  # lerobot still reads it
    check_frame_stride(root, 5, "data.frame_stride")
    check_frame_stride([str(root)], 10, "data.frame_stride")
    with pytest.raises(ValueError, match=r"data.frame_stride=1 would encode repeated frames; use a multiple of 5"):
        check_frame_stride([str(tmp_path), str(root)], 1, "data.frame_stride")

    from emu3_vla.training.cli import train_vq
    from emu3_vla.training.config import load_config

    cfg = load_config("train_vq", [f"data.root={root}", "frame_stride=2", f"out={tmp_path / 'vq'}"])
    with pytest.raises(ValueError, match="frame_stride=2 would encode repeated frames"):
        train_vq(cfg)
    assert not (tmp_path / "vq").exists(), "refused before any work"


def test_render_every_is_validated_and_kept_out_of_calvins_format(tmp_path):
    with pytest.raises(ValueError, match="render_every must be a whole number >= 1"):
        CollectConfig(out=tmp_path, render_every=0)
    with pytest.raises(ValueError, match="CALVIN-format readers train on every frame"):
        CollectConfig(out=tmp_path, render_every=5, calvin_format=True)


def test_the_demo_refuses_strides_that_would_encode_held_frames(tmp_path):
    from emu3_vla.training.config import load_config
    from eval.demo.pipeline import Run

    def compose_config(overrides):
        return load_config("demo", overrides)

    base = [f"run_dir={tmp_path / 'demo'}"]
    assert Run.create(compose_config(base)).render_every() == 5
    with pytest.raises(ValueError, match=r"train.data.frame_stride=2 would encode repeated frames"):
        Run.create(compose_config([*base, "train.data.frame_stride=2"]))
    with pytest.raises(ValueError, match=r"vq.frame_stride=3 would encode repeated frames"):
        Run.create(compose_config([*base, "vq.frame_stride=3"]))
    assert Run.create(compose_config([*base, "collect.render_every=1", "vq.frame_stride=3"])).render_every() == 1
    from eval.demo.pipeline import collect_stage

    default, at_training_sizes, calvin34 = (
        Run.create(compose_config(base)),
        Run.create(compose_config([*base, "collect.render_sizes=null"])),
        Run.create(compose_config([*base, "recipe=calvin34"])),
    )
    assert default.render_sizes() == (200, 84) and collect_stage(default).settings["render_sizes"] == [200, 84]
    assert at_training_sizes.render_sizes() is None and "render_sizes" not in collect_stage(at_training_sizes).settings
    assert calvin34.render_sizes() == (200, 84) and calvin34.render_every() == 5  # its measured recipe (R2)
    assert (calvin34.cfg.on_policy.chains, calvin34.cfg.on_policy.repeat) == (800, 2)  # and its round
    assert collect_stage(default).settings["render_every"] == 5


def test_render_sizes_store_what_a_policy_is_fed_in_evaluation():
    """Rendered at CALVIN's 200 / 84 and stored at 48 / 32: each stored frame is the evaluation-size
    render resized by the policy's own filter, not a direct (aliased) render at the small size."""
    from emu3_vla.vision import resize_images

    config = CollectConfig(out=Path("unused"), chain_fraction=0.0, seed=4, progress=False, **SIZES)
    job = next(iter(demonstration_jobs(config, limit=1)))
    settings = dataclasses.replace(run_settings(config), render_every=5)
    small = run(job, settings)
    evaluation = run(job, dataclasses.replace(settings, static_size=200, gripper_size=84))
    stored = run(job, dataclasses.replace(settings, render_sizes=(200, 84)))
    assert small.env_steps == evaluation.env_steps == stored.env_steps
    for a, b, c in zip(small.episodes, evaluation.episodes, stored.episodes, strict=True):
        assert c.static.shape[1:] == (48, 48, 3) and c.gripper.shape[1:] == (32, 32, 3)
        assert np.array_equal(c.static, resize_images(b.static, 48, 48).numpy())
        assert np.array_equal(c.gripper, resize_images(b.gripper, 32, 32).numpy())
        assert not np.array_equal(c.static, a.static), "a direct small render differs (aliasing)"


def test_render_sizes_are_validated_and_mapped_from_the_command_line(tmp_path):
    import argparse

    from eval.collection.cli import config_from_args, register

    with pytest.raises(ValueError, match="render_sizes must be two whole numbers"):
        CollectConfig(out=tmp_path, render_sizes=(200,))
    from eval.collection.on_policy import OnPolicyConfig

    with pytest.raises(ValueError, match="render_sizes must be two whole numbers"):
        OnPolicyConfig(policy="random", out=tmp_path, render_sizes=(200, 0))
    parser = argparse.ArgumentParser(prog="emu3-vla")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["collect", "--out", str(tmp_path), "--render-sizes", "200", "84", "--render-every", "5"])
    config = config_from_args(args)
    assert (config.render_sizes, config.render_every) == ((200, 84), 5)
    assert (run_settings(config).render_sizes, run_settings(config).render_every) == ((200, 84), 5)


def test_collection_workers_run_torch_on_one_thread():
    """A worker resizes every stored frame with torch (render_sizes); with torch's default of one
    intra-op thread per core in each of two workers, those threads spun against the other worker's
    simulator and the whole collection ran 1.42x slower (docs/experiments.md section 25)."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    import torch

    from eval.collection.pool import RunSettings, _init_worker

    context = get_context("forkserver")
    with ProcessPoolExecutor(1, mp_context=context, initializer=_init_worker, initargs=(RunSettings(),)) as pool:
        assert pool.submit(torch.get_num_threads).result() == 1
