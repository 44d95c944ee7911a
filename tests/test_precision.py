"""Training precision: which dtype a config resolves to, and bf16 autocast with attention kept in fp32.

The bf16 path runs on any CPU (emulated where the CPU has no AMX, only slower); the speed it buys
on an AMX CPU is measured by ``bench/precision_bench.py``, not here.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from conftest import tiny_train_overrides
from emu3_vla.modeling import build_decoder
from emu3_vla.training import precision
from emu3_vla.training.config import ConfigError, load_config
from emu3_vla.training.precision import SDPA_FP32, prepare_for_precision, resolve_precision
from emu3_vla.training.trainer import train
from emu3_vla.vla import VLAModel

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize("native", [True, False])
def test_precision_resolves_per_device_and_hardware(monkeypatch, native):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("fp32", CUDA) == "fp32" and resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("auto", CUDA) == "bf16" and resolve_precision("native", CUDA) == "bf16"
    assert resolve_precision("auto", CPU) == "fp32"  # the classic CPU recipe, whatever the CPU
    assert resolve_precision("native", CPU) == ("bf16" if native else "fp32")


def test_unknown_precision_names_the_choices():
    with pytest.raises(ConfigError, match="auto, fp32, bf16, native"):
        resolve_precision("fp16", CPU)


def test_sdpa_fp32_computes_attention_in_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    model = build_decoder("tiny", seed=0)
    attention = model.model.layers[0].self_attn
    q, k, v = (torch.randn(2, 4, 40, 32, dtype=torch.bfloat16) for _ in range(3))
    k, v = k[:, :2], v[:, :2]  # grouped-query attention: 4 query heads, 2 key/value heads
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = ALL_ATTENTION_FUNCTIONS[SDPA_FP32](attention, q, k, v, None, dropout=0.0, scaling=32**-0.5)
    reference = torch.nn.functional.scaled_dot_product_attention(
        q.float(), k.float().repeat_interleave(2, 1), v.float().repeat_interleave(2, 1), is_causal=True
    )
    assert out.dtype == torch.bfloat16
    # transformers returns (batch, seq, heads, head_dim); the reference is (batch, heads, seq, head_dim)
    torch.testing.assert_close(out, reference.transpose(1, 2).to(torch.bfloat16), rtol=0, atol=0)


def test_only_bf16_training_on_cpu_switches_the_attention(tmp_path):
    model = build_decoder("tiny", seed=0)
    assert not prepare_for_precision(model, "fp32", CPU)
    assert not prepare_for_precision(model, "bf16", CUDA)  # the GPU's bf16 attention kernels are fast
    assert model.config._attn_implementation == "sdpa"
    eager = build_decoder("tiny", seed=0, attn_implementation="eager")
    assert not prepare_for_precision(eager, "bf16", CPU) and eager.config._attn_implementation == "eager"
    assert prepare_for_precision(model, "bf16", CPU) and model.config._attn_implementation == SDPA_FP32
    ids = torch.randint(0, 3000, (2, 30))
    with torch.no_grad():
        fp32 = build_decoder("tiny", seed=0)(input_ids=ids).logits
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(input_ids=ids).logits
    assert bf16.dtype == torch.bfloat16
    torch.testing.assert_close(bf16.float(), fp32, rtol=0.05, atol=0.05)
    model.save_pretrained(tmp_path)  # a training-only setting: checkpoints load with the stock SDPA
    assert "attn_implementation" not in json.loads((tmp_path / "config.json").read_text())


def test_bf16_training_on_cpu_learns_and_saves_a_stock_checkpoint(tiny_dataset, tiny_vq_dir, tmp_path):
    overrides = tiny_train_overrides(tiny_dataset, tiny_vq_dir, tmp_path / "run", tmp_path / "cache", precision="bf16")
    result = train(load_config("train", overrides))
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and rows[-1]["loss"] < rows[0]["loss"]
    vla = VLAModel.load(result.run_dir / "model")
    assert vla.bundle.decoder.config._attn_implementation == "sdpa"
    assert all(p.dtype == torch.float32 for p in vla.bundle.decoder.parameters())  # fp32 master weights


def test_trainer_refuses_an_unknown_precision_before_touching_data(tmp_path):
    from emu3_vla.training.trainer import Trainer

    cfg = load_config("train", [f"run_dir={tmp_path / 'run'}", "precision=fp16", f"data.root={tmp_path / 'none'}"])
    with pytest.raises(ConfigError, match="precision must be one of"):
        Trainer(cfg)  # the missing dataset would only be noticed in setup()
