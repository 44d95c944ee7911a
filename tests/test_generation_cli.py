"""``emu3-vla generate t2i|t2v|extend|i2t`` as a user runs it: files written, sizes, frame counts, errors."""

import av
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Emu3Config, Emu3ForConditionalGeneration

from emu3_vla.checkpoint import Emu3Bundle
from emu3_vla.cli import main
from emu3_vla.generation.media import write_mp4
from emu3_vla.modeling import build_vq
from emu3_vla.presets import get_preset
from emu3_vla.vocab import visual_token

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def decoded_frames(path):
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def test_t2i_writes_a_png_of_the_requested_size(tmp_path, capsys):
    out = tmp_path / "img.png"
    args = ["generate", "t2i", "--preset", "tiny", "--prompt", "open the drawer", "--size", "200x200"]
    assert main([*args, "--out", str(out), "--save-codes"]) == 0
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (200, 200) and img.mode == "RGB"
    codes = np.load(tmp_path / "img.png.codes.npy")
    assert codes.shape == (25, 25) and codes.min() >= 0 and codes.max() < 1024
    assert "25x25 codes" in capsys.readouterr().out


def test_t2i_prompt_file_gives_one_image_per_line(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red block\n\n  the drawer is open  \n", encoding="utf-8")
    out = tmp_path / "many.png"
    args = ["generate", "t2i", "--preset", "tiny", "--prompt-file", str(prompts), "--size", "16x24", "--cfg", "1"]
    assert main([*args, "--decoding", "greedy", "--out", str(out)]) == 0
    for name in ("many_000.png", "many_001.png"):
        with Image.open(tmp_path / name) as img:
            assert img.size == (24, 16)
    assert not out.exists()


def test_t2v_and_extend_write_decodable_mp4s(tmp_path):
    video = tmp_path / "clip.mp4"
    args = ["generate", "t2v", "--preset", "tiny", "--prompt", "slide the door", "--size", "32x40", "--frames", "2"]
    assert main([*args, "--out", str(video), "--fps", "10"]) == 0
    frames = decoded_frames(video)
    assert len(frames) == 8 and frames[0].shape == (32, 40, 3)  # 2 code frames x 4 video frames each

    longer = tmp_path / "longer.mp4"
    args = ["generate", "extend", "--preset", "tiny", "--video", str(video), "--frames", "1", "--save-codes"]
    assert main([*args, "--context-frames", "1", "--out", str(longer)]) == 0
    assert len(decoded_frames(longer)) == 8  # 1 context + 1 new code frame
    assert np.load(tmp_path / "longer.mp4.codes.npy").shape == (2, 4, 5)


def test_i2t_writes_the_text_it_prints(tmp_path, capsys):
    image = tmp_path / "frame.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "answer.txt"
    args = ["generate", "i2t", "--preset", "tiny", "--image", str(image), "--size", "24x32", "--max-new-tokens", "5"]
    assert main([*args, "--question", "what task is the robot doing?", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert out.read_text(encoding="utf-8") == printed.out
    assert '"tokens": ' in printed.err and "stopped_by" in printed.err


def test_generate_from_saved_checkpoints(tmp_path):
    """An emu3-vla checkpoint folder (what training saves) and a transformers Emu3 folder both work."""
    Emu3Bundle.from_preset("tiny", seed=4).save(tmp_path / "ours")
    out = tmp_path / "ours.png"
    args = ["generate", "t2i", "--checkpoint", str(tmp_path / "ours"), "--prompt", "x", "--size", "16x16"]
    assert main([*args, "--out", str(out)]) == 0
    assert Image.open(out).size == (16, 16)

    preset = get_preset("tiny")
    layout = preset.layout
    vocab = {f"t{i}": i for i in range(layout.text_size)}
    vocab.update(layout.special_tokens())
    vocab.update({visual_token(c): layout.code_to_id(c) for c in range(layout.codebook_size)})
    config = Emu3Config(
        text_config=preset.text_config().to_dict(), vq_config=preset.vq_config().to_dict(), vocabulary_map=vocab
    )
    torch.manual_seed(0)
    Emu3ForConditionalGeneration(config).save_pretrained(tmp_path / "hf")
    Emu3Bundle.from_preset("tiny", with_vq=False).text_tokenizer.save(tmp_path / "hf")
    image = tmp_path / "in.png"
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(image)
    hf = ["generate", "i2t", "--checkpoint", str(tmp_path / "hf"), "--image", str(image), "--max-new-tokens", "3"]
    assert main(hf) == 0


def run_error(capsys, args):
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_clear_errors(tmp_path, capsys):
    base = ["generate", "t2i", "--prompt", "x", "--out", str(tmp_path / "x.png")]
    assert "does not exist" in run_error(capsys, [*base, "--checkpoint", str(tmp_path / "missing")])
    assert "multiple of the VQ tokenizer's 8x" in run_error(capsys, [*base, "--preset", "tiny", "--size", "30x30"])
    assert "context of 4096" in run_error(capsys, [*base, "--preset", "tiny", "--size", "800x800"])

    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    t2i = ["generate", "t2i", "--preset", "tiny", "--out", str(tmp_path / "y.png")]
    assert "has no prompts" in run_error(capsys, [*t2i, "--prompt-file", str(empty)])
    assert "prompt file" in run_error(capsys, [*t2i, "--prompt-file", str(tmp_path / "none.txt")])
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert "not UTF-8" in run_error(capsys, [*t2i, "--prompt-file", str(binary)])

    assert "temperature" in run_error(capsys, [*t2i, "--prompt", "x", "--temperature", "0"])
    bad_image = tmp_path / "bad.png"
    bad_image.write_text("not an image")
    i2t = ["generate", "i2t", "--preset", "tiny", "--image", str(bad_image)]
    assert "not a readable image" in run_error(capsys, i2t)

    short = tmp_path / "short.mp4"
    write_mp4(np.zeros((3, 16, 16, 3), dtype=np.uint8), short)
    ext = ["generate", "extend", "--preset", "tiny", "--video", str(short), "--out", str(tmp_path / "z.mp4")]
    assert "at least 4" in run_error(capsys, ext)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "z.mp4").exists()


def test_a_vq_tokenizer_from_another_model_is_rejected(tmp_path, capsys):
    bundle = Emu3Bundle.from_preset("tiny", with_vq=False)
    bundle.vq = build_vq("tiny", codebook_size=512)
    bundle.save(tmp_path / "mixed")
    args = ["generate", "t2i", "--checkpoint", str(tmp_path / "mixed"), "--prompt", "x", "--size", "16x16"]
    assert "VQ tokenizer has 512 codes but the decoder's vocabulary has 1024" in run_error(capsys, args)


def test_model_source_is_required(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "t2i", "--prompt", "x"])
    assert "--checkpoint" in capsys.readouterr().err
