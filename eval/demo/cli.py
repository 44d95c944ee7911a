"""``emu3-vla demo``: see :mod:`eval.demo.pipeline`."""

from __future__ import annotations

import argparse

from emu3_vla.cli_args import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "demo",
        run,
        help="the whole pipeline on CPU defaults: collect, tokenise, train, evaluate, report",
        description="Collect scripted-expert demonstrations in the PlayTable simulator, fit FAST, train the tiny "
        "VQ tokenizer and the tiny VLA, evaluate the policy in closed loop next to a random policy, and write "
        "results.json, loss.png, success_per_task.png and rollout mp4s into the run folder. Every stage is "
        "cached: re-running skips finished stages. Hydra overrides of emu3_vla/configs/demo.yaml, e.g. "
        "`emu3-vla demo run_dir=runs/d2 train.steps=3000` or `emu3-vla demo ablation=blind`.",
    )
    p.add_argument("--quick", action="store_true", help="a < 10 minute run of every stage (demo_quick.yaml)")
    p.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    p.add_argument("overrides", nargs="*", help="hydra overrides key=value")


def run(args: argparse.Namespace) -> int:
    from omegaconf import OmegaConf

    from emu3_vla.training.config import load_config
    from eval.demo.pipeline import main

    cfg = load_config("demo_quick" if args.quick else "demo", args.overrides)
    if args.print_config:
        print(OmegaConf.to_yaml(cfg))
        return 0
    main(cfg)
    return 0
