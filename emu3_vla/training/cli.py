"""``emu3-vla train`` and ``emu3-vla train-vq``: hydra configs with command-line overrides."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from emu3_vla.cli_args import add_command

log = logging.getLogger(__name__)

TRAIN_HELP = """\
Train the VLA on a dataset (LeRobot or CALVIN format). Settings are hydra overrides of
emu3_vla/configs/train.yaml, e.g.

  emu3-vla train model=tiny model.vq=runs/vq data.root=runs/demo/data steps=2000
  emu3-vla train --config calvin_paper model.checkpoint=/ckpt/Emu3-Gen-hf data.root=/data/task_ABC_D/training
  torchrun --nproc-per-node 2 -m emu3_vla.cli train ...      (several processes: DDP / FSDP2)

The run folder gets checkpoints/step_XXXXXXX/ (resume=auto continues a killed run), model -> the
newest checkpoint's model, metrics.jsonl, loss.png, config.yaml.
"""


def register_train(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "train",
        run_train,
        help="train the VLA (hydra overrides)",
        description=TRAIN_HELP,
    )
    p.add_argument("--config", default="train", help="config name in emu3_vla/configs (train, calvin_paper)")
    p.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    p.add_argument("overrides", nargs="*", help="hydra overrides key=value")


def run_train(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from emu3_vla.training.config import load_config
    from emu3_vla.training.trainer import train

    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    result = train(cfg)
    last = result.metrics[-1] if result.metrics else {}
    print(f"trained {result.steps} steps; final loss {last.get('loss', float('nan')):.4f}")
    print(
        f"model: {result.final_checkpoint}\nmetrics: {result.run_dir / 'metrics.jsonl'}, {result.run_dir / 'loss.png'}"
    )
    return 0


def register_train_vq(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "train-vq",
        run_train_vq,
        help="train the VQ image tokenizer on a dataset's frames",
        description="Train or fine-tune the Emu3 VQ tokenizer (L2 + codebook/commitment, optional GAN) on the "
        "camera frames of a dataset; reports reconstruction PSNR on held-out frames. Hydra overrides of "
        "emu3_vla/configs/train_vq.yaml, e.g. `emu3-vla train-vq data.root=runs/demo/data out=runs/vq steps=3000`.",
    )
    p.add_argument("overrides", nargs="*", help="hydra overrides key=value")


FRAME_SAMPLINGS = ("start", "spread")


def collect_frames(
    source, views, frame_stride: int, max_frames: int, sampling: str = "start", seed: int = 0
) -> dict[str, np.ndarray]:
    """Frames the model encodes (every ``frame_stride``-th), at most ``max_frames`` per view, the same
    number from every episode, in episode order.

    When an episode may give only some of its frames, ``sampling="start"`` takes its first ones and
    ``"spread"`` draws them at random over the whole episode. With thousands of episodes "start"
    leaves one frame per episode, the first: the tokenizer then sees the arm at its start poses
    only, never reaching into the scene, and its held-out PSNR is measured on such frames too."""
    if sampling not in FRAME_SAMPLINGS:
        raise ValueError(f"frame_sampling={sampling!r}: choose one of {FRAME_SAMPLINGS}")
    rng = np.random.default_rng(seed)
    per_view: dict[str, list[np.ndarray]] = {v: [] for v in views}
    n_eps = len(source)
    per_episode = max(1, max_frames // max(n_eps, 1))
    for i in range(n_eps):
        steps = np.arange(0, len(source.actions(i)), frame_stride)
        if sampling == "spread" and len(steps) > per_episode:
            steps = np.sort(rng.choice(steps, size=per_episode, replace=False))
        steps = steps[:per_episode]
        frames = source.frames(i, steps)  # decodes only these, not the whole episode
        for v in views:
            per_view[v].append(frames[v])
    return {v: np.concatenate(f)[:max_frames] for v, f in per_view.items() if f}


def train_vq(cfg) -> dict:
    """Train (or fine-tune) the VQ tokenizer described by a composed ``train_vq`` config; returns its report
    (held-out PSNR per view, codebook usage) after writing ``cfg.out``."""
    from omegaconf import OmegaConf

    from emu3_vla.data.held_frames import check_frame_stride
    from emu3_vla.training.data_prep import data_mapping, open_source
    from emu3_vla.training.vq_trainer import FramePool, VQTrainConfig, VQTrainer

    check_frame_stride(cfg.data.root, int(cfg.frame_stride), "frame_stride")
    source = open_source(cfg)
    frames = collect_frames(
        source,
        data_mapping(cfg).views,
        int(cfg.frame_stride),
        int(cfg.max_frames),
        sampling=str(cfg.get("frame_sampling", "start")),
        seed=int(cfg.seed),
    )
    pool = FramePool(frames, held_out=float(cfg.held_out), seed=int(cfg.seed))
    known = set(VQTrainConfig.__dataclass_fields__)
    vq_cfg = VQTrainConfig(**{k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k in known})
    device = str(cfg.device)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    trainer = VQTrainer(vq_cfg, pool, device=device)
    report = trainer.fit()
    trainer.save(Path(cfg.out), report)
    return report


def run_train_vq(args: argparse.Namespace) -> int:
    from emu3_vla.training.config import load_config

    cfg = load_config("train_vq", args.overrides)
    report = train_vq(cfg)
    print(json.dumps(report, indent=2))
    print(f"wrote {cfg.out}/vq, report.json, reconstructions.png")
    return 0
