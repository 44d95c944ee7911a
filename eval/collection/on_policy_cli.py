"""``emu3-vla collect-on-policy``: the command line of :mod:`eval.collection.on_policy` (argparse only:
``--help`` imports neither the simulator nor torch)."""

from __future__ import annotations

import argparse
from pathlib import Path

from emu3_vla.cli_args import DECODER_NAMES, add_command
from eval.collection.cli import add_rendering_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", required=True, help="the trained VLA checkpoint folder that drives (or 'expert')")
    parser.add_argument("--out", type=Path, required=True, help="output folder (lerobot/, on_policy_report.json)")
    parser.add_argument("--chains", type=int, default=400, help="training chains to run (default 400)")
    parser.add_argument(
        "--tasks",
        nargs="+",
        metavar="TASK",
        help="only chains whose driven and recorded subtasks are among these (the tasks the policy was trained on; "
        "default: all 34)",
    )
    parser.add_argument(
        "--policy-subtasks", type=int, default=1, help="the policy's successes before the expert takes over (default 1)"
    )
    parser.add_argument(
        "--expert-subtasks", type=int, default=1, help="subtasks the expert records once it has taken over (default 1)"
    )
    parser.add_argument(
        "--no-recover",
        action="store_true",
        help="after the policy fails a subtask, record nothing (default: the expert records that subtask from "
        "where the policy stopped)",
    )
    parser.add_argument("--static-size", type=int, default=96, help="recorded static frames (default 96)")
    parser.add_argument("--gripper-size", type=int, default=48, help="recorded gripper frames (default 48)")
    add_rendering_arguments(parser)  # of the expert's episodes
    parser.add_argument("--envs", type=int, default=4, help="simulators per worker stepped together (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="processes, each with its own policy (default 2)")
    parser.add_argument(
        "--decoder", default="parallel", choices=DECODER_NAMES, help="action decoder (default parallel)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing collection in --out")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the collection in --out that Ctrl-C or SIGTERM stopped (same settings; --workers and --envs "
        "may differ); a finished one is left as it is",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from eval.collection.on_policy import REPORT_NAME, OnPolicyConfig, collect_on_policy

    config = OnPolicyConfig(
        policy=args.policy,
        out=args.out,
        chains=args.chains,
        tasks=args.tasks,
        seed=args.seed,
        policy_subtasks=args.policy_subtasks,
        expert_subtasks=args.expert_subtasks,
        recover=not args.no_recover,
        static_size=args.static_size,
        gripper_size=args.gripper_size,
        render_every=args.render_every,
        render_sizes=tuple(args.render_sizes) if args.render_sizes else None,
        envs=args.envs,
        workers=args.workers,
        decoder=args.decoder,
        overwrite=args.overwrite,
        resume=args.resume,
        progress=not args.no_progress,
    )
    report = collect_on_policy(config)
    print(
        f"wrote {report['episodes']} episodes {report['episodes_by_kind']} from {report['chains']} chains to "
        f"{report['lerobot_root']} in {report['seconds']:.0f} s (the policy's first subtask succeeded in "
        f"{100 * report['policy_first_subtask_success']:.1f} %); report: {args.out / REPORT_NAME}"
    )
    return 0 if report["episodes"] else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Entry point of ``emu3-vla collect-on-policy`` (group ``emu3_vla.commands``)."""
    parser = add_command(
        subparsers,
        "collect-on-policy",
        run,
        help="demonstrations from the states a trained policy leaves (DAgger-style hand-over data)",
        description="A trained policy runs CALVIN's protocol on training chains (never one of the 1,000 evaluation "
        "chains); after its first success the scripted expert takes over in the same simulator and records the next "
        "subtask from the state the policy left (after a failure: the failed subtask, from where the policy stopped). "
        "Writes a LeRobot v3.0 dataset; train on it together with the expert demonstrations, e.g. "
        "data.root=[runs/demo/data/collect/lerobot,runs/on_policy/lerobot].",
    )
    add_arguments(parser)
