"""``emu3-vla eval calvin | tasks | gym | merge | calvin-config``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emu3_vla.cli_args import add_camera_sizes_argument, add_command, add_decoder_argument, add_device_argument

POLICY_HELP = (
    "a VLA checkpoint folder, 'expert', 'random' or remote://host:port (default: 'expert' on --backend playtable, "
    "'random' on --backend calvin: the scripted experts need PlayTable and are refused on calvin)"
)


def _policy_run(p: argparse.ArgumentParser, *, policy_help: str, policy_required: bool, videos: int) -> None:
    """What every evaluation asks: the policy, where results go, how many environments, how to decode."""
    p.add_argument("--policy", "--checkpoint", dest="policy", required=policy_required, help=policy_help)
    p.add_argument("--out", type=Path, required=True, help="output folder (rerun with it to resume)")
    p.add_argument("--envs", type=int, default=1, help="environments stepped together (one batched model query)")
    p.add_argument("--seed", type=int, default=0, help="offsets every episode's (chain's) seed")
    p.add_argument("--videos", type=int, default=videos, help="record mp4s of the first N episodes (chains)")
    add_device_argument(p)
    p.add_argument("--execute-steps", type=int, default=None, help="actions executed per model query (<= chunk)")
    add_decoder_argument(p, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _common(p: argparse.ArgumentParser) -> None:
    _policy_run(p, policy_help=POLICY_HELP, policy_required=False, videos=0)
    p.add_argument(
        "--backend",
        default="playtable",
        choices=["playtable", "calvin"],
        help="simulator: playtable (ships with emu3-vla) or calvin (the real calvin_env, installed separately)",
    )
    p.add_argument(
        "--calvin-config",
        "--calvin-dataset",
        dest="calvin_dataset",
        metavar="FOLDER",
        help="backend calvin: a folder written by `emu3-vla eval calvin-config`, or a CALVIN dataset split "
        "(e.g. task_D_D); calvin_env is built from its .hydra/merged_config.yaml",
    )
    p.add_argument("--variant", default="D", choices=list("ABCD"), help="playtable scene variant (default D)")
    p.add_argument("--workers", type=int, default=1, help="processes, each with its own environments and policy")
    p.add_argument("--shard", default=None, help="evaluate part i of n of the chains: i/n (merge afterwards)")
    p.add_argument("--ep-len", type=int, default=None, help="steps per subtask (default: CALVIN's 360)")
    p.add_argument("--wandb", default="disabled", choices=["disabled", "offline", "online"])
    add_camera_sizes_argument(
        p,
        "--camera-sizes",
        "playtable: render the cameras at these square sizes instead of CALVIN's 200 / 84 (e.g. the sizes "
        "the model was trained on, 96 48: frames rendered as its data was, not resized)",
    )
    p.add_argument(
        "--instructions",
        default="validation",
        choices=["validation", "training"],
        help="validation: CALVIN's unseen paraphrases (the protocol); training: seen annotations (a diagnostic)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="CALVIN long-horizon evaluation, the single-task suite, any gymnasium environment, or merging shards",
        description="Evaluate a policy with CALVIN's protocol (1,000 standard chains of 5 subtasks, 360 steps "
        "each), on every task separately, or in any gymnasium environment (eval gym). Results: results.json, a "
        "PNG plot, chains*.jsonl (resume log), optional mp4s and report.html in --out.",
    )
    modes = p.add_subparsers(dest="mode", metavar="MODE", required=True)
    chains = add_command(modes, "calvin", run_chains, help="long-horizon chains: SR@1..5 and average length")
    _common(chains)
    chains.add_argument("--chains", type=int, default=1000, help="first N of CALVIN's 1,000 standard chains")
    tasks = add_command(modes, "tasks", run_tasks, help="single-task suite: each task from N start states")
    _common(tasks)
    tasks.add_argument("--per-task", type=int, default=10, help="start states per task")
    tasks.add_argument("--tasks", nargs="*", default=None, help="restrict to these tasks")
    gym = add_command(
        modes,
        "gym",
        run_gym,
        help="any gymnasium environment (gym-pusht, gym-aloha, ...): success rate, videos, report",
        description="Evaluate a checkpoint, remote://host:port or random in a gymnasium environment. Observations "
        "reach the model through an observation map (default: the dataset keys the checkpoint recorded, matched "
        "by LeRobot's environment convention pixels -> observation.image, agent_pos -> observation.state), its "
        "actions reach the environment through an action map. Success: info['is_success'] (or --success-reward). "
        "Writes results.json, episodes.jsonl, videos/episode_XXXX.mp4 and report.html into --out. Example: "
        "emu3-vla eval gym --env gym_pusht/PushT-v0 --env-arg obs_type=pixels_agent_pos --policy runs/pusht/model "
        "--instruction 'Push the T-shaped block onto the T-shaped target.' --out runs/eval_pusht",
    )
    add_gym_arguments(gym)
    report = add_command(modes, "report", run_report, help="(re)build report.html of evaluation folders")
    report.add_argument("folders", nargs="+", type=Path, help="evaluation folders (results.json, videos/, ...)")
    report.add_argument("--max-videos", type=int, default=24, help="videos embedded in the page (default 24)")
    merge = add_command(modes, "merge", run_merge, help="merge the shards in a folder into results.json")
    merge.add_argument("folder", type=Path)
    merge.add_argument("--chains", type=int, default=1000)
    config = add_command(
        modes,
        "calvin-config",
        run_calvin_config,
        help="write a merged_config.yaml for --backend calvin from an installed calvin_env (no dataset needed)",
        description="Compose calvin_env's own data-collection config (static and gripper cameras, no VR input, no "
        "recorder, data_path at the calvin_env clone's data/ folder) into FOLDER/.hydra/merged_config.yaml, the "
        "file calvin_env reads from a CALVIN dataset split. Then: emu3-vla eval calvin --backend calvin "
        "--calvin-config FOLDER ...",
    )
    config.add_argument("--out", type=Path, required=True, metavar="FOLDER", help="folder to write into")
    config.add_argument(
        "--calvin-env-root", type=Path, default=None, help="the calvin_env git clone (default: the installed one)"
    )
    config.add_argument("--scene", default="D", choices=list("ABCD"), help="CALVIN scene (default D)")
    config.add_argument(
        "--cameras",
        default="static_and_gripper",
        help="camera group of calvin_env's conf/cameras (default static_and_gripper; a tactile one needs tacto)",
    )


def add_gym_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--env", required=True, help="gymnasium id, e.g. gym_pusht/PushT-v0 (its package is imported)")
    p.add_argument(
        "--env-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword for gymnasium.make (YAML value), repeatable, e.g. --env-arg obs_type=pixels_agent_pos",
    )
    p.add_argument(
        "--reset-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="entry of env.reset(options=...) for every episode (YAML value), repeatable",
    )
    _policy_run(
        p,
        policy_help="checkpoint folder, remote://host:port or random (uniform samples of the action space)",
        policy_required=True,
        videos=1,
    )
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--max-steps", type=int, default=None, help="steps per episode (default: the env's limit)")
    p.add_argument(
        "--obs",
        action="append",
        default=[],
        metavar="ENV_KEY=INPUT",
        help="observation map entry: env observation key (dotted for nested) -> model view or 'state'; repeatable",
    )
    p.add_argument(
        "--action",
        default="absolute",
        help="action map: absolute (as the model outputs them) | rescale (model bounds -> the env's Box) | "
        "relative:<obs key> (added to that observation); always clipped to the env's Box (default: absolute)",
    )
    text = p.add_mutually_exclusive_group()
    text.add_argument("--instruction", default=None, help="the instruction of every episode")
    text.add_argument(
        "--instruction-from",
        default=None,
        metavar="NAME",
        help="read it at reset from info[NAME], obs[NAME] or env.unwrapped.NAME (default: task_description / task)",
    )
    p.add_argument("--success-reward", type=float, default=None, help="also success when a step's reward >= this")


def _pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ValueError(f"{what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def run_gym(args: argparse.Namespace) -> int:
    import yaml

    from eval.gym_eval import GymEvalSettings, evaluate_gym

    reset_options = {k: yaml.safe_load(v) for k, v in _pairs(args.reset_option, "--reset-option").items()}
    settings = GymEvalSettings(
        env=args.env,
        policy=args.policy,
        out=args.out,
        episodes=args.episodes,
        max_steps=args.max_steps,
        envs=args.envs,
        seed=args.seed,
        env_kwargs={k: yaml.safe_load(v) for k, v in _pairs(args.env_arg, "--env-arg").items()},
        reset_options=reset_options or None,
        obs_map=_pairs(args.obs, "--obs"),
        action=args.action,
        instruction=args.instruction,
        instruction_from=args.instruction_from,
        success_reward=args.success_reward,
        videos=args.videos,
        device=args.device,
        execute_steps=args.execute_steps,
        decoder=args.decoder,
        progress=not args.no_progress,
    )
    m = evaluate_gym(settings)
    print(f"{'episode':>7s} {'success':>8s} {'steps':>6s} {'return':>8s}")
    shown = 20
    for r in m["episodes"][:shown]:
        print(f"{r['episode']:7d} {'yes' if r['success'] else 'no':>8s} {r['steps']:6d} {r['return']:8.3f}")
    if len(m["episodes"]) > shown:
        print(f"    ... {len(m['episodes']) - shown} more episodes in results.json")
    print(
        f"{m['env']}: success {m['successes']}/{m['num_episodes']} ({100 * m['success_rate']:.1f}%), "
        f"mean steps {m['mean_steps']:.1f}, mean return {m['mean_return']:.3f}; observation map {m['observation_map']}"
    )
    print(f"wrote {args.out / 'results.json'}, {args.out / 'report.html'}, {args.out / 'videos'}")
    return 0


def _settings(args: argparse.Namespace):
    """The evaluation settings; a policy the backend cannot run is refused here, before anything is built."""
    from eval.backends import check_camera_sizes_for_backend, check_policy_for_backend, default_policy
    from eval.evaluate import EvalSettings

    policy = args.policy or default_policy(args.backend)
    check_policy_for_backend(policy, args.backend)
    sizes = {"static": args.camera_sizes[0], "gripper": args.camera_sizes[1]} if args.camera_sizes else None
    check_camera_sizes_for_backend(sizes, args.backend)
    return EvalSettings(
        policy=policy,
        out=args.out,
        backend=args.backend,
        variant=args.variant,
        calvin_dataset=args.calvin_dataset,
        num_envs=args.envs,
        workers=args.workers,
        seed=args.seed,
        videos=args.videos,
        **({"ep_len": args.ep_len} if args.ep_len else {}),
        device=args.device,
        execute_steps=args.execute_steps,
        instructions=args.instructions,
        camera_sizes=sizes,
        decoder=args.decoder,
        progress=not args.no_progress,
        wandb_mode=args.wandb,
    )


def run_report(args: argparse.Namespace) -> int:
    from eval.html_report import write_report

    for folder in args.folders:
        path = write_report(folder, max_videos=args.max_videos)
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")
    return 0


def run_chains(args: argparse.Namespace) -> int:
    from eval.evaluate import evaluate_chains
    from eval.results import format_summary, parse_shard

    m = evaluate_chains(_settings(args), num_chains=args.chains, shard=parse_shard(args.shard))
    print(format_summary(m))
    print(f"wrote {args.out / 'results.json'}, {args.out / 'success_by_position.png'}")
    return 0


def run_tasks(args: argparse.Namespace) -> int:
    from eval.evaluate import evaluate_tasks
    from eval.results import parse_shard

    m = evaluate_tasks(_settings(args), tasks=args.tasks, per_task=args.per_task, shard=parse_shard(args.shard))
    print(f"{'task':28s} {'success':>8s} {'reached':>8s}")
    for task, e in m["per_task"].items():
        print(f"{task:28s} {100 * e['success_rate']:7.0f}% {e['reached']:8d}")
    print(f"mean SR@1 over {m['tasks']} tasks: {100 * m['sr@1']:.1f}%  (malformed decodes {m['malformed_decodes']})")
    print(f"wrote {args.out / 'results.json'}, {args.out / 'success_per_task.png'}")
    return 0


def run_merge(args: argparse.Namespace) -> int:
    from eval.evaluate import EvalSettings, finalize

    if not args.folder.is_dir():
        raise FileNotFoundError(f"{args.folder} does not exist")
    settings = EvalSettings(policy="merged", out=args.folder, progress=False)
    m = finalize(settings, range(args.chains), kind="chains")
    print(json.dumps({k: m[k] for k in ("chains", "complete", "avg_len", "sr@1", "sr@5")}, indent=2))
    return 0


def run_calvin_config(args: argparse.Namespace) -> int:
    from envs.calvin_config import write_calvin_config

    path = write_calvin_config(args.out, args.calvin_env_root, scene=args.scene, cameras=args.cameras)
    print(f"wrote {path}")
    print(f"evaluate with: emu3-vla eval calvin --backend calvin --calvin-config {args.out} --policy CHECKPOINT ...")
    return 0
