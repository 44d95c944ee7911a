"""``emu3-vla collect``: scripted-expert demonstrations as a LeRobot dataset (and CALVIN's format).

Scripted experts (:mod:`policies.experts`) run from CALVIN's start states: single tasks (with the
subtasks that make them possible, e.g. a lift before ``place_in_drawer``) and five-task chains,
mixed by ``chain_fraction``. Chains are drawn like CALVIN's long-horizon chains but never are one
of the standard 1,000, which stay evaluation-only (:func:`eval.chains.training_chains`); a chain's
later segments start from the scene its earlier ones left behind. Every successful subtask (checked
by the task oracle, as in evaluation) becomes one episode with its own instruction, drawn from
CALVIN's training paraphrases; failed subtasks are dropped and end their chain.

Output folder::

    <out>/lerobot/               LeRobot v3.0 dataset (meta/, data/, videos/) - train on this
    <out>/calvin/training/       CALVIN's on-disk format (with --calvin-format)
    <out>/collect_report.json    attempts and kept episodes per task, steps, timing, every episode

Interrupted (Ctrl-C, or SIGTERM through the ``emu3-vla`` CLI, which stops the workers too): the
dataset is finalised with the episodes written so far (a job's episodes are written and counted, or
none of them) and the report says ``"interrupted": true`` and which job comes next; the exception is
re-raised. ``resume=True`` (``--resume``) continues such a collection from that job, appending to the
same dataset: the episodes end up those of an uninterrupted run (jobs are functions of their index,
and the per-task counts that decide what is still wanted are restored from the report). A folder
without a report (the process was killed outright) cannot be continued and needs ``overwrite``.

Reproducibility: job ``i`` (start state, scene seed, expert seed, task or chain) is a function of
``(seed, i)``; workers run jobs in parallel but episodes are written in job order, so the dataset
is the same whatever ``workers`` is. With per-task quotas, a job whose recorded tasks have all filled
their quota is skipped before it runs (its episodes would be dropped anyway, so the dataset does
not change): without that, the last few episodes of the rarest task cost as much as the rest.
Speed: only recorded steps are rendered, at the requested camera sizes (``static_size=128,
gripper_size=64`` renders about three times faster than CALVIN's 200 / 84); ``render_every=k``
renders every k-th step of an episode and repeats the frame in between, for models that encode
every k-th frame anyway (the demo's ``data.frame_stride``); ``render_sizes=(200, 84)`` renders what
evaluation renders and stores it resized, as a policy resizes its camera images.

Python use (what the demo calls)::

    from eval.collection.collect import CollectConfig, collect
    report = collect(CollectConfig(out=Path("data/demo"), episodes=200, static_size=128, gripper_size=64, workers=2))
    report = collect("data/demo", episodes_per_task=20, tasks=["open_drawer", "turn_on_led"], overwrite=True)
    report.lerobot_root  # -> data/demo/lerobot (train on this); report.to_json() is collect_report.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emu3_vla.interrupts import deferred_interrupts
from envs import SUBTASK_STEPS, task_instructions, task_names
from eval.chains import training_chains
from eval.collection.jobs import Job, demonstration_job, derive_seed
from eval.collection.pool import RunSettings, run_jobs
from eval.collection.recorder import LABELS, TAIL_STEPS, Episode, JobResult
from eval.collection.resume import report_to_continue, settings_json
from eval.collection.writers import (
    MAX_EPISODE_FRAMES,
    VIDEO_CODEC,
    VIDEO_TOLERANCE,
    CalvinFormatWriter,
    LeRobotWriter,
)
from policies.experts import NOISE_KINDS

log = logging.getLogger(__name__)

REPORT_NAME = "collect_report.json"
TRAINING_CHAINS = 2_000  # distinct chains jobs draw from (about 10 per start state)
VARIANTS = ("A", "B", "C", "D")


@dataclasses.dataclass
class CollectConfig:
    """Everything ``collect`` needs; the CLI flags map one to one."""

    out: Path
    episodes: int = 100
    tasks: Sequence[str] | None = None  # None: all 34
    episodes_per_task: int | None = None  # instead of ``episodes``: stop when every task has this many
    seed: int = 0
    workers: int = 1
    chain_fraction: float = 0.5
    variants: Sequence[str] = ("D",)
    static_size: int = 200
    gripper_size: int = 84
    video: bool = True
    calvin_format: bool = False
    noise: float = 0.0
    noise_kind: str = "smooth"  # smooth | bursts (see policies.experts.expert)
    labels: str = "clean"  # with noise: "clean" records the expert's correction (DART), "executed" the noisy action
    randomize: bool = True
    max_steps: int = SUBTASK_STEPS
    tail_steps: int = TAIL_STEPS
    handover: bool = False  # chains: a subtask's finishing motion opens the next one (eval.collection.recorder)
    max_jobs: int | None = None  # give up after this many jobs (default: see max_jobs())
    overwrite: bool = False
    resume: bool = False  # continue the interrupted collection in ``out`` (same settings), else start one
    progress: bool = True
    renderer: str = "tiny"
    render_every: int = 1  # render every k-th step of an episode, hold the frame in between (see recorder)
    # render the cameras at these (static, gripper) sizes, e.g. CALVIN's (200, 84) that evaluation renders,
    # and store the frames resized to static_size / gripper_size as a policy resizes them (None: render those)
    render_sizes: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if not 0.0 <= self.chain_fraction <= 1.0:
            raise ValueError(f"chain_fraction must be between 0 and 1, got {self.chain_fraction}")
        if self.tasks is not None:
            self.tasks = checked_tasks(self.tasks)
        bad = [v for v in self.variants if v not in VARIANTS]
        if bad or not self.variants:
            raise ValueError(f"unknown scene variants {bad or '(none given)'}; choose from {list(VARIANTS)}")
        for name in ("static_size", "gripper_size"):
            size = getattr(self, name)
            if not isinstance(size, int) or not 16 <= size <= 512 or size % 2:
                raise ValueError(f"{name} must be an even number of pixels between 16 and 512 (video), got {size}")
        if self.noise < 0:
            raise ValueError(f"noise must be >= 0, got {self.noise}")
        if not isinstance(self.render_every, int) or self.render_every < 1:
            raise ValueError(f"render_every must be a whole number >= 1, got {self.render_every!r}")
        self.render_sizes = checked_render_sizes(self.render_sizes)
        if self.render_every > 1 and self.calvin_format:
            raise ValueError(
                f"render_every={self.render_every} repeats frames between renders, but CALVIN-format readers "
                "train on every frame; collect CALVIN's format with render_every=1"
            )
        if self.noise_kind not in NOISE_KINDS:
            raise ValueError(f"noise_kind must be one of {', '.join(NOISE_KINDS)}, got {self.noise_kind!r}")
        if self.labels not in LABELS:
            raise ValueError(f"labels must be one of {', '.join(LABELS)}, got {self.labels!r}")
        if self.episodes_per_task is not None:
            if self.episodes_per_task < 1:
                raise ValueError(f"episodes_per_task must be >= 1, got {self.episodes_per_task}")
            self.episodes = self.episodes_per_task * len(self.task_list)

    @property
    def task_list(self) -> list[str]:
        return list(self.tasks) if self.tasks is not None else task_names()


@dataclasses.dataclass
class CollectReport:
    """What ``collect`` did (written to ``collect_report.json``)."""

    out: Path
    lerobot_root: Path
    calvin_root: Path | None
    episodes: int
    frames: int
    jobs: int
    env_steps: int
    seconds: float
    attempted: dict[str, int]  # subtasks run that were wanted as demonstrations
    succeeded: dict[str, int]  # of those, the successful ones (kept, or dropped over a task's quota)
    kept: dict[str, int]
    episode_list: list[dict[str, Any]]
    config: dict[str, Any]
    jobs_skipped: int = 0  # jobs not run: every task they record had its quota
    interrupted: bool = False  # stopped early (Ctrl-C, SIGTERM): the dataset holds the episodes written so far
    next_job: int = 0  # the first job whose episodes are not in the dataset (where ``resume`` continues)

    @classmethod
    def nothing_yet(cls, out: Path, lerobot_root: Path, calvin_root: Path | None) -> CollectReport:
        """The counts a fresh collection starts from (a continued one starts from its saved report)."""
        return cls(
            out=out,
            lerobot_root=lerobot_root,
            calvin_root=calvin_root,
            episodes=0,
            frames=0,
            jobs=0,
            env_steps=0,
            seconds=0.0,
            attempted={},
            succeeded={},
            kept={},
            episode_list=[],
            config={},
        )

    @classmethod
    def from_json(cls, data: dict[str, Any], out: Path) -> CollectReport:
        """The report ``to_json`` wrote (``collect_report.json``), read back to continue or return it."""
        per_task = data.get("per_task", {})
        return cls(
            out=Path(out),
            lerobot_root=Path(data["lerobot_root"]),
            calvin_root=Path(data["calvin_root"]) if data.get("calvin_root") else None,
            episodes=int(data["episodes"]),
            frames=int(data["frames"]),
            jobs=int(data["jobs"]),
            env_steps=int(data["env_steps"]),
            seconds=float(data["seconds"]),
            attempted={t: v["attempted"] for t, v in per_task.items() if v["attempted"]},
            succeeded={t: v["succeeded"] for t, v in per_task.items() if v["attempted"]},
            kept={t: v["kept"] for t, v in per_task.items() if v["kept"]},
            episode_list=list(data.get("episode_list", [])),
            config=dict(data.get("config", {})),
            jobs_skipped=int(data.get("jobs_skipped", 0)),
            interrupted=bool(data.get("interrupted", False)),
            next_job=int(data.get("next_job", 0)),
        )

    def to_json(self) -> dict[str, Any]:
        per_task = {
            task: {
                "attempted": self.attempted.get(task, 0),
                "kept": self.kept.get(task, 0),
                "succeeded": self.succeeded.get(task, 0),
                "success_rate": round(self.succeeded.get(task, 0) / self.attempted[task], 4)
                if self.attempted.get(task)
                else None,
            }
            for task in sorted(set(self.attempted) | set(self.kept))
        }
        return {
            "episodes": self.episodes,
            "frames": self.frames,
            "jobs": self.jobs,
            "jobs_skipped": self.jobs_skipped,
            "interrupted": self.interrupted,
            "next_job": self.next_job,
            "env_steps": self.env_steps,
            "seconds": round(self.seconds, 2),
            "episodes_per_minute": round(60 * self.episodes / max(self.seconds, 1e-9), 2),
            "env_steps_per_second": round(self.env_steps / max(self.seconds, 1e-9), 1),
            "lerobot_root": str(self.lerobot_root),
            "calvin_root": str(self.calvin_root) if self.calvin_root else None,
            "video": {"codec": VIDEO_CODEC, "max_pixel_error": VIDEO_TOLERANCE} if self.config["video"] else None,
            "per_task": per_task,
            "config": self.config,
            "episode_list": self.episode_list,
        }


def instruction_for(task: str, seed: int, job_index: int, position: int, paraphrases: dict[str, list[str]]) -> str:
    """A training paraphrase of ``task``, drawn with a seed of its own (same episode, same sentence)."""
    choices = paraphrases[task]
    return choices[derive_seed(seed, "instruction", job_index, position) % len(choices)]


def demonstration_jobs(config: CollectConfig, limit: int | None = None, start: int = 0) -> Iterator[Job]:
    """The jobs ``collect`` runs, in order from job ``start`` (job ``i`` depends only on ``config.seed`` and ``i``)."""
    chains = training_chains(TRAINING_CHAINS, config.seed) if config.chain_fraction > 0 else []
    for index in range(start, limit if limit is not None else max_jobs(config)):
        yield demonstration_job(
            index,
            config.seed,
            config.task_list,
            chain_fraction=config.chain_fraction,
            chains=chains,
            variants=tuple(config.variants),
        )


def max_jobs(config: CollectConfig) -> int:
    """How many jobs ``collect`` runs at most before giving up on reaching its episode count."""
    if config.max_jobs is not None:
        return config.max_jobs
    per_episode = 10 if config.episodes_per_task is not None else 5  # quotas discard surplus episodes
    return per_episode * config.episodes + 50


def run_settings(config: CollectConfig) -> RunSettings:
    """How ``collect`` runs each job (recording frames at the configured camera sizes)."""
    return RunSettings(
        record_frames=True,
        static_size=config.static_size,
        gripper_size=config.gripper_size,
        randomize=config.randomize,
        noise=config.noise,
        noise_kind=config.noise_kind,
        labels=config.labels,
        max_steps=config.max_steps,
        tail_steps=config.tail_steps,
        handover=config.handover,
        renderer=config.renderer,
        render_every=config.render_every,
        render_sizes=config.render_sizes,
    )


def checked_tasks(tasks: Sequence[str]) -> list[str]:
    """``tasks`` without repeats, in order; a ValueError naming the choices if one is not a CALVIN task."""
    known = task_names()
    tasks = list(dict.fromkeys(tasks))
    unknown = [t for t in tasks if t not in known]
    if unknown or not tasks:
        raise ValueError(f"unknown tasks {unknown or '(none given)'}; choose from: {', '.join(known)}")
    return tasks


def checked_render_sizes(sizes: Sequence[int] | None) -> tuple[int, int] | None:
    """``render_sizes`` as a (static, gripper) tuple; a ValueError unless two whole numbers in 16..512."""
    if sizes is None:
        return None
    pair = tuple(sizes)
    if len(pair) != 2 or not all(isinstance(v, int) and 16 <= v <= 512 for v in pair):
        raise ValueError(f"render_sizes must be two whole numbers between 16 and 512 (static, gripper), got {sizes!r}")
    return pair


def prepare_out(out: Path, outputs: Sequence[Path], overwrite: bool) -> None:
    """Create ``out``; if it already holds any of ``outputs``, remove them with ``overwrite``, else refuse."""
    existing = [p for p in outputs if p.exists()]
    if existing:
        if not overwrite:
            raise FileExistsError(
                f"{out} already holds a collection ({', '.join(p.name for p in existing)}); "
                "pass --overwrite (overwrite=True) to replace it or choose another --out"
            )
        for path in existing:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


#: Settings that may differ when an interrupted collection is continued: they change how it runs, not
#: which episodes it writes.
RESUME_FREE_SETTINGS = frozenset({"out", "workers", "progress", "overwrite", "resume", "max_jobs"})


def continued_report(config: CollectConfig) -> CollectReport | None:
    """With ``config.resume``, the report of the collection in ``config.out`` to continue (or to return
    as it is, when it finished); None to start a new one (see :mod:`eval.collection.resume`)."""
    data = report_to_continue(config, REPORT_NAME, "next_job", RESUME_FREE_SETTINGS)
    return CollectReport.from_json(data, config.out) if data is not None else None


def collect(config: CollectConfig | str | Path, **settings: Any) -> CollectReport:
    """Run experts until ``config.episodes`` successful episodes are written; see the module docstring.

    ``collect(CollectConfig(out=..., ...))`` or, equivalently, ``collect(out, **CollectConfig fields)``.
    With ``episodes_per_task`` an episode is kept only while its task has fewer than that many, and
    collection stops when every task has them (a balanced dataset). With ``resume`` an interrupted
    collection in ``out`` continues (a finished one is returned as it is).
    """
    from tqdm.auto import tqdm

    if not isinstance(config, CollectConfig):
        config = CollectConfig(out=Path(config), **settings)
    elif settings:
        config = dataclasses.replace(config, **settings)
    quota = config.episodes_per_task
    lerobot_root = config.out / "lerobot"
    calvin_root = config.out / "calvin" / "training" if config.calvin_format else None
    previous = continued_report(config)
    if previous is not None and not previous.interrupted:
        log.info("%s already holds this collection, finished (%d episodes)", config.out, previous.episodes)
        return previous
    resuming = previous is not None
    if not resuming:  # with resume, continued_report has refused every folder it would be a loss to replace
        outputs = [lerobot_root, config.out / "calvin", config.out / REPORT_NAME]
        prepare_out(config.out, outputs, config.overwrite or config.resume)
    paraphrases = task_instructions("training")
    lerobot = LeRobotWriter(
        lerobot_root,
        static_size=config.static_size,
        gripper_size=config.gripper_size,
        video=config.video,
        max_episode_frames=max(MAX_EPISODE_FRAMES, config.max_steps + 2 * config.tail_steps + 1),
        render_every=config.render_every,
        resume=resuming,
    )
    calvin = CalvinFormatWriter(calvin_root, resume=resuming) if calvin_root is not None else None
    so_far = previous or CollectReport.nothing_yet(config.out, lerobot_root, calvin_root)
    attempted, succeeded, kept = Counter(so_far.attempted), Counter(so_far.succeeded), Counter(so_far.kept)
    episode_list: list[dict[str, Any]] = list(so_far.episode_list)
    frames, env_steps, jobs_run, next_job = so_far.frames, so_far.env_steps, so_far.jobs, so_far.next_job
    skipped: list[int] = []  # indices of the jobs skipped (some lie ahead of the last job written)
    if resuming:
        log.info("continuing %s: %d episodes written, from job %d", config.out, len(episode_list), next_job)
    started = time.perf_counter()
    bar = tqdm(
        total=config.episodes, initial=len(episode_list), desc="episodes", unit="ep", disable=not config.progress
    )

    def still_wanted(jobs: Iterator[Job]) -> Iterator[Job]:
        """Leave out what only full tasks would record (decided when a worker is free for the job): a job
        whose recorded tasks are all full is skipped, a full task's subtask is run unrecorded (nothing
        rendered), and a chain stops after its last subtask that is still wanted. Kept counts only grow,
        so everything left out would have been dropped anyway: the dataset does not change."""
        for job in jobs:
            if quota is not None:
                wanted = tuple(rec and kept[t] < quota for t, rec in zip(job.tasks, job.record, strict=True))
                if not any(wanted):
                    skipped.append(job.index)
                    continue
                end = len(wanted) - wanted[::-1].index(True) if job.kind == "chain" else len(wanted)
                meta = {**job.meta, "chain_tasks": list(job.tasks)}
                job = dataclasses.replace(job, tasks=job.tasks[:end], record=wanted[:end], meta=meta)
            yield job

    def write(result: JobResult) -> None:
        """Count a job and write the episodes still wanted of it."""
        nonlocal jobs_run, env_steps, frames, next_job
        jobs_run += 1
        env_steps += result.env_steps
        _count(result, attempted, succeeded)
        for position, outcome in enumerate(result.outcomes):
            if outcome.episode is None or len(episode_list) >= config.episodes:
                continue
            episode = outcome.episode
            if quota is not None and kept[episode.task] >= quota:
                continue
            instruction = instruction_for(episode.task, config.seed, result.job.index, position, paraphrases)
            index = lerobot.add(episode, instruction)
            if calvin is not None:
                calvin.add(episode, instruction)
            kept[episode.task] += 1
            frames += len(episode)
            episode_list.append(_episode_entry(index, episode, instruction, result.job, position))
            bar.update(1)
        next_job = result.job.index + 1

    # an interruption while the last job was written leaves nothing to run: the loop below stops at once
    demonstrations = still_wanted(demonstration_jobs(config, start=next_job))
    if len(episode_list) >= config.episodes:
        demonstrations = iter(())
    results = run_jobs(demonstrations, run_settings(config), config.workers)
    interruption: KeyboardInterrupt | None = None
    try:
        for result in results:
            with deferred_interrupts():  # a job's episodes are written and counted, or none of them
                write(result)
            bar.set_postfix(jobs=jobs_run, kept=f"{sum(kept.values())}/{sum(attempted.values())}")
            if len(episode_list) >= config.episodes:
                break
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM through the CLI: keep what was written
        interruption = stop
    finally:
        results.close()
        bar.close()
    lerobot.finalize()
    if calvin is not None:
        calvin.finalize()
    if len(episode_list) < config.episodes and interruption is None:
        log.warning(
            "collected only %d of %d episodes in %d jobs (max_jobs); the experts fail too often here",
            len(episode_list),
            config.episodes,
            jobs_run,
        )
    report = CollectReport(
        out=config.out,
        lerobot_root=lerobot_root,
        calvin_root=calvin_root,
        episodes=len(episode_list),
        frames=frames,
        jobs=jobs_run,
        env_steps=env_steps,
        seconds=so_far.seconds + time.perf_counter() - started,
        attempted=dict(attempted),
        succeeded=dict(succeeded),
        kept=dict(kept),
        episode_list=episode_list,
        jobs_skipped=so_far.jobs_skipped + sum(index < next_job for index in skipped),
        interrupted=interruption is not None,
        next_job=next_job,
        config=settings_json(config),
    )
    (config.out / REPORT_NAME).write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    if interruption is not None:
        log.warning(
            "interrupted: %s holds the %d episodes written so far (%s marks it interrupted); "
            "run the same command with --resume (resume=True) to continue",
            lerobot_root,
            len(episode_list),
            REPORT_NAME,
        )
        raise interruption
    return report


def _count(result: JobResult, attempted: Counter[str], succeeded: Counter[str]) -> None:
    for position, outcome in enumerate(result.outcomes):
        if result.job.record[position]:
            attempted[outcome.task] += 1
            succeeded[outcome.task] += outcome.success


def _episode_entry(index: int, episode: Episode, instruction: str, job: Job, position: int) -> dict[str, Any]:
    return {
        "episode_index": index,
        "task": episode.task,
        "instruction": instruction,
        "length": len(episode),
        "success_step": episode.success_step,
        "job": job.index,
        "kind": job.kind,
        "position": position,
        "variant": job.variant,
        "scene_seed": job.scene_seed,
        "expert_seed": job.expert_seed,
        "start_state": job.state,
        "job_tasks": list(job.meta.get("chain_tasks", job.tasks)),
        # Digests of what was recorded: equal digests, equal episodes (reproducibility checks).
        "actions_sha": _digest(episode.actions),
        "frames_sha": _digest(episode.static, episode.gripper),
    }


def _digest(*arrays: np.ndarray | None) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]
