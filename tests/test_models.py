"""Decoder presets, generation, and checkpoint save/load in both folder formats."""

import json

import pytest
import torch
from transformers import Emu3Config, Emu3ForConditionalGeneration

from emu3_vla.checkpoint import CheckpointError, Emu3Bundle
from emu3_vla.modeling import build_decoder, count_parameters
from emu3_vla.presets import get_preset
from emu3_vla.vocab import visual_token


def test_emu3_8b_preset_has_8_49b_parameters_without_allocating():
    model = build_decoder("emu3-8b", device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    n = count_parameters(model)
    assert round(n / 1e9, 2) == 8.49
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (32, 4096, 14336)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size) == (32, 8, 184622)
    assert cfg.rope_parameters["rope_theta"] == 1e6 and cfg.max_position_embeddings == 9216


def test_unknown_preset_lists_the_choices():
    with pytest.raises(KeyError, match="tiny"):
        get_preset("huge")


def test_tiny_forward_and_20_token_generate():
    bundle = Emu3Bundle.from_preset("tiny", seed=0, with_vq=False)
    layout = bundle.layout
    prompt = torch.tensor([[layout.bos_id, *bundle.text_tokenizer.encode("open the drawer"), layout.boa_id]])
    logits = bundle.decoder(prompt).logits
    assert logits.shape == (1, prompt.shape[1], layout.vocab_size)
    assert torch.isfinite(logits).all()
    out = bundle.decoder.generate(
        prompt, max_new_tokens=20, min_new_tokens=20, do_sample=False, pad_token_id=layout.pad_id
    )
    assert out.shape == (1, prompt.shape[1] + 20)
    assert torch.equal(out[:, : prompt.shape[1]], prompt)
    # Greedy generation is the argmax continuation: the first new token is the last logit's argmax.
    assert out[0, prompt.shape[1]] == logits[0, -1].argmax()


def _logits(decoder, ids):
    with torch.no_grad():
        return decoder(ids).logits


def test_save_load_gives_identical_logits(tmp_path):
    bundle = Emu3Bundle.from_preset("tiny", seed=3)
    ids = torch.randint(0, bundle.layout.vocab_size, (2, 17))
    bundle.save(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "decoder" / "model.safetensors").is_file()
    loaded = Emu3Bundle.load(tmp_path / "ckpt")
    assert loaded.layout == bundle.layout and loaded.preset == "tiny"
    assert torch.equal(_logits(bundle.decoder, ids), _logits(loaded.decoder, ids))
    for a, b in zip(bundle.vq.state_dict().values(), loaded.vq.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert loaded.text_tokenizer.encode("lift the red block") == bundle.text_tokenizer.encode("lift the red block")


def test_save_overwrites_atomically(tmp_path):
    first = Emu3Bundle.from_preset("tiny", seed=1, with_vq=False)
    second = Emu3Bundle.from_preset("tiny", seed=2, with_vq=False)
    first.save(tmp_path / "ckpt")
    second.save(tmp_path / "ckpt")
    ids = torch.arange(10)[None]
    assert torch.equal(_logits(Emu3Bundle.load(tmp_path / "ckpt").decoder, ids), _logits(second.decoder, ids))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary folders left behind


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        Emu3Bundle.load(tmp_path / "nope")


def test_folder_without_markers_is_rejected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not an Emu3 checkpoint"):
        Emu3Bundle.load(tmp_path / "empty")


def test_missing_decoder_weights_are_named(tmp_path):
    Emu3Bundle.from_preset("tiny", with_vq=False).save(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "decoder" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no \\*.safetensors"):
        Emu3Bundle.load(tmp_path / "ckpt")


def test_truncated_weights_are_named(tmp_path):
    Emu3Bundle.from_preset("tiny", with_vq=False).save(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "decoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        Emu3Bundle.load(tmp_path / "ckpt")


def test_corrupt_marker_is_named(tmp_path):
    Emu3Bundle.from_preset("tiny", with_vq=False).save(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "emu3_vla.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="emu3_vla.json"):
        Emu3Bundle.load(tmp_path / "ckpt")


def _tiny_transformers_checkpoint(folder):
    """A real Emu3ForConditionalGeneration folder, as transformers writes it, at tiny size."""
    preset = get_preset("tiny")
    layout = preset.layout
    vocab = {f"t{i}": i for i in range(layout.text_size)}
    vocab.update(layout.special_tokens())
    vocab.update({visual_token(c): layout.code_to_id(c) for c in range(layout.codebook_size)})
    config = Emu3Config(
        text_config=preset.text_config().to_dict(), vq_config=preset.vq_config().to_dict(), vocabulary_map=vocab
    )
    torch.manual_seed(0)
    model = Emu3ForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    Emu3Bundle.from_preset("tiny", with_vq=False).text_tokenizer.save(folder)
    return model


def test_loads_transformers_emu3_folder(tmp_path):
    full = _tiny_transformers_checkpoint(tmp_path / "hf")
    bundle = Emu3Bundle.load(tmp_path / "hf")
    assert bundle.layout == get_preset("tiny").layout
    ids = torch.randint(0, bundle.layout.vocab_size, (1, 12))
    with torch.no_grad():
        expected = full(input_ids=ids).logits
    assert torch.allclose(_logits(bundle.decoder, ids), expected, atol=1e-5)
    for name, tensor in full.model.vqmodel.state_dict().items():
        assert torch.equal(bundle.vq.state_dict()[name], tensor)


def test_transformers_folder_with_wrong_model_type(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="model_type='llama'"):
        Emu3Bundle.load(tmp_path / "x")
