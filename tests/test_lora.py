"""LoRA fine-tuning: only adapters and action rows train; merged and adapter-only checkpoints load."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_train_overrides
from emu3_vla.checkpoint import Emu3Bundle
from emu3_vla.presets import get_preset
from emu3_vla.training.config import load_config
from emu3_vla.training.trainer import Trainer, train
from emu3_vla.vla import VLAModel

LAYOUT = get_preset("tiny").layout


def lora_overrides(data, vq, run, cache, **extra):
    return tiny_train_overrides(
        data, vq, run, cache, **{"lora.enabled": "true", "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.0, **extra}
    )


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory):
    """A 'pretrained' decoder to fine-tune (random weights stand in for Emu3's)."""
    folder = tmp_path_factory.mktemp("base") / "base"
    Emu3Bundle.from_preset("tiny", seed=5).save(folder)
    return folder


def test_lora_trains_adapters_and_action_rows_only(tiny_dataset, tiny_vq_dir, base_checkpoint, tmp_path):
    cfg = load_config(
        "train",
        lora_overrides(
            tiny_dataset, tiny_vq_dir, tmp_path / "run", tmp_path / "cache", **{"model.checkpoint": base_checkpoint}
        ),
    )
    trainer = Trainer(cfg)
    trainer.setup()
    trainable = {n for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "embed_tokens" in n or "lm_head" in n for n in trainable)
    result = trainer.fit()
    base = Emu3Bundle.load(base_checkpoint).decoder
    tuned = VLAModel.load(result.final_checkpoint).bundle.decoder
    rows = torch.tensor([*LAYOUT.action_range, LAYOUT.boa_id, LAYOUT.eoa_id])
    frozen = torch.ones(LAYOUT.vocab_size, dtype=torch.bool)
    frozen[rows] = False
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        before, after = base.get_parameter(name), tuned.get_parameter(name)
        assert torch.equal(before[frozen], after[frozen]), f"{name}: a non-action row moved"
        assert not torch.equal(before[rows], after[rows]), f"{name}: action rows did not train"
    assert torch.equal(base.model.norm.weight, tuned.model.norm.weight)  # not a LoRA target: frozen
    q_before = base.model.layers[0].self_attn.q_proj.weight
    q_after = tuned.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(q_before, q_after)  # the adapter is merged into the plain weight
    # The merged checkpoint computes what the adapted training model computes.
    ids = torch.randint(0, LAYOUT.vocab_size, (1, 20))
    with torch.no_grad():
        trainer.peft_model.eval()
        expected = trainer.peft_model(input_ids=ids).logits
        assert torch.allclose(tuned(input_ids=ids).logits, expected, atol=1e-5)


def test_adapter_only_checkpoint_loads_as_the_merged_model(tiny_dataset, tiny_vq_dir, base_checkpoint, tmp_path):
    common = {"model.checkpoint": base_checkpoint, "steps": 2}
    merged = train(
        load_config("train", lora_overrides(tiny_dataset, tiny_vq_dir, tmp_path / "m", tmp_path / "c", **common))
    )
    adapter = train(
        load_config(
            "train",
            lora_overrides(
                tiny_dataset, tiny_vq_dir, tmp_path / "a", tmp_path / "c", **common, **{"lora.save": "adapter"}
            ),
        )
    )
    folder = adapter.final_checkpoint
    assert not (folder / "decoder" / "model.safetensors").exists() and (folder / "adapter").is_dir()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    full = sum(p.stat().st_size for p in merged.final_checkpoint.rglob("*") if p.is_file())
    assert size < full
    ids = torch.randint(0, LAYOUT.vocab_size, (1, 16))
    with torch.no_grad():
        a = VLAModel.load(folder).bundle.decoder(input_ids=ids).logits
        m = VLAModel.load(merged.final_checkpoint).bundle.decoder(input_ids=ids).logits
    assert torch.allclose(a, m, atol=1e-5)


def test_lora_resume_continues_exactly(tiny_dataset, tiny_vq_dir, base_checkpoint, tmp_path):
    common = {"model.checkpoint": base_checkpoint}
    straight = train(
        load_config("train", lora_overrides(tiny_dataset, tiny_vq_dir, tmp_path / "s", tmp_path / "c", **common))
    )
    ckpt4 = straight.run_dir / "checkpoints" / "step_0000004"
    resumed = train(
        load_config(
            "train",
            lora_overrides(tiny_dataset, tiny_vq_dir, tmp_path / "r", tmp_path / "c", **common, resume=str(ckpt4)),
        )
    )
    assert [m["step"] for m in resumed.metrics] == [5, 6]
    assert [m["loss"] for m in resumed.metrics] == [m["loss"] for m in straight.metrics[4:]]
