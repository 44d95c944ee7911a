"""Image-to-text tuning on a tiny real model: the batch layout, and that a short tuning run teaches a
random decoder to name the task of frames it never saw (the path the demo takes on its VLA)."""

import numpy as np
import pytest

from emu3_vla.checkpoint import Emu3Bundle
from emu3_vla.generation.caption_tuning import CaptionExample, caption_batch, score_examples, tune_captions

TASKS = {"open_drawer": "open the drawer", "turn_on_led": "turn on the led", "move_slider_left": "slide the door left"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def frames(bundle, n_per_task, seed):
    """3x3 code grids whose top-left block of codes says the task, with noise elsewhere."""
    rng = np.random.default_rng(seed)
    out = []
    for k, (task, text) in enumerate(TASKS.items()):
        for _ in range(n_per_task):
            codes = rng.integers(0, bundle.layout.codebook_size, size=(3, 3))
            codes[:2, :2] = 10 + 7 * k
            out.append(CaptionExample(codes, task, text))
    return out


def test_caption_batch_weights_only_the_answer_and_eos():
    bundle = Emu3Bundle.from_preset("tiny", seed=0, with_vq=False)
    ex = frames(bundle, 1, 0)[:2]
    batch = caption_batch(bundle, ex, "what?")
    layout, tok = bundle.layout, bundle.text_tokenizer
    answer = [*tok.encode(" " + ex[0].instruction), layout.eos_id]
    row, w, m = batch["input_ids"][0], batch["loss_weights"][0], batch["attention_mask"][0]
    n = int(m.sum())
    assert row[0] == layout.bos_id
    assert row[n - len(answer) : n].tolist() == answer
    assert w[n - len(answer) : n].tolist() == [1.0] * len(answer)
    assert w[: n - len(answer)].sum() == 0 and w[n:].sum() == 0
    assert (row[n:] == layout.pad_id).all()


def test_tuning_teaches_a_random_model_to_name_unseen_frames():
    bundle = Emu3Bundle.from_preset("tiny", seed=0, with_vq=False)
    train, test = frames(bundle, 12, 1), frames(bundle, 4, 2)
    tasks = sorted(TASKS)
    phrases = {t: [TASKS[t]] for t in tasks}
    before = score_examples(bundle, test, tasks=tasks, phrases=phrases)
    losses = tune_captions(bundle, train, steps=80, batch_size=12, lr=2e-3, progress=False)
    after = score_examples(bundle, test, tasks=tasks, phrases=phrases)
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    assert after.accuracy >= 0.9 > before.accuracy
