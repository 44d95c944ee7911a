"""``emu3-vla collect``: the LeRobot dataset and the CALVIN folder hold exactly what the experts did
(checked against a re-simulation of the same jobs), parallel workers give the same episodes, and bad
input is refused with a reason."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ctrl_c_after_episode, episodes_written
from emu3_vla.data.calvin_format import CalvinSource, calvin_mapping
from envs import PlayTableEnv, task_instructions
from eval.collection.cli import config_from_args, register
from eval.collection.collect import (
    REPORT_NAME,
    CollectConfig,
    collect,
    demonstration_jobs,
    instruction_for,
    run_settings,
)
from eval.collection.jobs import demonstration_job, task_routes
from eval.collection.pool import JobRunner
from eval.collection.writers import GRIPPER_KEY, STATIC_KEY, VIDEO_TOLERANCE

SIZES = {"static_size": 48, "gripper_size": 32}


def small_config(out: Path, **overrides) -> CollectConfig:
    values = {"episodes": 5, "seed": 3, "chain_fraction": 0.5, "progress": False, **SIZES, **overrides}
    return CollectConfig(out=out, **values)


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    config = small_config(tmp_path_factory.mktemp("collect") / "run", calvin_format=True)
    report = collect(config)
    return config, report


def resimulate(config: CollectConfig, entries: list[dict]) -> list:
    """The recorded episodes, produced again by running the same jobs (jobs are functions of their seeds)."""
    jobs = list(demonstration_jobs(config, limit=max(e["job"] for e in entries) + 1))
    runner = JobRunner(run_settings(config))
    try:
        results = {}
        episodes = []
        for entry in entries:
            if entry["job"] not in results:
                results[entry["job"]] = runner(jobs[entry["job"]])
            episodes.append(results[entry["job"]].outcomes[entry["position"]].episode)
        return episodes
    finally:
        runner.close()


def test_report_counts_every_attempt_and_every_kept_episode(collected):
    config, _ = collected
    data = json.loads((config.out / REPORT_NAME).read_text())
    assert data["episodes"] == 5 == len(data["episode_list"])
    assert sum(t["kept"] for t in data["per_task"].values()) == 5
    assert all(t["attempted"] >= t["succeeded"] >= t["kept"] for t in data["per_task"].values())
    assert data["frames"] == sum(e["length"] for e in data["episode_list"])
    assert data["video"]["codec"]["pix_fmt"] == "yuv444p" and data["video"]["max_pixel_error"] == VIDEO_TOLERANCE
    assert [e["episode_index"] for e in data["episode_list"]] == list(range(5))


def test_lerobot_dataset_loads_and_matches_what_the_experts_did(collected):
    from lerobot.datasets import LeRobotDataset
    from lerobot.datasets.video_utils import decode_video_frames

    config, report = collected
    dataset = LeRobotDataset(f"local/{report.lerobot_root.name}", root=report.lerobot_root, video_backend="pyav")
    meta = dataset.meta
    assert meta.total_episodes == 5 and meta.fps == 30
    assert meta.features[STATIC_KEY]["dtype"] == "video"
    assert tuple(meta.features[STATIC_KEY]["shape"]) == (48, 48, 3)
    assert tuple(meta.features[GRIPPER_KEY]["shape"]) == (32, 32, 3)
    table = dataset.hf_dataset.with_format("numpy")
    episode_index = np.asarray(table["episode_index"]).reshape(-1)
    timestamps = np.asarray(table["timestamp"], dtype=np.float64).reshape(-1)
    actions = np.asarray(table["action"], dtype=np.float32)
    states = np.asarray(table["observation.state"], dtype=np.float32)
    paraphrases = task_instructions("training")
    entries = report.episode_list
    worst, errors = 0, []
    for entry, episode in zip(entries, resimulate(config, entries), strict=True):
        ep = entry["episode_index"]
        rows = np.flatnonzero(episode_index == ep)
        assert len(rows) == len(episode) == entry["length"]
        np.testing.assert_array_equal(actions[rows], episode.actions.astype(np.float32))
        np.testing.assert_array_equal(states[rows], episode.robot_obs.astype(np.float32))
        expected_text = instruction_for(episode.task, config.seed, entry["job"], entry["position"], paraphrases)
        assert expected_text in paraphrases[episode.task]
        for t in (0, len(rows) - 1):
            assert dataset[int(rows[t])]["task"] == expected_text == entry["instruction"]
        for key, recorded in ((STATIC_KEY, episode.static), (GRIPPER_KEY, episode.gripper)):
            offset = float(meta.episodes[ep][f"videos/{key}/from_timestamp"])
            path = report.lerobot_root / meta.get_video_file_path(ep, key)
            stored = decode_video_frames(path, (timestamps[rows] + offset).tolist(), dataset.tolerance_s, "pyav", True)
            stored = stored.permute(0, 2, 3, 1).numpy().astype(np.int16)
            assert stored.shape == recorded.shape
            error = np.abs(stored - recorded.astype(np.int16))
            worst = max(worst, int(error.max()))
            errors.append(float(error.mean()))
    # Every frame: H.264 4:4:4 at CRF 0 loses only the RGB <-> YUV rounding (lossy codecs: mean > 2).
    assert worst <= VIDEO_TOLERANCE and np.mean(errors) < 0.5


def test_image_statistics_match_lerobots_own_and_lerobot_is_restored(tmp_path, collected):
    """The writer counts image statistics per byte value (image_stats.py); the dataset's stats equal
    those lerobot's own per-frame tracker writes for the same episodes, up to its float32 rounding and
    histogram re-binning."""
    from lerobot.datasets import compute_stats

    from eval.collection.writers import LeRobotWriter

    config, report = collected
    episodes = resimulate(config, report.episode_list[:2])
    lerobots = compute_stats.RunningQuantileStats
    stats = {}
    for byte_stats in (False, True):
        writer = LeRobotWriter(tmp_path / str(byte_stats), byte_image_stats=byte_stats, **SIZES)
        for episode in episodes:
            writer.add(episode, "open the drawer")
        writer.finalize()
        assert compute_stats.RunningQuantileStats is lerobots
        stats[byte_stats] = writer.dataset.meta.stats
    for key in (STATIC_KEY, GRIPPER_KEY):
        theirs, ours = stats[False][key], stats[True][key]
        assert theirs.keys() == ours.keys()
        for name in ("min", "max", "count"):
            np.testing.assert_array_equal(ours[name], theirs[name])
        for name in theirs:
            np.testing.assert_allclose(ours[name], theirs[name], atol=1e-4, err_msg=f"{key} {name}")


def test_interrupts_wait_for_the_episode_being_written():
    import os
    import signal

    from emu3_vla.interrupts import deferred_interrupts

    calls: list[str] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: calls.append("handled"))
    try:
        with deferred_interrupts((signal.SIGUSR1,)):
            os.kill(os.getpid(), signal.SIGUSR1)
            os.kill(os.getpid(), signal.SIGUSR1)
            calls.append("episode written")
        assert calls == ["episode written", "handled"], "held until the block ends, then handled once"
        os.kill(os.getpid(), signal.SIGUSR1)
        assert calls[-1] == "handled" and len(calls) == 3, "the handler is back after the block"
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_terminated_collection_keeps_the_episodes_it_wrote(tmp_path):
    """SIGTERM (kill, a job scheduler) stops `emu3-vla collect` as Ctrl-C does: the dataset is finalised
    with the episodes written so far, the report says it was interrupted, and the exit status is 143."""
    import signal
    import subprocess
    import sys
    import time

    from lerobot.datasets import LeRobotDataset

    out = tmp_path / "run"
    command = [sys.executable, "-m", "emu3_vla.cli", "collect", "--out", str(out), "--episodes", "500"]
    command += ["--workers", "2", "--static-size", "48", "--gripper-size", "32", "--no-progress"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not list((out / "lerobot" / "data").rglob("*.parquet")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.5)
        time.sleep(2)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, stderr
    assert "terminated" in stderr and "episodes written so far" in stderr
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["interrupted"] is True and 1 <= report["episodes"] < 500
    dataset = LeRobotDataset("local/run", root=out / "lerobot", video_backend="pyav")
    assert dataset.meta.total_episodes == report["episodes"] and len(dataset) == report["frames"]
    assert tuple(dataset[len(dataset) - 1][STATIC_KEY].shape) == (3, 48, 48)  # the last episode's video decodes


def dataset_columns(root: Path) -> dict[str, np.ndarray]:
    """The table of a LeRobot dataset (episode index, action, state) and its last video frame."""
    from lerobot.datasets import LeRobotDataset

    dataset = LeRobotDataset(f"local/{root.name}", root=root, video_backend="pyav")
    table = dataset.hf_dataset.with_format("numpy")
    return {
        "episode_index": np.asarray(table["episode_index"]).reshape(-1),
        "action": np.asarray(table["action"], dtype=np.float32),
        "state": np.asarray(table["observation.state"], dtype=np.float32),
        "last_frame": dataset[len(dataset) - 1][STATIC_KEY].numpy(),
    }


def interrupted_collection(config: CollectConfig, after_episode: int, monkeypatch) -> dict:
    """``collect(config)`` stopped by Ctrl-C after episode ``after_episode``; the report it left."""
    ctrl_c_after_episode(monkeypatch, after_episode, lambda: collect(config))
    return json.loads((config.out / REPORT_NAME).read_text())


def test_an_interrupted_collection_resumes_to_the_episodes_of_an_uninterrupted_one(tmp_path, monkeypatch):
    """``resume`` (here with another worker count) ends with exactly the uninterrupted run's episodes,
    in LeRobot and CALVIN format, each once, with per-task quotas (the demo's settings) restored from
    the report; a finished collection is then returned as it is."""
    import dataclasses

    settings = {"tasks": ["open_drawer", "turn_on_led", "move_slider_left"], "episodes_per_task": 2, "seed": 5}
    reference = collect(small_config(tmp_path / "reference", chain_fraction=0.0, **settings))
    config = small_config(tmp_path / "run", chain_fraction=0.0, calvin_format=True, **settings)
    stopped = interrupted_collection(config, 2, monkeypatch)
    assert stopped["interrupted"] is True and stopped["episodes"] == 3
    assert stopped["next_job"] == reference.episode_list[2]["job"] + 1

    written = episodes_written(monkeypatch)
    resumed = collect(dataclasses.replace(config, workers=2, resume=True))
    assert not resumed.interrupted and resumed.episode_list == reference.episode_list
    assert written == [3, 4, 5], "only the missing episodes are collected"
    # (attempts may differ: two workers run jobs ahead that the quotas then drop, interrupted or not)
    assert (resumed.frames, resumed.kept) == (reference.frames, reference.kept)
    ours, theirs = dataset_columns(resumed.lerobot_root), dataset_columns(reference.lerobot_root)
    for key in ("episode_index", "action", "state"):
        np.testing.assert_array_equal(ours[key], theirs[key])
    np.testing.assert_allclose(ours["last_frame"], theirs["last_frame"], atol=2 * VIDEO_TOLERANCE / 255)
    calvin = CalvinSource(resumed.calvin_root, mapping=calvin_mapping(static=48, gripper=32))
    assert [calvin.episode(i).instruction for i in range(len(calvin))] == [
        e["instruction"] for e in reference.episode_list
    ]
    np.testing.assert_array_equal(calvin.episode(5).actions, theirs["action"][theirs["episode_index"] == 5])

    again = collect(dataclasses.replace(config, resume=True))  # finished: returned as it is
    assert again.episode_list == reference.episode_list and again.seconds == pytest.approx(resumed.seconds, abs=0.01)


def test_ctrl_c_while_a_chain_is_written_waits_for_the_whole_chain(tmp_path, collected, monkeypatch):
    """A job's episodes are written whole: Ctrl-C after the first episode of a chain's several lands
    after its last, so that ``resume`` can continue from the next job without losing any."""
    _, report = collected
    jobs = [e["job"] for e in report.episode_list]
    first = next(i for i in range(len(jobs) - 1) if jobs[i] == jobs[i + 1])  # a job that writes 2+ episodes
    stopped = interrupted_collection(small_config(tmp_path / "run", calvin_format=True), first, monkeypatch)
    assert stopped["interrupted"] is True and stopped["next_job"] == jobs[first] + 1
    assert stopped["episodes"] == jobs.index(jobs[first]) + jobs.count(jobs[first])
    written = episodes_written(monkeypatch)
    resumed = collect(small_config(tmp_path / "run", calvin_format=True, resume=True))
    assert resumed.episode_list == report.episode_list and not resumed.interrupted
    assert written == list(range(stopped["episodes"], 5))


def test_the_demos_collection_stage_continues_after_ctrl_c(tmp_path, monkeypatch, capsys):
    """`emu3-vla demo` run again after Ctrl-C during collection continues the stage's dataset instead
    of starting it over: the episodes written before stay, and the stage ends with its full count."""
    from emu3_vla.training.config import load_config
    from eval.demo.pipeline import Run, collect_demonstrations, collect_stage

    cfg = load_config("demo_quick", [f"run_dir={tmp_path / 'demo'}"])
    run = Run.create(cfg)
    stage = collect_stage(run)
    ctrl_c_after_episode(monkeypatch, 2, lambda: collect_demonstrations(run, stage))
    stopped = json.loads((stage.folder / "collect" / REPORT_NAME).read_text())
    assert stopped["interrupted"] is True and 3 <= stopped["episodes"] < 9

    again = collect_stage(Run.create(cfg))
    written = episodes_written(monkeypatch)
    result = collect_demonstrations(run, again)
    assert written == list(range(stopped["episodes"], 9)), "the stage continues, it does not start over"
    assert "starting it over" not in capsys.readouterr().out
    report = json.loads((again.folder / "collect" / REPORT_NAME).read_text())
    assert result["episodes"] == 9 == len(report["episode_list"]) and again.done()
    assert report["episode_list"][: stopped["episodes"]] == stopped["episode_list"]
    assert sorted(report["per_task"]) == sorted(run.tasks) and {v["kept"] for v in report["per_task"].values()} == {3}


def test_resume_refuses_what_it_cannot_continue(tmp_path, collected):
    """Other settings, or a dataset left without its report (a hard kill), are refused with the reason
    and the way out; nothing is deleted unless --overwrite says so."""
    config, _ = collected
    with pytest.raises(ValueError, match=r"other settings \(seed: 3 -> 4\).*--overwrite"):
        collect(small_config(config.out, calvin_format=True, seed=4, resume=True))
    assert (config.out / REPORT_NAME).is_file()
    killed = tmp_path / "killed"
    (killed / "lerobot" / "meta").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="killed before.*--overwrite"):
        collect(small_config(killed, resume=True))
    assert (killed / "lerobot" / "meta").is_dir()
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["collect", "--out", str(killed), "--resume", "--workers", "2"])
    assert config_from_args(args).resume is True


def test_calvin_format_output_loads_with_calvin_source(collected):
    config, report = collected
    source = CalvinSource(report.calvin_root, mapping=calvin_mapping(static=48, gripper=32))
    assert len(source) == 5
    episodes = resimulate(config, report.episode_list[:2])
    for index, (entry, episode) in enumerate(zip(report.episode_list[:2], episodes, strict=True)):
        loaded = source.episode(index)
        assert loaded.instruction == entry["instruction"] and loaded.task == entry["task"]
        np.testing.assert_array_equal(loaded.actions, episode.actions.astype(np.float32))
        np.testing.assert_array_equal(loaded.state, episode.robot_obs.astype(np.float32))
        np.testing.assert_array_equal(loaded.frames["static"], episode.static)  # npz is lossless


def test_parallel_workers_write_the_same_episodes(tmp_path, collected):
    _, report = collected
    parallel = collect(small_config(tmp_path / "parallel", workers=2))
    assert parallel.episode_list == report.episode_list  # same jobs, seeds, lengths and action digests


def test_perturbed_steps_reach_the_dataset(tmp_path, collected):
    """With bursts of noise the dataset flags exactly the steps the re-simulated expert perturbed;
    without noise the flag column is there and all False."""
    from emu3_vla.data.mapping import CameraSpec, DataMapping
    from emu3_vla.data.sources import open_dataset

    mapping = DataMapping(
        cameras={"static": CameraSpec(STATIC_KEY, 48, 48), "gripper": CameraSpec(GRIPPER_KEY, 32, 32)}
    )
    _, clean_report = collected
    clean = open_dataset(clean_report.lerobot_root, mapping)
    assert all(clean.episode(i).perturbed is not None and not clean.episode(i).perturbed.any() for i in range(2))
    config = small_config(tmp_path / "bursts", episodes=3, tasks=["open_drawer"], noise=0.6, noise_kind="bursts")
    report = collect(config)
    source = open_dataset(report.lerobot_root, mapping)
    recorded = [source.episode(i).perturbed for i in range(len(source))]
    expected = [e.perturbed for e in resimulate(config, report.episode_list)]
    for got, want in zip(recorded, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert any(f.any() for f in recorded)


def test_tasks_and_quotas_restrict_what_is_recorded_and_images_can_replace_video(tmp_path):
    from lerobot.datasets import LeRobotDataset

    wanted = ["open_drawer", "place_in_drawer"]
    report = collect(tmp_path / "subset", tasks=wanted, episodes_per_task=2, video=False, progress=False, **SIZES)
    assert sorted(e["task"] for e in report.episode_list) == sorted(wanted * 2)  # balanced: 2 of each
    assert set(report.attempted) <= set(wanted)  # the lift before place_in_drawer runs but is not recorded
    dataset = LeRobotDataset("local/lerobot", root=report.lerobot_root)
    assert dataset.meta.features[STATIC_KEY]["dtype"] == "image" and dataset.meta.total_episodes == 4


def test_quotas_skip_jobs_without_changing_the_dataset(tmp_path):
    """A job whose recorded tasks are all full is not run; the episodes kept are exactly those of
    running every job in order and dropping episodes over a task's quota."""
    import dataclasses
    from collections import Counter

    config = small_config(tmp_path / "quota", tasks=["open_drawer", "turn_on_led"], episodes_per_task=3, seed=11)
    report = collect(config)
    assert report.jobs_skipped > 0
    last = max(e["job"] for e in report.episode_list)
    runner = JobRunner(dataclasses.replace(run_settings(config), record_frames=False))
    kept: Counter[str] = Counter()
    expected = []
    try:
        for job in demonstration_jobs(config, limit=last + 1):
            for position, outcome in enumerate(runner(job).outcomes):
                if outcome.episode is not None and kept[outcome.task] < 3:
                    kept[outcome.task] += 1
                    expected.append((job.index, position))
    finally:
        runner.close()
    assert [(e["job"], e["position"]) for e in report.episode_list] == expected


def test_existing_collection_is_not_overwritten_by_accident(collected):
    config, _ = collected
    with pytest.raises(FileExistsError, match="--overwrite"):
        collect(small_config(config.out))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tasks": ["open_drawer", "fly_away"]}, "fly_away"),
        ({"static_size": 51}, "even number"),
        ({"gripper_size": 8}, "between 16 and 512"),
        ({"chain_fraction": 1.5}, "chain_fraction"),
        ({"episodes": 0}, "episodes"),
        ({"variants": ("E",)}, "variants"),
        ({"labels": "noisy"}, "clean, executed"),
        ({"noise_kind": "gusts"}, "smooth, bursts"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        small_config(tmp_path / "x", **overrides)


def test_defaults_are_calvins_sizes_and_valid(tmp_path):
    config = CollectConfig(out=tmp_path / "defaults")
    assert (config.static_size, config.gripper_size, config.video) == (200, 84, True)
    assert len(config.task_list) == 34 and config.episodes == 100


def test_command_line_maps_to_the_config(tmp_path):
    parser = argparse.ArgumentParser(prog="emu3-vla")
    register(parser.add_subparsers(dest="command"))
    flags = "--episodes 7 --tasks open_drawer --workers 2 --static-size 128 --gripper-size 64 --calvin-format"
    args = parser.parse_args(["collect", "--out", str(tmp_path), *flags.split(), "--images", "--seed", "4"])
    config = config_from_args(args)
    assert callable(args.func) and config.episodes == 7 and config.tasks == ["open_drawer"]
    assert (config.noise, config.noise_kind, config.labels) == (0.0, "smooth", "clean")
    noisy = parser.parse_args(
        ["collect", "--out", "x", "--noise", "0.3", "--noise-kind", "bursts", "--labels", "executed"]
    )
    noisy = config_from_args(noisy)
    assert (noisy.noise, noisy.noise_kind, noisy.labels) == (0.3, "bursts", "executed")
    assert (config.workers, config.static_size, config.gripper_size, config.seed) == (2, 128, 64, 4)
    assert config.calvin_format and not config.video


def test_jobs_are_a_function_of_seed_and_index():
    from eval.chains import load_standard_chains

    chains = load_standard_chains(50)
    tasks = ["open_drawer", "stack_block", "lift_red_block_drawer"]
    first = [demonstration_job(i, 7, tasks, chains=chains) for i in range(12)]
    assert first == [demonstration_job(i, 7, tasks, chains=chains) for i in range(12)]
    assert first != [demonstration_job(i, 8, tasks, chains=chains) for i in range(12)]
    assert {job.kind for job in first} == {"task", "chain"}
    # Tasks that need a held block run after a lift; a drawer lift starts with the block in the drawer.
    assert all(setup and setup[-1].startswith("lift_") for _, setup in task_routes("stack_block"))
    assert all(state["red_block"] == "drawer" and not setup for state, setup in task_routes("lift_red_block_drawer"))


def test_env_renders_the_requested_camera_sizes():
    with PlayTableEnv(camera_sizes={"static": 64, "gripper": 32}) as env:
        images = env.reset()["rgb_obs"]
        assert images["rgb_static"].shape == (64, 64, 3) and images["rgb_gripper"].shape == (32, 32, 3)
    with PlayTableEnv() as env:  # CALVIN's sizes stay the default
        images = env.reset()["rgb_obs"]
        assert images["rgb_static"].shape == (200, 200, 3) and images["rgb_gripper"].shape == (84, 84, 3)
    with pytest.raises(ValueError, match="unknown cameras"):
        PlayTableEnv(camera_sizes={"wrist": 64})
    with pytest.raises(ValueError, match="between 8 and 1024"):
        PlayTableEnv(camera_sizes={"static": 4})


def test_long_episodes_keep_every_video_frame(tmp_path):
    """lerobot's streaming encoder drops frames when its queue fills; the writer's queue holds an episode."""
    import av

    from eval.collection.recorder import Episode
    from eval.collection.writers import LeRobotWriter

    steps = 400
    t = np.arange(steps)
    static = np.zeros((steps, 200, 200, 3), np.uint8)
    static[..., 0] = (np.arange(200)[None, :, None] + t[:, None, None]) % 256
    static[:, 50:90, :, 1] = 200
    gripper = np.repeat(static[:, ::2, ::2][:, 8:92, 8:92], 1, axis=0).copy()
    episode = Episode(
        task="open_drawer",
        static=static,
        gripper=gripper,
        robot_obs=np.zeros((steps, 15)),
        scene_obs=np.zeros((steps, 24)),
        actions=np.tile(np.array([0.1, 0, 0, 0, 0, 0, 1.0]), (steps, 1)),
        abs_actions=np.zeros((steps, 7)),
        success_step=steps,
    )
    writer = LeRobotWriter(tmp_path / "long", static_size=200, gripper_size=84)
    # A starved encoder thread (busy CPUs) makes lerobot drop frames once its queue is full; the queue
    # must therefore hold a whole episode (lerobot's default holds 30 frames, one second).
    encoder = writer.dataset.writer._streaming_encoder
    assert encoder is not None and encoder.queue_maxsize >= steps
    writer.add(episode, "pull the handle to open the drawer")
    writer.finalize()
    for key in ("static", "gripper"):
        (video,) = (tmp_path / "long" / "videos" / f"observation.images.{key}").rglob("*.mp4")
        with av.open(str(video)) as container:
            assert sum(1 for _ in container.decode(video=0)) == steps


def test_episodes_spread_over_small_video_files_read_back_exactly(tmp_path):
    """The writer caps video files (lerobot appends an episode by remuxing the whole current file, so a
    big file makes every append slow); episodes then live in several files and still read back intact."""
    from emu3_vla.data.lerobot_source import LeRobotSource
    from emu3_vla.data.mapping import DataMapping
    from eval.collection.recorder import Episode
    from eval.collection.writers import LeRobotWriter

    rng = np.random.default_rng(0)
    episodes = []
    for e in range(4):
        steps = 30 + 5 * e
        static = rng.integers(0, 256, (steps, 96, 96, 3), dtype=np.uint8)  # noise: ~0.8 MB per episode
        gripper = np.ascontiguousarray(static[:, ::2, ::2])
        actions = np.tile(np.array([0.1 * e, 0, 0, 0, 0, 0, 1.0]), (steps, 1))
        zeros = np.zeros((steps, 15)), np.zeros((steps, 24))
        episodes.append(Episode("open_drawer", static, gripper, *zeros, actions, actions, steps))
    writer = LeRobotWriter(tmp_path / "ds", static_size=96, gripper_size=48, video_file_mb=1)
    for episode in episodes:
        writer.add(episode, "pull the handle to open the drawer")
    writer.finalize()
    files = sorted((tmp_path / "ds" / "videos" / STATIC_KEY).rglob("*.mp4"))
    assert len(files) >= 3  # lerobot's default (200 MB) would have put all four in one file
    source = LeRobotSource(tmp_path / "ds", DataMapping.calvin(static=96, gripper=48))
    assert len(source) == 4
    for e, written in enumerate(episodes):
        read = source.episode(e)
        np.testing.assert_allclose(read.actions, written.actions.astype(np.float32))
        for view, frames in (("static", written.static), ("gripper", written.gripper)):
            error = np.abs(read.frames[view].astype(np.int16) - frames.astype(np.int16))
            assert read.frames[view].shape == frames.shape and error.max() <= VIDEO_TOLERANCE


def test_chain_episodes_are_segments_with_their_own_instructions_and_never_a_standard_chain(tmp_path):
    """A chain job records one episode per successful segment, in order, each with a training
    paraphrase of its own task, each ending in the oracle's success; no (start state, tasks) pair of
    the chains it runs is one of CALVIN's 1,000 evaluation chains."""
    from eval.chains import chain_key, load_standard_chains

    config = small_config(tmp_path / "chains", episodes=6, chain_fraction=1.0, seed=2)
    report = collect(config)
    paraphrases = task_instructions("training")
    standard = {chain_key(state, tasks) for state, tasks in load_standard_chains()}
    by_job: dict[int, list[dict]] = {}
    for entry in report.episode_list:
        by_job.setdefault(entry["job"], []).append(entry)
    assert all(e["kind"] == "chain" for e in report.episode_list) and len(by_job) >= 2
    for entries in by_job.values():
        tasks = entries[0]["job_tasks"]
        assert len(tasks) == 5 and chain_key(entries[0]["start_state"], tasks) not in standard
        assert [e["position"] for e in entries] == list(range(len(entries)))  # segments in order, none skipped
        for entry in entries:
            assert entry["task"] == tasks[entry["position"]]
            assert entry["instruction"] in paraphrases[entry["task"]]
            assert 0 < entry["success_step"] <= entry["length"]
    # the segments, run again from the recorded seeds, succeed per segment under the task oracle
    episodes = resimulate(config, report.episode_list)
    assert all(ep is not None and ep.task == e["task"] for ep, e in zip(episodes, report.episode_list, strict=True))


def test_handover_starts_each_chain_segment_at_the_previous_success():
    """With handover, segment k ends at its success and the expert's finishing motion of segment k
    opens segment k + 1 (under k + 1's task); the same steps are recorded, only cut elsewhere."""
    import dataclasses

    config = small_config(Path("unused"), chain_fraction=1.0, seed=2)
    job = next(j for j in demonstration_jobs(config, limit=20) if len(j.tasks) == 5)
    job = dataclasses.replace(job, record=(True,) * len(job.tasks))
    plain_settings = dataclasses.replace(run_settings(config), record_frames=False)
    results = {}
    for handover in (False, True):
        runner = JobRunner(dataclasses.replace(plain_settings, handover=handover))
        try:
            results[handover] = runner(job)
        finally:
            runner.close()
    plain, handed = results[False], results[True]
    assert [o.success for o in plain.outcomes] == [o.success for o in handed.outcomes]
    assert plain.env_steps == handed.env_steps, "recording must not change what the expert does"
    done = [o for o in plain.outcomes if o.success]
    assert len(done) >= 2, "the job should get past its first segment"
    old, new = plain.episodes, handed.episodes
    assert any(len(a) > a.success_step for a in old[: len(new) - 1]), "some segment should have a tail to hand over"
    if len(old) == len(job.tasks):
        assert sum(map(len, old)) == sum(map(len, new)), "a whole chain records every step once either way"
    carried = 0
    for k, (a, b) in enumerate(zip(old, new, strict=True)):
        assert b.task == a.task
        last = k == len(job.tasks) - 1  # the job's last subtask keeps its own tail
        # the carried-in tail of the previous segment comes first, then this segment up to its success
        assert b.success_step == carried + a.success_step
        assert np.array_equal(b.robot_obs[carried : carried + a.success_step], a.robot_obs[: a.success_step])
        assert len(b) == carried + (len(a) if last else a.success_step)
        if k + 1 < len(new):
            tail = len(a) - a.success_step
            assert np.array_equal(new[k + 1].robot_obs[:tail], a.robot_obs[a.success_step :])
            carried = tail
