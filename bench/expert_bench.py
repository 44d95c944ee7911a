"""Scripted-expert success per task: every one of the 34 CALVIN tasks from N start states each.

Start states are those in which the task is well defined (exactly one precondition branch holds,
:func:`eval.symbolic.applicable_branches`) among CALVIN's 192 valid start states; tasks that need a
held block (``place_in_slider``, ``place_in_drawer``, ``stack_block``) run after a lift, and
``unstack_block`` after a lift and a stack, as CALVIN's chains do; ``lift_<block>_drawer`` starts
with the block in the open drawer. Only the task itself is counted: a failed setup subtask counts
as a failure of the task (and is reported in its own column). Each start scene is drawn with its
own seed (slot order, block yaws), and the expert randomises its waypoints as in data collection.

The experts run without rendering, in ``--workers`` processes. The target is >= 90 % on every task.

``--chains N`` also runs the first N of CALVIN's 1,000 standard evaluation chains (each from its
standard start scene, 360 steps per subtask, stopping at the first failure, as the evaluation does)
and prints SR@1..5 and the average length: how far the experts get through long-horizon chains,
which data collection runs too. With CALVIN's protocol (``--chain-tail 0``) the next subtask starts
at the very step the oracle reports success, often with the arm still touching the block (a push
succeeds mid-push, an unstack at lift-off); some checks of the next subtask (``lift_*``:
"not touching the robot at the start", ``push_into_drawer``: "touching only the table") then cannot
succeed whatever the policy does. ``--chain-tail 60`` lets each subtask finish its motion first,
as data collection does.

Run: ``.venv/bin/python bench/expert_bench.py [--episodes 20] [--workers 2] [--variant D] [--seed 0] [--chains 100]``
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from envs import calvin_state_seed, task_names
from eval.chains import load_standard_chains
from eval.collection.jobs import Job, derive_seed, task_job
from eval.collection.pool import RunSettings, run_jobs

TARGET = 0.9


def main() -> int:
    parser = argparse.ArgumentParser(description="scripted-expert success rate per CALVIN task (no rendering)")
    parser.add_argument("--episodes", type=int, default=20, help="start states per task (default 20)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variant", default="D", choices=["A", "B", "C", "D"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.0, help="expert action noise (default 0)")
    parser.add_argument("--no-randomize", action="store_true", help="canonical waypoints, no jitter")
    parser.add_argument("--tasks", nargs="*", help="only these tasks (default: all 34)")
    parser.add_argument("--chains", type=int, default=0, help="also run the first N standard CALVIN chains")
    parser.add_argument(
        "--chain-tail",
        type=int,
        default=0,
        help="steps a chain's subtask may continue after success while the expert finishes its motion "
        "(0: CALVIN's protocol, the next subtask starts at success; collection uses 60)",
    )
    parser.add_argument("--json", type=Path, help="also write the per-task figures here")
    args = parser.parse_args()

    tasks = args.tasks or task_names()
    unknown = sorted(set(tasks) - set(task_names()))
    if unknown:
        parser.error(f"unknown tasks {unknown}")
    jobs = [
        task_job(task, i, args.seed, variant=args.variant, allowed={task})
        for task in tasks
        for i in range(args.episodes)
    ]
    settings = RunSettings(record_frames=False, randomize=not args.no_randomize, noise=args.noise, finish_last=False)

    wins: dict[str, int] = defaultdict(int)
    setup_failures: dict[str, int] = defaultdict(int)
    steps: dict[str, list[int]] = defaultdict(list)
    failures: dict[str, list[dict]] = defaultdict(list)
    env_steps = 0
    wall = time.perf_counter()
    for result in run_jobs(jobs, settings, args.workers):
        job = result.job
        env_steps += result.env_steps
        last = result.outcomes[-1]
        if last.task == job.target and last.success:
            wins[job.target] += 1
            steps[job.target].append(last.steps)
        else:
            if last.task != job.target:
                setup_failures[job.target] += 1
            failures[job.target].append(
                {"index": job.index, "state": job.state, "scene_seed": job.scene_seed, "failed": last.task}
            )
    wall = time.perf_counter() - wall

    print(f"scripted experts, variant {args.variant}, {args.episodes} start states per task, seed {args.seed}")
    print(f"{'task':24s} {'success':>9s} {'rate':>6s} {'steps':>6s} {'setup fail':>10s}")
    rows = {}
    for task in tasks:
        rate = wins[task] / args.episodes
        mean_steps = float(np.mean(steps[task])) if steps[task] else float("nan")
        flag = "" if rate >= TARGET else "  <-- below 90 %"
        count = f"{wins[task]:4d}/{args.episodes:<4d}"
        print(f"{task:24s} {count} {rate:6.0%} {mean_steps:6.1f} {setup_failures[task]:10d}{flag}")
        rows[task] = {
            "success": wins[task],
            "episodes": args.episodes,
            "rate": rate,
            "mean_steps": mean_steps,
            "setup_failures": setup_failures[task],
            "failures": failures[task],
        }
    rates = [rows[t]["rate"] for t in tasks]
    print(
        f"mean {np.mean(rates):.1%}, worst {min(rates):.0%} ({tasks[int(np.argmin(rates))]}); "
        f"{sum(r >= TARGET for r in rates)}/{len(tasks)} tasks >= {TARGET:.0%}"
    )
    print(
        f"{len(jobs)} jobs, {env_steps} env steps in {wall:.1f} s wall with {args.workers} workers "
        f"({env_steps / wall:.0f} steps/s)"
    )
    chain_rows = run_chains(args, settings) if args.chains else None
    if args.json:
        rows = {"tasks": rows, "chains": chain_rows}
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, **rows}, indent=2, default=str))
    return 0 if min(rates) >= TARGET else 1


def run_chains(args: argparse.Namespace, settings: RunSettings) -> dict:
    """The experts on CALVIN's standard chains: SR@1..5 and average length, as the evaluation reports."""
    chains = load_standard_chains(args.chains)
    jobs = [
        Job(
            index=i,
            state=state,
            tasks=tuple(tasks),
            record=tuple(False for _ in tasks),
            scene_seed=calvin_state_seed(state),
            expert_seed=derive_seed(args.seed, "bench-chain", i),
            kind="chain",
            variant=args.variant,
        )
        for i, (state, tasks) in enumerate(chains)
    ]
    chain_settings = RunSettings(
        record_frames=False, randomize=settings.randomize, noise=settings.noise, tail_steps=args.chain_tail
    )
    lengths, failed_at = [], defaultdict(int)
    wall = time.perf_counter()
    for result in run_jobs(jobs, chain_settings, args.workers):
        done = sum(o.success for o in result.outcomes)
        lengths.append(done)
        if done < len(result.job.tasks):
            failed_at[result.outcomes[-1].task] += 1
    wall = time.perf_counter() - wall
    lengths_arr = np.array(lengths)
    rates = [float((lengths_arr >= i).mean()) for i in range(1, 6)]
    protocol = (
        "next subtask at success"
        if args.chain_tail == 0
        else f"subtasks finish their motion (<= {args.chain_tail} steps)"
    )
    print(f"\n{len(chains)} standard CALVIN chains (start scenes seeded as in CALVIN; {protocol}), {wall:.1f} s")
    print("SR@1..5: " + "  ".join(f"{r:.1%}" for r in rates) + f"   average length {lengths_arr.mean():.2f} / 5")
    if failed_at:
        print("chains stopped at: " + ", ".join(f"{t} x{n}" for t, n in sorted(failed_at.items(), key=lambda x: -x[1])))
    return {"sr": rates, "average_length": float(lengths_arr.mean()), "failed_at": dict(failed_at)}


if __name__ == "__main__":
    raise SystemExit(main())
