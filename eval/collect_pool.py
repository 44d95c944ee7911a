"""Running jobs in worker processes, one PlayTable environment per process, results in job order.

PlayTable runs many environments per process, but pybullet steps on one core, so parallel
collection uses processes. Each worker builds its environment (per scene variant and camera
sizes) and its expert once and reuses them for every job it gets; a job resets the scene and
reseeds the expert, so its result depends on the job alone - not on the worker, nor on what the
worker ran before (tests check this). Results come back in job order, with a bounded number of
jobs in flight, so a consumer can stop as soon as it has enough.

Workers start with ``forkserver`` (forking a parent that already runs torch or BLAS threads is
unsafe); as with any multiprocessing, a calling script needs an ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

from envs import PlayTableEnv, TaskOracle
from eval.collect_jobs import Job
from eval.collect_rollout import JobResult, run_job
from policies.experts import ScriptedExpert


@dataclass(frozen=True)
class RunSettings:
    """How every job of a run is executed (the same in every worker)."""

    record_frames: bool = True
    static_size: int = 200
    gripper_size: int = 84
    randomize: bool = True
    noise: float = 0.0
    max_steps: int = 360
    tail_steps: int = 60
    finish_last: bool = True
    renderer: str = "tiny"


class JobRunner:
    """Environments (one per scene variant) and an expert, kept for all the jobs of one process."""

    def __init__(self, settings: RunSettings) -> None:
        self.settings = settings
        self.envs: dict[str, PlayTableEnv] = {}
        self.expert = ScriptedExpert(randomize=settings.randomize, noise=settings.noise)
        self.oracle = TaskOracle()

    def env(self, variant: str) -> PlayTableEnv:
        if variant not in self.envs:
            sizes = {"static": self.settings.static_size, "gripper": self.settings.gripper_size}
            self.envs[variant] = PlayTableEnv(variant=variant, renderer=self.settings.renderer, camera_sizes=sizes)
        return self.envs[variant]

    def __call__(self, job: Job) -> JobResult:
        s = self.settings
        return run_job(
            self.env(job.variant),
            self.expert,
            job,
            self.oracle,
            record_frames=s.record_frames,
            max_steps=s.max_steps,
            tail_steps=s.tail_steps,
            finish_last=s.finish_last,
        )

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


_WORKER: JobRunner | None = None


def _init_worker(settings: RunSettings) -> None:
    global _WORKER
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
        pool.shutdown(wait=True, cancel_futures=True)
