"""Weight averaging: the update rule, what a checkpoint deploys, and exact resume with an average."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_train_overrides
from emu3_vla.training.config import ConfigError, load_config
from emu3_vla.training.ema import WeightEMA
from emu3_vla.training.trainer import STATE_FILE, train


def test_average_follows_the_warmed_up_decay():
    layer = torch.nn.Linear(3, 2)
    start = layer.weight.detach().clone()
    ema = WeightEMA(layer, decay=0.9)
    # First update: effective decay min(0.9, 1/10) = 0.1, so the average moves 90 % of the way.
    with torch.no_grad():
        layer.weight.add_(1.0)
    ema.update(layer)
    torch.testing.assert_close(ema.shadow["weight"], start + 0.9)
    # Much later the configured decay applies: 10 % of the way.
    ema.updates = 1000
    with torch.no_grad():
        layer.weight.add_(1.0)
    ema.update(layer)
    torch.testing.assert_close(ema.shadow["weight"], start + 0.9 + 0.1 * 1.1)


def test_averaged_state_keeps_buffers_and_dtypes():
    model = torch.nn.BatchNorm1d(4).to(torch.bfloat16)
    ema = WeightEMA(model, decay=0.5)
    ema.shadow["weight"].fill_(3.0)
    state = ema.averaged(model.state_dict())
    assert state.keys() == model.state_dict().keys()
    assert state["weight"].dtype == torch.bfloat16 and torch.all(state["weight"] == 3.0)
    assert torch.equal(state["running_mean"], model.running_mean)  # buffers are not averaged


def test_bad_decay_is_refused():
    for decay in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="ema.decay"):
            WeightEMA(torch.nn.Linear(2, 2), decay)


def _decoder_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "decoder" / "model.safetensors"))


def test_checkpoints_deploy_the_average_and_resume_exactly(tiny_dataset, tiny_vq_dir, tmp_path):
    cache = tmp_path / "cache"

    def overrides(run: str, steps: int) -> list[str]:
        return tiny_train_overrides(tiny_dataset, tiny_vq_dir, tmp_path / run, cache, steps=steps, **{"ema.decay": 0.5})

    full = train(load_config("train", overrides("full", 6)))
    ckpt = tmp_path / "full" / "checkpoints" / "step_0000006"
    state = torch.load(ckpt / STATE_FILE, weights_only=True)
    deployed = _decoder_weights(ckpt / "model")
    raw = state["training_weights"]
    averaged = state["ema"]["shadow"]
    assert state["ema"]["updates"] == 6
    name = next(k for k in averaged if "layers.0.mlp" in k)
    torch.testing.assert_close(deployed[name], averaged[name])  # model/ is the average ...
    assert not torch.equal(deployed[name], raw[name])  # ... not the last step's weights

    # A run that lost its last checkpoint resumes from step 4 and reproduces the uninterrupted run,
    # losses and averaged weights alike: the raw weights and the average both come back.
    shutil.copytree(tmp_path / "full", tmp_path / "resumed", symlinks=True)
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step_0000006")
    resumed = train(load_config("train", overrides("resumed", 6)))
    assert resumed.metrics[0]["step"] == 5
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == [m["loss"] for m in full.metrics]
    again = _decoder_weights(tmp_path / "resumed" / "checkpoints" / "step_0000006" / "model")
    for key, value in deployed.items():
        assert torch.equal(again[key], value), key


def test_weight_average_with_lora_is_a_config_error(tiny_dataset, tiny_vq_dir, tmp_path):
    cfg = load_config(
        "train",
        tiny_train_overrides(
            tiny_dataset, tiny_vq_dir, tmp_path / "run", tmp_path / "cache", **{"ema.decay": 0.9, "lora.enabled": True}
        ),
    )
    with pytest.raises(ConfigError, match="lora"):
        train(cfg)
