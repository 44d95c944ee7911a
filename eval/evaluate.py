"""CALVIN long-horizon evaluation and the single-task suite, with resume, shards and workers.

``evaluate_chains`` runs the standard chains (``load_standard_chains``: the first ``num_chains`` of
CALVIN's 1,000) and ``evaluate_tasks`` runs each of the 34 tasks from ``per_task`` start states in
which it applies. Both write into one output folder:

* ``chains*.jsonl`` — one line per finished chain (the resume log; see :mod:`eval.results`);
* ``results.json`` — SR@1..5, average length, per-task success, malformed decodes, timing;
* ``success_by_position.png`` (chains) or ``success_per_task.png`` (suite);
* ``videos/chain_XXXX.mp4`` for the first ``videos`` chains of the run.

``workers`` processes each build their own environments and policy and take every
``workers``-th pending chain; ``num_envs`` environments per process are stepped together with one
batched policy call. A rerun with the same folder skips the chains already logged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import multiprocessing as mp
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envs.calvin_data import SUBTASK_STEPS
from eval.backends import check_policy_for_backend, make_env, make_oracle, max_envs_per_process
from eval.failures import probe_factory, result_failures
from eval.html_report import write_report
from eval.plots import success_by_position, success_per_task
from eval.policy_factory import make_policy
from eval.results import ResultLog, format_summary, metrics, read_folder, shard_file, shard_indices, write_json
from eval.rollout import ChainJob, ChainRunner
from eval.worker_exit import exit_with_parent

log = logging.getLogger(__name__)


@dataclasses.dataclass
class EvalSettings:
    policy: str
    out: Path
    backend: str = "playtable"
    variant: str = "D"
    calvin_dataset: str | None = None
    num_envs: int = 1
    workers: int = 1
    seed: int = 0
    videos: int = 0
    ep_len: int = SUBTASK_STEPS
    device: str = "cpu"
    execute_steps: int | None = None
    decoder: str | None = None
    progress: bool = True
    wandb_mode: str = "disabled"
    lazy_images: bool = True  # render cameras only when a policy reads them (False: every step)
    instructions: str = "validation"  # CALVIN's protocol: validation paraphrases; "training": the seen ones
    # playtable: render the cameras at these square sizes instead of CALVIN's 200 / 84, e.g. the sizes a
    # model was trained on ({"static": 96, "gripper": 48}), so that it sees frames rendered as its data was
    camera_sizes: dict[str, int] | None = None


def instructions_for_eval(split: str = "validation") -> dict[str, str]:
    """One instruction per task. ``validation`` (CALVIN's evaluator): sentences no training
    annotation uses, so a policy must generalise across paraphrases; ``training``: the first
    training annotation, a diagnostic that separates language generalisation from control."""
    from envs import task_instructions

    if split not in ("validation", "training"):
        raise ValueError(f"instructions must be 'validation' or 'training', got {split!r}")
    return {task: texts[0] for task, texts in task_instructions(split).items()}


def chain_seed(state: dict[str, Any], base_seed: int) -> int:
    """The scene seed of a chain: CALVIN's FNV seed of its start state, offset by ``base_seed``."""
    from envs import calvin_state_seed

    return (calvin_state_seed(state) + 1_000_003 * base_seed) % 2**32


def _run_jobs(
    settings: EvalSettings, jobs: list[ChainJob], log_path: Path, video_chains: set[int], progress: bool
) -> None:
    """Run jobs in this process, appending each finished chain to ``log_path``."""
    per_process = max_envs_per_process(settings.backend)
    n_envs = max(1, min(settings.num_envs, len(jobs), per_process or settings.num_envs))
    envs = [
        make_env(
            settings.backend,
            variant=settings.variant,
            calvin_dataset=settings.calvin_dataset,
            lazy_images=settings.lazy_images,
            camera_sizes=settings.camera_sizes,
        )
        for _ in range(n_envs)
    ]
    policy = make_policy(
        settings.policy,
        device=settings.device,
        execute_steps=settings.execute_steps,
        seed=settings.seed,
        decoder=settings.decoder,
    )
    runner = ChainRunner(
        envs,
        policy,
        instructions_for_eval(settings.instructions),
        make_oracle(settings.backend),
        ep_len=settings.ep_len,
        video_dir=settings.out / "videos",
        video_chains=video_chains,
        progress=progress,
        failure_probe=probe_factory(settings.backend),
    )
    result_log = ResultLog(log_path)
    try:
        runner.run(jobs, result_log.append)
    finally:
        for env in envs:
            env.close()


def _worker(args: tuple[EvalSettings, list[ChainJob], str, set[int]]) -> None:
    settings, jobs, path, videos = args
    exit_with_parent()  # a killed evaluation must not leave workers writing into the folder it resumes from
    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(1)
    _run_jobs(settings, jobs, Path(path), videos, progress=False)


def run(settings: EvalSettings, jobs: list[ChainJob], shard: tuple[int, int], video_order=None) -> None:
    """Run the pending jobs (in ``workers`` processes when asked), logging to the output folder."""
    check_policy_for_backend(settings.policy, settings.backend)  # before any environment is built
    settings.out.mkdir(parents=True, exist_ok=True)
    done = {r.chain_index for r in read_folder(settings.out)}
    pending = [j for j in jobs if j.chain_index not in done]
    if done:
        log.info("%d chains already in %s; %d to go", len(jobs) - len(pending), settings.out, len(pending))
    if not pending:
        return
    order = video_order or (lambda j: j.chain_index)
    video_chains = {j.chain_index for j in sorted(jobs, key=order)[: settings.videos]}
    base = shard_file(*shard)
    workers = max(1, min(settings.workers, len(pending)))
    if workers == 1:
        _run_jobs(settings, pending, settings.out / base, video_chains, settings.progress)
        return
    parts = [pending[w::workers] for w in range(workers)]
    stem = base[: -len(".jsonl")]
    args = [(settings, part, str(settings.out / f"{stem}-w{w}.jsonl"), video_chains) for w, part in enumerate(parts)]
    ctx = mp.get_context("spawn")
    t0 = time.perf_counter()
    pool = ctx.Pool(workers)
    try:
        for _ in pool.imap_unordered(_worker, args):
            pass
        # close + join, not the context manager's terminate(): workers that exit on their own run their
        # finalizers, so the semaphores they created (tqdm's lock) do not outlive them as leaks
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    log.info("%d workers finished %d chains in %.0f s", workers, len(pending), time.perf_counter() - t0)


def finalize(settings: EvalSettings, indices: Sequence[int], *, kind: str) -> dict[str, Any]:
    """Metrics over the chains of ``indices`` found in the folder; results.json and the plot."""
    wanted = set(indices)
    results = [r for r in read_folder(settings.out) if r.chain_index in wanted]
    m = metrics(results)
    m.update(
        failures=result_failures(results),
        kind=kind,
        complete=len(results) == len(wanted),
        policy=settings.policy,
        backend=settings.backend,
        variant=settings.variant,
        camera_sizes=settings.camera_sizes,  # None: CALVIN's 200 / 84
        seconds_per_chain=(m["seconds"] / len(results)) if results else None,
    )
    write_json(settings.out / "results.json", m)
    if kind == "chains":
        success_by_position(m, settings.out / "success_by_position.png")
    else:
        success_per_task(
            m["per_task"], settings.out / "success_per_task.png", title=f"single-task suite: {settings.policy}"
        )
    write_report(settings.out)
    _log_wandb(settings, m)
    return m


def _log_wandb(settings: EvalSettings, m: dict[str, Any]) -> None:
    if settings.wandb_mode == "disabled":
        return
    import wandb

    run = wandb.init(
        project="emu3-vla",
        job_type="eval",
        mode=settings.wandb_mode,
        dir=str(settings.out),
        config={"policy": settings.policy, "backend": settings.backend},
    )
    run.log({k: v for k, v in m.items() if isinstance(v, int | float)})
    for path in sorted((settings.out / "videos").glob("*.mp4"))[:4]:
        run.log({f"video/{path.stem}": wandb.Video(str(path), format="mp4")})
    run.finish()


def evaluate_chains(settings: EvalSettings, num_chains: int = 1000, shard: tuple[int, int] = (0, 1)) -> dict[str, Any]:
    from eval.chains import load_standard_chains

    chains = load_standard_chains(num_chains)
    indices = shard_indices(range(len(chains)), *shard)
    jobs = [
        ChainJob(i, chain_seed(chains[i][0], settings.seed), dict(chains[i][0]), list(chains[i][1])) for i in indices
    ]
    run(settings, jobs, shard)
    m = finalize(settings, indices, kind="chains")
    log.info("%s", format_summary(m))
    return m


def _prefix_for(state: dict, task: str, definitions: Any, max_prefix: int = 2) -> list[str] | None:
    """The shortest task sequence (at most ``max_prefix`` tasks, breadth first, in definition order)
    after which ``task`` applies in ``state``: e.g. a lift before ``place_in_slider``, a lift and a
    ``place_in_drawer`` before ``lift_red_block_drawer``. ``[]`` when it applies at once."""
    from eval.symbolic import TaskNotApplicableError, applicable_branches, apply_task

    frontier: list[tuple[dict, list[str]]] = [(state, [])]
    for _ in range(max_prefix + 1):
        for current, prefix in frontier:
            if applicable_branches(current, task, definitions):
                return prefix
        nxt = []
        for current, prefix in frontier:
            for other in definitions.names:
                if other == task or other in prefix:
                    continue
                try:
                    nxt.append((apply_task(current, other, definitions), [*prefix, other]))
                except TaskNotApplicableError:
                    continue
        frontier = nxt
    return None


def task_suite_jobs(tasks: Sequence[str] | None, per_task: int, seed: int) -> list[ChainJob]:
    """``per_task`` start states for each task, drawn (seeded per task) from the 192 valid states.
    A task that applies in no start state (placing or stacking a grasped block, lifting from the
    drawer, unstacking) runs after the shortest prefix of other tasks that makes it applicable,
    as in CALVIN's chains; only the last task of each job is scored."""
    import numpy as np

    from eval.symbolic import applicable_branches, load_task_definitions, valid_start_states

    definitions = load_task_definitions()
    names = list(tasks or definitions.names)
    unknown = sorted(set(names) - set(definitions.names))
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {', '.join(definitions.names)}")
    states = valid_start_states()
    jobs: list[ChainJob] = []
    for t_index, task in enumerate(definitions.names):
        if task not in names:
            continue
        digest = int(hashlib.sha256(f"{task}:{seed}".encode()).hexdigest()[:8], 16)
        order = np.random.default_rng(digest).permutation(len(states))
        candidates = [(states[i], [task]) for i in order if applicable_branches(states[i], task, definitions)]
        for i in order:  # only tasks that apply in too few start states need a prefix
            if len(candidates) >= per_task:
                break
            prefix = _prefix_for(states[i], task, definitions)
            if prefix:
                candidates.append((states[i], [*prefix, task]))
        if not candidates:
            raise ValueError(f"task {task} cannot be reached from any valid start state")
        for k in range(per_task):
            state, sequence = candidates[k % len(candidates)]
            jobs.append(ChainJob(t_index * 10_000 + k, chain_seed(state, seed) + k, dict(state), list(sequence)))
    return jobs


def task_suite_metrics(results, jobs: list[ChainJob]) -> dict[str, Any]:
    """Success of each suite task over all its attempts; for a job with a prefix (a task that applies
    in no start state) an attempt succeeds only if the prefix and the task both do, since a policy
    that fails the prefix has not shown the task. ``success_rate_reached`` is the rate among the
    attempts whose prefix succeeded (a diagnostic: with few such attempts it is noisy)."""
    target = {j.chain_index: j.tasks[-1] for j in jobs}
    per_task: dict[str, dict[str, float]] = {}
    for r in results:
        task = target[r.chain_index]
        entry = per_task.setdefault(task, {"attempts": 0, "successes": 0, "prerequisite_failures": 0})
        entry["attempts"] += 1
        ok = len(r.successes) == len(r.tasks) and all(r.successes)
        entry["successes"] += int(ok)
        entry["prerequisite_failures"] += int(len(r.tasks) > 1 and not all(r.successes[: len(r.tasks) - 1]))
    for entry in per_task.values():
        reached = entry["attempts"] - entry["prerequisite_failures"]
        entry["reached"] = reached
        entry["success_rate"] = entry["successes"] / entry["attempts"]
        entry["success_rate_reached"] = entry["successes"] / reached if reached else None
    return dict(sorted(per_task.items()))


def evaluate_tasks(
    settings: EvalSettings, tasks: Sequence[str] | None = None, per_task: int = 10, shard: tuple[int, int] = (0, 1)
) -> dict[str, Any]:
    jobs = task_suite_jobs(tasks, per_task, settings.seed)
    jobs = [j for k, j in enumerate(jobs) if k % shard[1] == shard[0]]
    # videos go round the tasks: the first start state of every task, then the second, ...
    run(settings, jobs, shard, video_order=lambda j: (j.chain_index % 10_000, j.chain_index))
    wanted = {j.chain_index for j in jobs}
    results = [r for r in read_folder(settings.out) if r.chain_index in wanted]
    per = task_suite_metrics(results, jobs)
    rates = [e["success_rate"] for e in per.values()]
    m = {
        "kind": "tasks",
        "complete": len(results) == len(jobs),
        "policy": settings.policy,
        "backend": settings.backend,
        "variant": settings.variant,
        "camera_sizes": settings.camera_sizes,  # None: CALVIN's 200 / 84
        "episodes": len(results),
        "tasks": len(per),
        "sr@1": sum(rates) / len(rates) if rates else 0.0,
        "per_task": per,
        "malformed_decodes": sum(r.malformed for r in results),
        "seconds": sum(r.seconds for r in results),
        "failures": result_failures(results),
    }
    write_json(settings.out / "results.json", m)
    success_per_task(per, settings.out / "success_per_task.png", title=f"single-task suite: {settings.policy}")
    write_report(settings.out)
    _log_wandb(settings, m)
    return m
