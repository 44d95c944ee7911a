"""Emu3 is one model for every direction: ask the trained VLA for text and images.

* image -> text: its captions of held-out episodes' frames before and after a short caption tuning
  on the training episodes (the VLA never had a loss on text), against chance;
* text -> image: one static-camera frame generated from an instruction (``t2i.png``), and a rollout
  extended by generated frames (``video_extension.mp4``) — only for a model trained with a loss on
  vision tokens. A model trained on actions alone never learned to write images, and whatever it
  writes is noise; the report says so instead of showing it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from eval.demo.stages import Stage


def generation_stage(run: Any, trained: Stage, train_cfg: DictConfig, checkpoint: Path) -> dict[str, Any]:
    g = run.cfg.generation
    if int(g.caption_steps) <= 0 and int(g.get("video_frames", 0)) <= 0:
        return {}
    stage = Stage(
        f"generate text and images ({run.tag})",
        run.folder / f"generation_{run.tag}",
        OmegaConf.to_container(g, resolve=True),
        [trained],
    )
    result = stage.run(lambda: run_generation(run, train_cfg, checkpoint, stage.folder))
    suffix = "" if run.tag == "main" else f"_{run.tag}"
    for name in ("t2i.png", "video_extension.mp4"):
        if (stage.folder / name).is_file():
            stem, ext = name.rsplit(".", 1)
            shutil.copyfile(stage.folder / name, run.folder / f"{stem}{suffix}.{ext}")
    return result


def run_generation(run: Any, train_cfg: DictConfig, checkpoint: Path, out: Path) -> dict[str, Any]:
    from emu3_vla.data.token_cache import CacheSettings, TokenCache
    from emu3_vla.generation import text_to_image
    from emu3_vla.generation.caption_tuning import caption_examples, caption_report, score_examples, tune_captions
    from emu3_vla.generation.media import write_png
    from emu3_vla.training import data_prep
    from emu3_vla.vla import VLAModel
    from envs import task_instructions
    from eval.evaluate import instructions_for_eval

    g = run.cfg.generation
    vla = VLAModel.load(checkpoint)
    vision = vla.vision()
    report: dict[str, Any] = {"notes": []}
    trained_on_vision = float(train_cfg.loss.vision_weight) > 0
    cache = TokenCache.build(
        data_prep.open_source(train_cfg),
        vision,
        vla.action_tokenizer,
        Path(train_cfg.data.cache_dir),
        settings=CacheSettings(chunk=vla.spec.chunk, frame_stride=int(train_cfg.data.frame_stride)),
        views=vla.spec.views,
        progress=False,
    )
    if trained_on_vision and int(g.get("video_frames", 0)) > 0:
        report["video_extension"] = extend_rollout(vla, cache, int(g.video_frames), out / "video_extension.mp4")
    if trained_on_vision:
        view = vla.views["static"]
        prompt = instructions_for_eval()[str(g.t2i_task)]
        height, width = view.height // vision.spatial_factor, view.width // vision.spatial_factor
        image = text_to_image(vla.bundle, prompt, height=height, width=width, seed=0)
        write_png(vision.decode_images(image.images).numpy()[0], out / "t2i.png")
        report["t2i"] = {"prompt": prompt, "png": str(out / "t2i.png")}
    else:
        report["notes"].append(
            "no text-to-image: this model was trained on action tokens only (train.loss.vision_weight=0), so it "
            "never learned to write images"
        )
    if int(g.caption_steps) > 0:
        tasks = sorted(set(run.tasks))
        training, validation = task_instructions("training"), task_instructions("validation")
        task_of = {text: task for table in (training, validation) for task, texts in table.items() for text in texts}
        train, test = caption_examples(
            cache, frames_per_episode=int(g.frames_per_episode), seed=int(run.cfg.seed), task_of_instruction=task_of
        )
        train = [ex for ex in train if ex.task in tasks]
        test = [ex for ex in test if ex.task in tasks]
        phrases = {t: texts for t, texts in training.items() if t in tasks}
        before = score_examples(vla.bundle, test, tasks=tasks, phrases=phrases)
        losses = tune_captions(
            vla.bundle,
            train,
            steps=int(g.caption_steps),
            batch_size=int(g.batch_size),
            lr=float(g.lr),
            seed=int(run.cfg.seed),
        )
        after = score_examples(vla.bundle, test, tasks=tasks, phrases=phrases)
        report["i2t"] = caption_report(before, after, losses)
    (out / "generation.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def extend_rollout(vla: Any, cache: Any, frames: int, path: Path) -> dict[str, Any]:
    """The model as a world model on the last demonstration of the cache: from each real frame and the
    chunk executed from it, its prediction of the static view one chunk later (``frames`` steps),
    written beside the real frames (``real | predicted``) as an mp4, with the PSNR of the predictions
    against the real next frames and, as the floor to beat, of simply repeating the current frame."""
    import numpy as np

    from emu3_vla.data.sequence import STATE
    from emu3_vla.generation import predict_next_frames
    from emu3_vla.generation.media import write_mp4

    episode = cache.episode(len(cache) - 1)
    gap = vla.spec.chunk // cache.settings.frame_stride
    usable = [f for f in range(0, len(episode.frame_steps) - gap, gap) if episode.chunk_tokens(f).size][:frames]
    if not usable:
        return {"note": "the last demonstration is shorter than two chunks"}
    view = vla.spec.views[0]

    def frame(f: int) -> dict[str, np.ndarray]:
        codes = {v: episode.codes[v][f].astype(np.int64) for v in vla.spec.views}
        if vla.spec.uses_state:
            codes[STATE] = episode.state[f]
        return codes

    predicted = predict_next_frames(
        vla, episode.instruction, [frame(f) for f in usable], [episode.chunk_tokens(f) for f in usable], view=view
    )
    vision = vla.vision()
    real_next = vision.decode_images(np.stack([episode.codes[view][f + gap] for f in usable])).numpy()
    current = vision.decode_images(np.stack([episode.codes[view][f] for f in usable])).numpy()
    guess = vision.decode_images(predicted).numpy()

    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
        return round(10 * np.log10(255.0**2 / max(mse, 1e-10)), 2)

    write_mp4(np.concatenate([real_next, guess], axis=2), path, fps=2.0)
    return {
        "instruction": episode.instruction,
        "frames": len(usable),
        "psnr_predicted": psnr(guess, real_next),
        "psnr_repeat_current": psnr(current, real_next),
        "mp4": str(path),
    }
