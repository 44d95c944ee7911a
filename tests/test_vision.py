"""VQ tokenizer wrapper: shapes, equality with the stock transformers methods, and errors."""

import numpy as np
import pytest
import torch

from emu3_vla.commands import synthetic_image
from emu3_vla.modeling import build_vq
from emu3_vla.vision import VisionTokenizer, resize_images, to_pixels


@pytest.fixture(scope="module")
def vision():
    return VisionTokenizer(build_vq("tiny", seed=0))


def _images(n, size, seed=0):
    return np.stack([synthetic_image(size, seed + i) for i in range(n)])


@pytest.mark.parametrize(("size", "codes"), [(200, 25), (80, 10)])
def test_image_encode_decode_shapes(vision, size, codes):
    out = vision.encode_images(_images(3, size))
    assert out.shape == (3, codes, codes) and out.dtype == torch.long
    assert int(out.min()) >= 0 and int(out.max()) < vision.codebook_size
    images = vision.decode_images(out)
    assert images.shape == (3, size, size, 3) and images.dtype == torch.uint8


def test_clip_of_8_frames_gives_2_code_frames(vision):
    clip = _images(8, 80)
    codes = vision.encode_video(clip)
    assert codes.shape == (2, 10, 10)
    frames = vision.decode_video(codes)
    assert frames.shape == (8, 80, 80, 3) and frames.dtype == torch.uint8


def test_still_image_fast_path_equals_stock_encode_and_decode(vision):
    images = _images(2, 80, seed=5)
    pixels = to_pixels(images)
    stock = vision.vq.encode(pixels, torch.tensor([[80, 80]] * 2)).image_tokens
    ours = vision.encode_images(images)
    assert torch.equal(torch.stack(stock), ours)
    with torch.no_grad():
        stock_pixels = vision.vq.decode(ours)
        ours_pixels = vision.decode_latents(vision.code_embeddings(ours.unsqueeze(1)), still=True)
    assert torch.allclose(stock_pixels, ours_pixels, atol=1e-5)


def test_clip_path_equals_stock(vision):
    clip = _images(4, 40, seed=9)
    pixels = to_pixels(clip).unsqueeze(0)
    stock = vision.vq.encode(pixels, torch.tensor([[40, 40]])).image_tokens[0]
    assert torch.equal(stock, vision.encode_video(clip))


def test_calvin_views_resize_wrist_84_to_80(vision):
    wrist = _images(2, 84)
    assert vision.prepare_view(wrist, "gripper").shape == (2, 80, 80, 3)
    assert vision.encode_view(wrist, "gripper").shape == (2, 10, 10)
    assert vision.encode_view(_images(1, 200), "static").shape == (1, 25, 25)


def test_resize_is_a_no_op_at_the_same_size():
    img = _images(1, 80)
    assert np.array_equal(resize_images(img, 80, 80).numpy(), img)


def test_bad_inputs_raise_clear_errors(vision):
    with pytest.raises(ValueError, match="multiple of the tokenizer's 8x"):
        vision.encode_images(_images(1, 84))
    with pytest.raises(TypeError, match="uint8"):
        vision.encode_images(np.zeros((1, 80, 80, 3), np.float32))
    with pytest.raises(ValueError, match="temporal compression"):
        vision.encode_video(_images(6, 40))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 1024\)"):
        vision.decode_images(torch.full((1, 2, 2), 5000))
    with pytest.raises(KeyError, match="configured views"):
        vision.encode_view(_images(1, 80), "overhead")
