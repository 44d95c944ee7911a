"""VLA training: losses, exact resume after a kill, checkpoint fallback, 1 vs 2 processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tiny_train_overrides
from emu3_vla.training.config import ConfigError, load_config
from emu3_vla.training.schedule import lr_factor
from emu3_vla.training.trainer import train
from emu3_vla.vla import VLAModel


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference_run(tiny_dataset, tiny_vq_dir, tmp_path_factory):
    """An uninterrupted 6-step run that the other tests compare against."""
    root = tmp_path_factory.mktemp("ref")
    cfg = load_config("train", tiny_train_overrides(tiny_dataset, tiny_vq_dir, root / "run", root / "cache"))
    result = train(cfg)
    return result


def test_training_writes_a_loadable_policy_checkpoint(reference_run):
    run = reference_run.run_dir
    rows = metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["loss"] > 0 and r["tokens"] > 0 for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]  # six steps at lr 1e-3 on four windows do fit
    assert (run / "loss.png").stat().st_size > 0 and (run / "config.yaml").is_file()
    steps = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert steps == ["step_0000002", "step_0000004", "step_0000006"]
    vla = VLAModel.load(run / "model")  # the symlink to the newest checkpoint
    assert vla.spec.views == ("static", "gripper") and vla.spec.frames == 2 and vla.spec.chunk == 10
    assert vla.views["static"].height == 32 and vla.action_tokenizer.time_horizon == 10


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    kw = {"total_steps": 100, "warmup_steps": 10, "min_ratio": 0.1}
    assert lr_factor(0, **kw) == pytest.approx(0.1) and lr_factor(9, **kw) == pytest.approx(1.0)
    assert lr_factor(55, **kw) == pytest.approx(0.55)
    assert lr_factor(100, **kw) == pytest.approx(0.1) and lr_factor(500, **kw) == pytest.approx(0.1)


def test_killed_run_resumes_bitwise(reference_run, tiny_dataset, tiny_vq_dir, tmp_path):
    # 12 steps with a checkpoint every 4: kill the process as soon as its first checkpoint exists.
    extra = {"steps": 12, "checkpoint.every": 4}
    overrides = tiny_train_overrides(
        tiny_dataset, tiny_vq_dir, tmp_path / "run", reference_run.run_dir.parent / "cache", **extra
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "emu3_vla.cli", "train", *overrides],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    first = tmp_path / "run" / "checkpoints" / "step_0000004"
    deadline = time.time() + 300
    while not first.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    killed_at = max(int(p.name[5:]) for p in (tmp_path / "run" / "checkpoints").glob("step_*"))
    assert killed_at < 12
    resumed = train(load_config("train", overrides))
    assert resumed.metrics[0]["step"] == killed_at + 1
    uninterrupted = train(
        load_config(
            "train",
            tiny_train_overrides(
                tiny_dataset, tiny_vq_dir, tmp_path / "ref", reference_run.run_dir.parent / "cache", **extra
            ),
        )
    )
    expected = [m["loss"] for m in uninterrupted.metrics]
    assert len(expected) == 12
    assert [m["loss"] for m in metrics(tmp_path / "run")] == expected  # bitwise, all 12 steps


def test_terminated_run_saves_its_finished_steps_and_resumes_bitwise(
    reference_run, tiny_dataset, tiny_vq_dir, tmp_path
):
    # SIGTERM (a scheduler, `kill`) between two scheduled checkpoints: the run saves the steps it
    # finished, continues from there, and ends with the checkpoints of a run never interrupted.
    extra = {"steps": 24, "checkpoint.every": 8, "checkpoint.keep_last": 5}
    cache = reference_run.run_dir.parent / "cache"
    run = tmp_path / "run"
    overrides = tiny_train_overrides(tiny_dataset, tiny_vq_dir, run, cache, **extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "emu3_vla.cli", "train", *overrides],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        if (run / "metrics.jsonl").is_file() and len(metrics(run)) >= 9:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    finished = len(metrics(run))
    assert 9 <= finished < 24
    saved = sorted(int(p.name[5:]) for p in (run / "checkpoints").glob("step_*"))
    assert saved[-1] == finished and "interrupted after step" in err  # not one finished step lost
    resumed = train(load_config("train", overrides))
    assert resumed.metrics[0]["step"] == finished + 1
    uninterrupted = train(
        load_config("train", tiny_train_overrides(tiny_dataset, tiny_vq_dir, tmp_path / "ref", cache, **extra))
    )
    assert [m["loss"] for m in metrics(run)] == [m["loss"] for m in uninterrupted.metrics]  # bitwise
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_0000008", "step_0000016", "step_0000024"]


def test_corrupt_latest_checkpoint_falls_back_with_a_warning(
    reference_run, tiny_dataset, tiny_vq_dir, tmp_path, caplog
):
    cache = reference_run.run_dir.parent / "cache"
    run = tmp_path / "run"
    train(load_config("train", tiny_train_overrides(tiny_dataset, tiny_vq_dir, run, cache, steps=4)))
    weights = run / "checkpoints" / "step_0000004" / "model" / "decoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with caplog.at_level("WARNING"):
        resumed = train(load_config("train", tiny_train_overrides(tiny_dataset, tiny_vq_dir, run, cache, steps=6)))
    assert "step_0000004" in caplog.text and "falling back to step 2" in caplog.text
    assert resumed.metrics[0]["step"] == 3
    reference = [r["loss"] for r in metrics(reference_run.run_dir)]
    assert [r["loss"] for r in metrics(run)] == reference


def test_two_gloo_processes_match_one(reference_run, tiny_dataset, tiny_vq_dir, tmp_path):
    overrides = tiny_train_overrides(
        tiny_dataset,
        tiny_vq_dir,
        tmp_path / "run",
        reference_run.run_dir.parent / "cache",
        **{"distributed.strategy": "ddp"},
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29517",
            "-m",
            "emu3_vla.cli",
            "train",
            *overrides,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = [r["loss"] for r in metrics(tmp_path / "run")]
    one = [r["loss"] for r in metrics(reference_run.run_dir)]
    assert two == pytest.approx(one, rel=1e-4)
    # The gathered checkpoint is a whole model again, whatever the sharding during training.
    assert VLAModel.load(tmp_path / "run" / "model").bundle.decoder.model.embed_tokens.weight.shape[0] == 3283


def test_bad_config_is_reported():
    with pytest.raises(ConfigError, match="data.root is required"):
        train(load_config("train", ["wandb.mode=disabled"]))
    with pytest.raises(ConfigError, match="bad config"):
        load_config("train", ["model=huge"])


def test_a_vision_loss_schedule_trains_actions_first_then_vision_too(
    reference_run, tiny_dataset, tiny_vq_dir, tmp_path
):
    """``loss.vision_from_step``: before it the batches weigh only action tokens (and, with the
    loss computed only where a weighted token follows, cost what action-only training costs)."""
    from emu3_vla.loss import action_token_mask
    from emu3_vla.training.trainer import Trainer

    cache = reference_run.run_dir.parent / "cache"
    overrides = tiny_train_overrides(tiny_dataset, tiny_vq_dir, tmp_path / "run", cache, **{"loss.vision_from_step": 3})
    trainer = Trainer(load_config("train", overrides))
    trainer.setup()
    for step, vision in ((0, False), (2, False), (3, True), (5, True)):
        for batch in trainer._micro_batches(step):
            actions = action_token_mask(batch["input_ids"], trainer.layout)
            weighted = batch["loss_weights"] > 0
            assert (weighted & actions).any()
            assert bool((weighted & ~actions).any()) == vision, f"step {step}"
            assert bool(((batch["labels"] != -100) & ~actions).any()) == vision
