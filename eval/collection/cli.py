"""``emu3-vla collect``: the command line of :mod:`eval.collection.collect` (argparse only: building
this parser imports neither the simulator nor torch, so ``--help`` is instant)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from emu3_vla.cli_args import add_camera_sizes_argument, add_command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder (lerobot/, calvin/, report)")
    parser.add_argument("--episodes", type=int, default=100, help="successful episodes to write (default 100)")
    parser.add_argument("--tasks", nargs="+", metavar="TASK", help="only these CALVIN tasks (default: all 34)")
    parser.add_argument(
        "--episodes-per-task", type=int, help="instead of --episodes: this many episodes of every task (balanced)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="parallel processes, one simulator each")
    parser.add_argument(
        "--chain-fraction",
        type=float,
        default=0.5,
        help="share of jobs that run a 5-task chain (drawn like CALVIN's, never one of its 1,000 evaluation "
        "chains) instead of a single task (default 0.5)",
    )
    parser.add_argument(
        "--handover",
        action="store_true",
        help="in chains, a subtask's episode ends at its success and the expert's finishing motion opens the "
        "next subtask's episode, under the next instruction (CALVIN's evaluation switches instructions at "
        "the step of success, mid-gesture)",
    )
    parser.add_argument("--variants", nargs="+", default=["D"], choices=list("ABCD"), help="scene variants (default D)")
    parser.add_argument("--static-size", type=int, default=200, help="static camera frame size (CALVIN: 200)")
    parser.add_argument("--gripper-size", type=int, default=84, help="gripper camera frame size (CALVIN: 84)")
    add_rendering_arguments(parser)
    parser.add_argument("--images", action="store_true", help="store PNG images instead of (lossless) video")
    parser.add_argument("--calvin-format", action="store_true", help="also write CALVIN's on-disk format")
    parser.add_argument(
        "--noise",
        type=float,
        default=0.0,
        help="perturb the expert's free-space moves by this much (action units): the std of smooth noise, "
        "or the speed of a burst's push (default 0: no noise)",
    )
    parser.add_argument(
        "--noise-kind",
        default="smooth",
        help="smooth = filtered noise on every free-space step; bursts = a 5-step push now and then, "
        "then 25+ clean steps of recovery (the pushed steps are flagged and not trained on)",
    )
    parser.add_argument(
        "--labels",
        default="clean",
        help="with --noise, the recorded action: clean = the expert's noise-free correction (DART, default), "
        "executed = the noisy action sent",
    )
    parser.add_argument("--no-randomize", action="store_true", help="canonical expert waypoints (no jitter)")
    parser.add_argument("--max-jobs", type=int, help="stop after this many jobs even if short of --episodes")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing collection in --out")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the collection in --out that Ctrl-C or SIGTERM stopped (same settings; --workers may "
        "differ) and end with the episodes an uninterrupted run writes; a finished one is left as it is, "
        "and an empty --out starts a new one",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_rendering_arguments(parser: argparse.ArgumentParser) -> None:
    """How recorded episodes are rendered (``emu3-vla collect`` and ``collect-on-policy``)."""
    parser.add_argument(
        "--render-every",
        type=int,
        default=1,
        metavar="K",
        help="render the cameras at every K-th step of an episode and repeat the frame in between (default 1: "
        "every step). Rendering is most of collection's time; a model that encodes every K-th frame "
        "(train data.frame_stride a multiple of K) sees exactly the images a full-rate recording holds",
    )
    add_camera_sizes_argument(
        parser,
        "--render-sizes",
        "render the cameras at these sizes (e.g. CALVIN's 200 84, what evaluation renders) and store the "
        "frames resized to --static-size / --gripper-size with the antialiased filter a policy applies to its "
        "camera images, so that training sees the pixels evaluation feeds (default: render at the stored sizes)",
    )


def config_from_args(args: argparse.Namespace):
    from eval.collection.collect import CollectConfig

    return CollectConfig(
        out=args.out,
        episodes=args.episodes,
        episodes_per_task=args.episodes_per_task,
        tasks=args.tasks,
        seed=args.seed,
        workers=args.workers,
        chain_fraction=args.chain_fraction,
        handover=args.handover,
        render_every=args.render_every,
        render_sizes=tuple(args.render_sizes) if args.render_sizes else None,
        variants=tuple(args.variants),
        static_size=args.static_size,
        gripper_size=args.gripper_size,
        video=not args.images,
        calvin_format=args.calvin_format,
        noise=args.noise,
        noise_kind=args.noise_kind,
        labels=args.labels,
        randomize=not args.no_randomize,
        max_jobs=args.max_jobs,
        overwrite=args.overwrite,
        resume=args.resume,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    from eval.collection.collect import REPORT_NAME, collect

    report = collect(config_from_args(args))
    summary = report.to_json()
    print(
        f"wrote {report.episodes} episodes ({report.frames} frames) to {report.lerobot_root} in {report.seconds:.0f} s "
        f"({summary['episodes_per_minute']} episodes/min, {summary['env_steps_per_second']} env steps/s); "
        f"report: {report.out / REPORT_NAME}"
    )
    return 0 if report.episodes == report.config["episodes"] else 1


def register(subparsers: argparse._SubParsersAction) -> None:
    """Entry point of ``emu3-vla collect`` (group ``emu3_vla.commands``)."""
    parser = add_command(
        subparsers,
        "collect",
        run,
        help="scripted-expert demonstrations (LeRobot dataset, optionally CALVIN format)",
        description="Scripted experts solve CALVIN tasks and five-task chains in the PlayTable simulator; every "
        "successful subtask becomes one LeRobot v3.0 episode with its own instruction (optionally also CALVIN's "
        "on-disk format). Chains are drawn like CALVIN's but never are one of its 1,000 evaluation chains.",
    )
    add_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.collection.cli", description="scripted-expert demonstrations")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (FileExistsError, ValueError) as err:
        parser.exit(2, f"collect: error: {err}\n")


if __name__ == "__main__":
    raise SystemExit(main())
