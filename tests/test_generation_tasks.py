"""Generation tasks on a tiny random model: grid structure, extension, image-to-text, caption scoring."""

import numpy as np
import pytest
import torch

from emu3_vla.checkpoint import Emu3Bundle
from emu3_vla.decoding import GREEDY, Sampler
from emu3_vla.generation import (
    evaluate_captions,
    extend_video,
    generation_prompt,
    image_to_text,
    score_captions,
    text_to_image,
    text_to_video,
)
from emu3_vla.generation.caption_eval import DEFAULT_QUESTION, name_task, word_f1

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bundle():
    return Emu3Bundle.from_preset("tiny", seed=7, with_vq=False)


def assert_grid_stream(tokens, layout, height, width, frames):
    """Check a generated token stream position by position: rows of codes, EOL, EOF, then EOV, EOS."""
    tokens = list(tokens)
    assert len(tokens) == frames * (height * (width + 1) + 1) + 2
    i = 0
    for _ in range(frames):
        for _ in range(height):
            row = tokens[i : i + width]
            assert all(layout.visual_base <= t < layout.vocab_size for t in row), row
            assert tokens[i + width] == layout.eol_id
            i += width + 1
        assert tokens[i] == layout.eof_id
        i += 1
    assert tokens[i:] == [layout.eov_id, layout.eos_id]


def bias_hook(decoder, ids, amount):
    """A forward hook that adds ``amount`` to the logits of ``ids`` at every position of every row."""

    def hook(module, args, kwargs, output):
        output.logits[..., ids] += amount
        return output

    return decoder.register_forward_hook(hook, with_kwargs=True)


SETTINGS = [
    (GREEDY, 3.0),
    (Sampler(), 3.0),
    (Sampler(temperature=1.5, top_k=50), None),
    (Sampler(temperature=0.7, top_p=0.9), 1.5),
]


@pytest.mark.parametrize(("sampler", "cfg"), SETTINGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_text_to_image_grids_are_exact(bundle, sampler, cfg, seed):
    out = text_to_image(
        bundle, ["a red block", "the drawer is open"], height=3, width=4, sampler=sampler, seed=seed, guidance_scale=cfg
    )
    assert out.codes.shape == (2, 1, 3, 4) and out.images.shape == (2, 3, 4)
    for row in range(2):
        assert_grid_stream(out.output.row(row), bundle.layout, 3, 4, 1)
        expected = bundle.layout.id_to_code(torch.tensor(out.output.row(row)[:-3]).reshape(3, 5)[:, :4])
        assert torch.equal(out.images[row], expected)


@pytest.mark.parametrize(("sampler", "cfg"), SETTINGS[:3])
def test_text_to_video_frames_are_exact(bundle, sampler, cfg):
    out = text_to_video(bundle, "a robot arm", height=2, width=3, frames=3, sampler=sampler, seed=3, guidance_scale=cfg)
    assert out.codes.shape == (1, 3, 2, 3)
    assert_grid_stream(out.output.row(0), bundle.layout, 2, 3, 3)


def test_the_mask_enforces_structure_against_a_model_that_wants_other_tokens(bundle):
    layout = bundle.layout
    wrong = [layout.eos_id, layout.eov_id, layout.pad_id, *range(50)]  # EOS, EOV, pad and text ids
    handle = bias_hook(bundle.decoder, wrong, 1e4)
    try:
        image = text_to_image(bundle, "x", height=3, width=4, sampler=Sampler(), seed=0, trace=True)
        video = text_to_video(bundle, "y", height=2, width=2, frames=2, sampler=GREEDY, guidance_scale=None)
    finally:
        handle.remove()
    # Without the mask every step would have picked one of the wrong tokens...
    assert all(int(step.guided_logits[0].argmax()) in wrong for step in image.output.trace)
    # ...with it, the structure holds anyway.
    assert_grid_stream(image.output.row(0), layout, 3, 4, 1)
    assert_grid_stream(video.output.row(0), layout, 2, 2, 2)


def test_a_25x25_image_grid(bundle):
    out = text_to_image(bundle, "open the drawer", height=25, width=25, seed=2)
    assert out.images.shape == (1, 25, 25)
    assert_grid_stream(out.output.row(0), bundle.layout, 25, 25, 1)


def test_extension_keeps_the_context_and_continues_it(bundle):
    rng = np.random.default_rng(0)
    context = rng.integers(0, bundle.layout.codebook_size, size=(2, 2, 3))
    out = extend_video(bundle, context, ["go on", "more"], frames=2, seed=5)
    assert out.codes.shape == (2, 4, 2, 3)
    for row in range(2):
        assert np.array_equal(out.codes[row, :2].numpy(), context)
    assert_grid_stream(out.output.row(0), bundle.layout, 2, 3, 2)
    # The prompt the model continued really holds the context frames.
    prompt = generation_prompt("go on", 2, 3, bundle.layout, bundle.text_tokenizer, context=context)
    assert len(prompt) == len(generation_prompt("go on", 2, 3, bundle.layout, bundle.text_tokenizer)) + 2 * 9


def test_greedy_extension_of_a_generated_video_reproduces_it(bundle):
    """Conditioning on frames works: extending the first frame of a greedy video gives the same video."""
    video = text_to_video(bundle, "slide the door", height=2, width=3, frames=3, sampler=GREEDY, guidance_scale=2.0)
    extended = extend_video(bundle, video.codes[0, :1], "slide the door", frames=2, sampler=GREEDY, guidance_scale=2.0)
    assert torch.equal(extended.codes, video.codes)
    other = extend_video(bundle, (video.codes[0, :1] + 1) % 1024, "slide the door", frames=2, sampler=GREEDY)
    assert not torch.equal(other.codes[:, 1:], video.codes[:, 1:])


def test_extension_rejects_context_of_the_wrong_shape(bundle):
    with pytest.raises(ValueError, match="code frame"):
        extend_video(bundle, np.zeros((3, 4), dtype=np.int64), "x", frames=1)
    with pytest.raises(ValueError, match="codebook"):
        extend_video(bundle, np.full((1, 2, 2), 5000), "x", frames=1)


# ------------------------------------------------------------------ image to text
def _codes(bundle, n, h=3, w=3, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).integers(0, bundle.layout.codebook_size, size=(n, h, w)))


def test_image_to_text_stops_at_eos(bundle):
    layout = bundle.layout
    calls = []

    def eos_from_third_step(module, args, kwargs, output):
        calls.append(1)
        if len(calls) >= 3:
            output.logits[..., layout.eos_id] += 1e4
        return output

    handle = bundle.decoder.register_forward_hook(eos_from_third_step, with_kwargs=True)
    try:
        out = image_to_text(bundle, _codes(bundle, 1), "what is this?", max_new_tokens=20)
    finally:
        handle.remove()
    tokens = out.output.row(0)
    assert len(tokens) == 3 and tokens[-1] == layout.eos_id
    assert all(t < bundle.text_tokenizer.text_vocab_size() for t in tokens[:-1])
    assert bool(out.output.finished[0])
    assert out.texts[0] == bundle.text_tokenizer.decode(tokens[:-1]).strip()


def test_image_to_text_respects_max_new_tokens_without_eos(bundle):
    handle = bias_hook(bundle.decoder, [bundle.layout.eos_id], -1e4)
    try:
        out = image_to_text(bundle, _codes(bundle, 2), max_new_tokens=7, sampler=Sampler(), seed=1)
    finally:
        handle.remove()
    assert out.output.lengths.tolist() == [7, 7] and not out.output.finished.any()
    assert out.output.tokens.shape == (2, 7)


def test_a_finished_row_pads_while_the_other_continues(bundle):
    layout = bundle.layout

    def row0_stops(module, args, kwargs, output):
        output.logits[0, :, layout.eos_id] += 1e4
        output.logits[1:, :, layout.eos_id] -= 1e4
        return output

    handle = bundle.decoder.register_forward_hook(row0_stops, with_kwargs=True)
    try:
        out = image_to_text(bundle, _codes(bundle, 2), max_new_tokens=5)
    finally:
        handle.remove()
    assert out.output.tokens[0].tolist() == [layout.eos_id] + [layout.pad_id] * 4
    assert out.output.lengths.tolist() == [1, 5] and out.output.finished.tolist() == [True, False]
    assert out.texts[0] == ""


def test_image_to_text_greedy_and_sampling(bundle):
    images = [_codes(bundle, 1, 2, 2)[0], _codes(bundle, 1, 3, 4, seed=1)[0]]  # different sizes in one batch
    greedy = image_to_text(bundle, images, "caption:", max_new_tokens=6)
    alone = image_to_text(bundle, images[1:], "caption:", max_new_tokens=6)
    assert greedy.output.row(1) == alone.output.row(0)
    first = image_to_text(bundle, images, max_new_tokens=6, sampler=Sampler(temperature=1.2), seed=3)
    again = image_to_text(bundle, images, max_new_tokens=6, sampler=Sampler(temperature=1.2), seed=3)
    other = image_to_text(bundle, images, max_new_tokens=6, sampler=Sampler(temperature=1.2), seed=4)
    assert first.output.tokens.tolist() == again.output.tokens.tolist()
    assert first.output.tokens.tolist() != other.output.tokens.tolist()
    for out in (greedy, first):
        for i in range(2):
            assert all(
                t < bundle.text_tokenizer.text_vocab_size() or t == bundle.layout.eos_id for t in out.output.row(i)
            )


# ------------------------------------------------------------------ caption scoring
def test_naming_a_task_by_word_overlap():
    phrases = {"open_drawer": ["open drawer", "pull the handle to open the drawer"], "close_drawer": ["close drawer"]}
    assert word_f1("Open the drawer!", "open drawer") == pytest.approx(0.8)
    assert name_task("the robot opens... no: open the drawer", phrases) == "open_drawer"
    assert name_task("close_drawer", phrases) == "close_drawer"
    assert name_task("drawer", phrases) is None  # tie between the two tasks
    assert name_task("a blue block", phrases) is None  # nothing in common


def test_score_captions_counts_and_reports_chance():
    score = score_captions(
        ["open the drawer", "turn on the led", "", "open drawer"],
        ["open_drawer", "turn_on_lightbulb", "turn_on_led", "open_drawer"],
        tasks=["open_drawer", "turn_on_lightbulb", "turn_on_led", "close_drawer"],
    )
    assert score.predictions == ["open_drawer", "turn_on_led", None, "open_drawer"]
    assert score.correct == [True, False, False, True]
    assert score.accuracy == 0.5
    assert score.chance_uniform == 0.25 and score.chance_majority == 0.5
    assert score.summary()["answers_naming_no_task"] == 1
    with pytest.raises(ValueError, match="not among the candidate"):
        score_captions(["x"], ["stack_block"], tasks=["open_drawer"])


def test_evaluate_captions_scores_what_the_model_says():
    """Force the model to answer "open drawer" for every frame: accuracy = share of open_drawer frames."""
    bundle = Emu3Bundle.from_preset("tiny", seed=3)
    tok, layout = bundle.text_tokenizer, bundle.layout
    answer = [*tok.encode("open drawer"), layout.eos_id]
    state = {"step": 0}

    def force_answer(module, args, kwargs, output):
        if state["step"] < len(answer):
            output.logits[:, -1, answer[state["step"]]] += 1e4
        state["step"] += 1
        return output

    frames = np.random.default_rng(0).integers(0, 256, size=(4, 32, 32, 3), dtype=np.uint8)
    targets = ["open_drawer", "close_drawer", "open_drawer", "turn_on_led"]
    handle = bundle.decoder.register_forward_hook(force_answer, with_kwargs=True)
    try:
        score = evaluate_captions(bundle, frames, targets, batch_size=4, max_new_tokens=8)
    finally:
        handle.remove()
    assert score.texts == ["open drawer"] * 4
    assert score.predictions == ["open_drawer"] * 4
    assert score.accuracy == 0.5 and score.chance_uniform == pytest.approx(1 / 3)
    # Without forcing, the random model's answers are scored the same way they would be by hand.
    plain = evaluate_captions(bundle, frames, targets, batch_size=3, max_new_tokens=4)
    codes = bundle.vision_tokenizer().encode_images(frames[:3])
    direct = image_to_text(bundle, codes, DEFAULT_QUESTION, max_new_tokens=4)
    assert plain.texts[:3] == direct.texts
    assert plain.accuracy == score_captions(plain.texts, targets).accuracy
