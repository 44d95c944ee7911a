"""The demo: its report helpers, and a smoke test that runs ``emu3-vla demo --quick`` end to end.

The smoke test is the CI check the demo issue asks for: every stage runs on 2 CPU cores (collect,
FAST, VQ, token cache, VLA training, closed-loop evaluation, random baseline, report) and every
artefact it promises exists and parses. It proves the pipeline, not the policy's quality (the
quick sizes train nothing useful); the full demo's numbers are measured by running it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from eval.demo.report import compare_runs, family_table, task_table


def test_task_table_lists_all_34_tasks_with_trained_flags():
    suite = {"per_task": {"open_drawer": {"success_rate": 0.5, "attempts": 4}}}
    untrained = {"per_task": {"lift_red_block_table": {"success_rate": 0.0, "attempts": 2}}}
    random = {"per_task": {"open_drawer": {"success_rate": 0.25, "attempts": 4}}}
    table = task_table(["open_drawer", "close_drawer"], suite, untrained, random)
    assert len(table) == 34
    assert table["open_drawer"] == {
        "family": "articulated",
        "trained": True,
        "success_rate": 0.5,
        "episodes": 4,
        "random_success_rate": 0.25,
    }
    assert table["close_drawer"]["trained"] and table["close_drawer"]["success_rate"] is None
    assert table["lift_red_block_table"] == {
        "family": "lift",
        "trained": False,
        "success_rate": 0.0,
        "episodes": 2,
        "random_success_rate": None,
    }


def test_family_table_averages_the_measured_tasks_of_each_family():
    table = task_table(
        ["open_drawer", "close_drawer", "lift_red_block_table"],
        {
            "per_task": {
                t: {"success_rate": r, "attempts": 10} for t, r in [("open_drawer", 1.0), ("close_drawer", 0.5)]
            }
        },
        {"per_task": {"lift_red_block_table": {"success_rate": 0.2, "attempts": 10}}},
        {},
    )
    families = family_table(table)
    assert families["articulated"] == {"tasks": 2, "success_rate": 0.75}
    assert families["lift"] == {"tasks": 1, "success_rate": 0.2}
    assert "rotate" not in families  # no rotate task was measured


def test_compare_runs_reads_every_variant(tmp_path: Path):
    (tmp_path / "results.json").write_text(
        json.dumps({"ablation": "none", "single_task": {"sr@1": 0.7}, "random_single_task": {"sr@1": 0.01}})
    )
    (tmp_path / "results_blind.json").write_text(json.dumps({"ablation": "blind", "single_task": {"sr@1": 0.2}}))
    (tmp_path / "results_broken.json").write_text("{not json")
    assert compare_runs(tmp_path) == {"main": 0.7, "random": 0.01, "blind": 0.2}


def _check_png(path: Path, min_size: int = 100) -> None:
    from PIL import Image

    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size[0] >= min_size and im.size[1] >= min_size, f"{path} is {im.size}"


def _count_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.slow
def test_demo_quick_runs_end_to_end_and_writes_every_artefact(tmp_path: Path):
    run_dir = tmp_path / "demo"
    cmd = [sys.executable, "-m", "emu3_vla.cli", "demo", "--quick", f"run_dir={run_dir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "=== emu3-vla demo ===" in proc.stdout and str(run_dir / "results.json") in proc.stdout

    report = json.loads((run_dir / "results.json").read_text())
    tasks = report["tasks"]
    assert report["ablation"] == "none"
    assert report["data"]["episodes"] == 3 * len(tasks)
    assert report["fast"]["mean_tokens_per_chunk"] > 0
    assert 0 < report["vq"]["psnr_static"] < 60
    assert Path(report["training"]["checkpoint"]).is_dir()
    suite = report["single_task"]
    assert set(suite["per_task"]) == set(tasks)
    assert 0.0 <= suite["sr@1"] <= 1.0
    assert all(e["attempts"] == 1 for e in suite["per_task"].values())
    assert set(report["random_single_task"]["per_task"]) == set(tasks)
    assert len(report["table"]) == 34 and sum(r["trained"] for r in report["table"].values()) == len(tasks)
    assert report["chains"]["chains"] == 1 and 0 <= report["chains"]["avg_len"] <= 5
    assert set(report["comparison"]) == {"main", "random"}
    curve = report["learning_curve"]
    assert [p["step"] for p in curve["points"]] == [10, 20] and all(p["chains"] == 1 for p in curve["points"])
    _check_png(run_dir / "learning_curve.png")

    i2t = report["generation"]["i2t"]
    assert i2t["test_frames"] > 0 and 0.0 <= i2t["after_tuning"]["accuracy"] <= 1.0
    assert i2t["after_tuning"]["tasks"] == len(tasks)
    # trained on actions only: no picture is presented as its generation, and the report says why
    assert not (run_dir / "t2i.png").exists() and "t2i" not in report["generation"]
    assert any("action tokens only" in note for note in report["generation"]["notes"])
    assert set(report["stage_seconds"]) >= {"collect", "fast", "vq", "train", "single tasks", "chains"}
    assert (run_dir / "eval_main" / "tasks" / "report.html").is_file()
    _check_png(run_dir / "loss.png")
    _check_png(run_dir / "success_per_task.png")
    videos = sorted((run_dir / "videos").glob("*.mp4"))
    assert videos, "no rollout videos"
    assert all(_count_frames(v) > 1 for v in videos)
    metrics = [json.loads(line) for line in (run_dir / "train_main" / "metrics.jsonl").read_text().splitlines()]
    assert metrics and all("loss" in m for m in metrics if "step" in m)

    # Every stage is cached: a rerun skips them all and rewrites the same numbers.
    assert "leaked semaphore" not in proc.stderr and "pybullet build time" not in proc.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count(": cached (") >= 8, again.stdout
    assert json.loads((run_dir / "results.json").read_text())["single_task"] == suite

    # The on-policy round: data from the driver's states, a fine-tune, evaluations of its weights; everything
    # before it stays cached. (The 20-step model leaves states even the expert cannot recover from, so
    # a randomised scripted expert drives here; `collect-on-policy` itself is tested with both drivers.)
    extra = ["on_policy.chains=2", "on_policy.steps=4", "on_policy.policy=expert", "on_policy.repeat=2"]
    rounds = subprocess.run([*cmd, *extra], capture_output=True, text=True, timeout=600)
    assert rounds.returncode == 0, rounds.stdout[-3000:] + rounds.stderr[-3000:]
    assert "train VLA (main): cached" in rounds.stdout and "collect demonstrations: cached" in rounds.stdout
    # the main run's curve points stay: the curve follows its checkpoints, and the final point is the round's
    assert "curve: step 10: cached" in rounds.stdout, rounds.stdout
    tuned = json.loads((run_dir / "results.json").read_text())
    data = tuned["on_policy"]["data"]
    assert data["chains"] == 2 and data["episodes"] == sum(data["episodes_by_kind"].values())
    assert tuned["on_policy"]["training"]["steps"] == 4
    assert Path(tuned["on_policy"]["training"]["checkpoint"]).parts[-4] == "train_main_on_policy"
    fine_tune = OmegaConf.load(run_dir / "train_main_on_policy" / "config.yaml")
    assert list(fine_tune.data.repeats) == [1, 2]  # the on-policy windows drawn twice per epoch
    assert "on-policy round" in rounds.stdout and set(tuned["single_task"]["per_task"]) == set(tasks)
