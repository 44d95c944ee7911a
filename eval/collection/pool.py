"""Running jobs in worker processes, one PlayTable environment per process, results in job order.

PlayTable runs many environments per process, but pybullet steps on one core, so parallel
collection uses processes. Each worker keeps one expert and builds a new environment for every job
(see :class:`JobRunner`); a job resets the scene and reseeds the expert, so its result depends on
the job alone - not on the worker, nor on what the worker ran before (tests check this). Results
come back in job order, with a bounded number of jobs in flight, so a consumer can stop as soon as
it has enough.

Workers start with ``forkserver`` (forking a parent that already runs torch or BLAS threads is
unsafe); as with any multiprocessing, a calling script needs an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

from envs import SUBTASK_STEPS, PlayTableEnv, TaskOracle
from eval.collection.jobs import Job
from eval.collection.recorder import JobResult, run_job
from eval.worker_exit import exit_with_parent
from policies.experts import ScriptedExpert


@dataclass(frozen=True)
class RunSettings:
    """How every job of a run is executed (the same in every worker)."""

    record_frames: bool = True
    static_size: int = 200
    gripper_size: int = 84
    randomize: bool = True
    noise: float = 0.0
    noise_kind: str = "smooth"  # smooth noise on every free-space step, or short pushes (bursts)
    labels: str = "clean"  # with noise: record the expert's noise-free action (DART) or the executed one
    max_steps: int = SUBTASK_STEPS
    tail_steps: int = 60
    finish_last: bool = True
    handover: bool = False  # a chain's subtask tail opens the next subtask's episode (see recorder)
    renderer: str = "tiny"
    render_every: int = 1  # render every k-th step of an episode, hold the frame in between (see recorder)
    # render at these (static, gripper) sizes and store frames resized to static_size / gripper_size
    render_sizes: tuple[int, int] | None = None


class JobRunner:
    """Runs jobs one after another in one process: a new environment per job, one expert for all.

    pybullet keeps contact caches across a reset, so a reset in an environment that has run other
    jobs settles about 1e-5 m differently from one in a new environment - enough to flip edge pixels
    in rendered frames. A job therefore gets a new environment (about 0.1 s, a few percent of a job),
    which makes its episodes a function of the job alone, whichever worker runs it after what.
    """

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self.env: PlayTableEnv | None = None
        self.expert = ScriptedExpert(randomize=settings.randomize, noise=settings.noise, noise_kind=settings.noise_kind)
        self.oracle = TaskOracle()

    def new_env(self, variant: str) -> PlayTableEnv:
        self.close()
        rendered = self.settings.render_sizes or (self.settings.static_size, self.settings.gripper_size)
        sizes = {"static": rendered[0], "gripper": rendered[1]}
        self.env = PlayTableEnv(variant=variant, renderer=self.settings.renderer, camera_sizes=sizes)
        return self.env

    def __call__(self, job: Job) -> JobResult:
        s = self.settings
        return run_job(
            self.new_env(job.variant),
            self.expert,
            job,
            self.oracle,
            record_frames=s.record_frames,
            max_steps=s.max_steps,
            tail_steps=s.tail_steps,
            finish_last=s.finish_last,
            labels=s.labels,
            handover=s.handover,
            render_every=s.render_every,
            store_sizes={"static": s.static_size, "gripper": s.gripper_size} if s.render_sizes else None,
        )

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None


_WORKER: JobRunner | None = None


def _init_worker(settings: RunSettings) -> None:
    global _WORKER
    import torch

    exit_with_parent()
    # One worker per core: torch's default intra-op threads (one per core) in every worker, spinning
    # against the other workers' simulators, made each stored frame's resize (render_sizes) ~40x slower.
    torch.set_num_threads(1)
    _WORKER = JobRunner(settings)


def _run_in_worker(job: Job) -> JobResult:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER(job)


def run_jobs(
    jobs: Iterable[Job],
    settings: RunSettings,
    workers: int = 1,
    *,
    window: int | None = None,
) -> Iterator[JobResult]:
    """Results of ``jobs`` in their order; ``jobs`` may be endless (stop iterating to stop).

    With ``workers > 1`` at most ``window`` (default ``3 * workers``) jobs are in flight; closing the
    iterator cancels what is still queued.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1:
        runner = JobRunner(settings)
        try:
            for job in jobs:
                yield runner(job)
        finally:
            runner.close()
        return
    window = window or 3 * workers
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=get_context("forkserver"), initializer=_init_worker, initargs=(settings,)
    )
    pending: deque[Future[JobResult]] = deque()
    source = iter(jobs)
    try:
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                job = next(source, None)
                if job is None:
                    exhausted = True
                    break
                pending.append(pool.submit(_run_in_worker, job))
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()
        # Jobs already running finish in the background; the caller need not wait for results it dropped.
        pool.shutdown(wait=False, cancel_futures=True)
