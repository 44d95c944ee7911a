"""The CALVIN evaluator on PlayTable: protocol, results, resume after a kill, shards, videos."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest

from eval.evaluate import EvalSettings, evaluate_chains, evaluate_tasks, task_suite_jobs
from eval.results import ChainResult, ResultLog, metrics, read_folder
from eval.symbolic import apply_task, load_task_definitions


def settings(out, **kw):
    return EvalSettings(**{"policy": "random", "out": out, "ep_len": 12, "progress": False, **kw})


def outcomes(folder):
    return {r.chain_index: (r.successes, r.steps, r.seed) for r in read_folder(folder)}


def test_random_policy_fails_and_results_are_written(tmp_path):
    m = evaluate_chains(settings(tmp_path / "r", num_envs=2), num_chains=4)
    assert m["chains"] == 4 and m["complete"]
    assert m["avg_len"] < 0.5 and m["sr@5"] == 0.0
    saved = json.loads((tmp_path / "r" / "results.json").read_text())
    assert saved["chains"] == 4 and set(saved) >= {"sr@1", "sr@5", "avg_len", "per_task", "malformed_decodes"}
    assert (tmp_path / "r" / "success_by_position.png").stat().st_size > 0
    for r in read_folder(tmp_path / "r"):
        assert len(r.successes) >= 1 and r.steps[-1] <= 12


def test_metrics_follow_calvin_definitions():
    def result(i, successes):
        return ChainResult(i, 0, {}, ["a", "b", "c", "d", "e"], successes, [1] * len(successes))

    rs = [result(0, [True, True, False]), result(1, [True] * 5), result(2, [False])]
    m = metrics(rs)
    assert m["sr@1"] == pytest.approx(2 / 3) and m["sr@2"] == pytest.approx(2 / 3) and m["sr@3"] == pytest.approx(1 / 3)
    assert m["sr@5"] == pytest.approx(1 / 3) and m["avg_len"] == pytest.approx((2 + 5 + 0) / 3)
    assert m["per_task"]["a"] == {"attempts": 3, "successes": 2, "success_rate": 2 / 3}


def test_killed_evaluation_resumes_without_repeating_or_losing_chains(tmp_path):
    reference = tmp_path / "ref"
    evaluate_chains(settings(reference), num_chains=6)
    out = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "emu3_vla.cli",
        "eval",
        "calvin",
        "--policy",
        "random",
        "--chains",
        "6",
        "--ep-len",
        "12",
        "--out",
        str(out),
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = out / "chains.jsonl"
    deadline = time.time() + 300
    while (not log.exists() or not log.read_text().strip()) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_with = len(read_folder(out))
    assert 1 <= killed_with < 6, "the kill should land mid-evaluation"
    with log.open("a") as f:  # a torn line, as a kill in the middle of a write leaves
        f.write('{"chain_index": 5, "seed"')
    evaluate_chains(settings(out), num_chains=6)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert sorted(x["chain_index"] for x in lines) == list(range(6))  # nothing repeated, nothing lost
    assert outcomes(out) == outcomes(reference)
    assert json.loads((out / "results.json").read_text())["avg_len"] == metrics(read_folder(reference))["avg_len"]


def test_shards_merge_to_the_unsharded_result(tmp_path):
    evaluate_chains(settings(tmp_path / "all"), num_chains=5)
    for i in range(2):
        evaluate_chains(settings(tmp_path / "sharded"), num_chains=5, shard=(i, 2))
    assert sorted(p.name for p in (tmp_path / "sharded").glob("chains*.jsonl")) == [
        "chains-0of2.jsonl",
        "chains-1of2.jsonl",
    ]
    from emu3_vla.cli import main

    assert main(["eval", "merge", str(tmp_path / "sharded"), "--chains", "5"]) == 0
    merged = json.loads((tmp_path / "sharded" / "results.json").read_text())
    assert merged["complete"] and merged["chains"] == 5
    assert outcomes(tmp_path / "sharded") == outcomes(tmp_path / "all")


def test_two_worker_processes_give_the_same_chains(tmp_path):
    evaluate_chains(settings(tmp_path / "one"), num_chains=4)
    evaluate_chains(settings(tmp_path / "two", workers=2), num_chains=4)
    assert outcomes(tmp_path / "two") == outcomes(tmp_path / "one")


def test_video_decodes_with_expected_frames_and_size(tmp_path):
    evaluate_chains(settings(tmp_path / "v", videos=1), num_chains=2)
    video = tmp_path / "v" / "videos" / "chain_0000.mp4"
    steps = sum(read_folder(tmp_path / "v")[0].steps)
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == steps + 12  # one frame per step, then the final marker held for 12 frames
    assert frames[0].shape == (236, 400, 3)
    border = frames[-1][:6, :400].reshape(-1, 3).mean(0)
    assert border[0] > 150 and border[1] < 100  # the failure marker is red
    assert not (tmp_path / "v" / "videos" / "chain_0001.mp4").exists()


def test_task_suite_jobs_reach_every_task():
    definitions = load_task_definitions()
    jobs = task_suite_jobs(None, 3, seed=0)
    targets = [j.tasks[-1] for j in jobs]
    assert sorted(set(targets)) == sorted(definitions.names) and len(jobs) == 3 * 34
    for job in jobs:  # each job's prefix makes its last task applicable, by CALVIN's symbolic rules
        state = job.state
        for task in job.tasks:
            state = apply_task(state, task, definitions)


def test_task_suite_runs_and_reports_per_task(tmp_path):
    m = evaluate_tasks(settings(tmp_path / "t", ep_len=5), tasks=["open_drawer", "place_in_slider"], per_task=2)
    assert set(m["per_task"]) == {"open_drawer", "place_in_slider"} and m["episodes"] == 4
    assert (tmp_path / "t" / "success_per_task.png").is_file()


def test_result_log_rejects_a_corrupt_line(tmp_path):
    log = tmp_path / "chains.jsonl"
    log.write_text('{"not": "a result"}\n')
    with pytest.raises(ValueError, match="chains.jsonl:1"):
        ResultLog(log).read()


def test_calvin_backend_without_calvin_env_explains_how_to_install(tmp_path, monkeypatch):
    from envs.calvin_backend import CalvinNotAvailable

    # calvin_env made unimportable here, whether or not this machine has it installed
    for name in ("calvin_env", "calvin_env.envs", "calvin_env.envs.play_table_env"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(CalvinNotAvailable, match=r"pip install -e calvin_env.*emu3-vla eval calvin-config"):
        evaluate_chains(settings(tmp_path / "c", backend="calvin", calvin_dataset=str(tmp_path)), num_chains=1)


@pytest.mark.slow
def test_emu3_policy_with_a_tiny_random_model_runs_a_chain(tmp_path):
    from test_policy import tiny_vla

    tiny_vla().save(tmp_path / "vla")
    m = evaluate_chains(settings(tmp_path / "e", policy=str(tmp_path / "vla"), ep_len=360), num_chains=1)
    assert m["chains"] == 1
    assert isinstance(m["malformed_decodes"], int) and m["malformed_decodes"] >= 0
    r = read_folder(tmp_path / "e")[0]
    assert sum(r.steps) >= 360 and np.isfinite(r.seconds)  # the full 360-step budget of its first subtask


def test_eval_instructions_are_validation_by_default_and_training_on_request():
    from envs import task_instructions
    from eval.evaluate import instructions_for_eval

    validation, training = instructions_for_eval(), instructions_for_eval("training")
    assert set(validation) == set(training) and len(validation) == 34
    seen = task_instructions("training")
    assert all(training[t] in seen[t] for t in training)
    assert all(validation[t] not in seen[t] for t in validation), "validation sentences must be unseen"
    with pytest.raises(ValueError, match="validation' or 'training'"):
        instructions_for_eval("test")


def test_suite_task_with_a_prefix_counts_a_failed_prefix_as_a_failed_attempt():
    from eval.evaluate import task_suite_metrics
    from eval.rollout import ChainJob

    jobs = [ChainJob(i, 0, {}, ["lift_red_block_table", "place_in_slider"]) for i in range(4)]
    results = [
        ChainResult(0, 0, {}, jobs[0].tasks, [True, True], [1, 1]),
        ChainResult(1, 0, {}, jobs[1].tasks, [True, False], [1, 1]),
        ChainResult(2, 0, {}, jobs[2].tasks, [False], [1]),
        ChainResult(3, 0, {}, jobs[3].tasks, [False], [1]),
    ]
    entry = task_suite_metrics(results, jobs)["place_in_slider"]
    assert entry["attempts"] == 4 and entry["reached"] == 2 and entry["prerequisite_failures"] == 2
    assert entry["success_rate"] == pytest.approx(1 / 4), "a failed prefix is a failed attempt"
    assert entry["success_rate_reached"] == pytest.approx(1 / 2)


def test_camera_sizes_render_playtable_at_the_requested_sizes_and_are_reported(tmp_path):
    """``--camera-sizes 64 32``: PlayTable renders those sizes (e.g. a model's training sizes) instead of
    CALVIN's 200 / 84, results.json says so, and another backend refuses the flag."""
    import argparse

    from eval.backends import make_env
    from eval.cli import _settings, register

    parser = argparse.ArgumentParser(prog="emu3-vla")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["eval", "tasks", "--out", str(tmp_path / "t"), "--camera-sizes", "64", "32"])
    chosen = _settings(args)
    assert chosen.camera_sizes == {"static": 64, "gripper": 32}
    env = make_env(chosen.backend, camera_sizes=chosen.camera_sizes)
    try:
        obs = env.reset()
        assert obs["rgb_obs"]["rgb_static"].shape == (64, 64, 3)
        assert obs["rgb_obs"]["rgb_gripper"].shape == (32, 32, 3)
    finally:
        env.close()
    m = evaluate_tasks(
        settings(tmp_path / "t", ep_len=3, camera_sizes=chosen.camera_sizes), tasks=["open_drawer"], per_task=1
    )
    assert json.loads((tmp_path / "t" / "results.json").read_text())["camera_sizes"] == {"static": 64, "gripper": 32}
    assert m["episodes"] == 1
    calvin = parser.parse_args(["eval", "calvin", "--out", "x", "--backend", "calvin", "--camera-sizes", "64", "32"])
    with pytest.raises(ValueError, match="--camera-sizes applies to --backend playtable only"):
        _settings(calvin)
