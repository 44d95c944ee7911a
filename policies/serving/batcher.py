"""One model worker that batches requests from concurrent connections.

Why a single worker thread: the model (and the policy's per-slot windows) must only ever be touched
by one thread, and the asyncio event loop must never wait on it, so health checks, handshakes and
other clients are served while a forward pass runs. Connections put jobs on an asyncio queue; the
drain loop takes the first job, then collects more for at most ``max_wait_s`` (or until every idle
connection has sent one), and hands the batch to a one-thread executor. While a batch runs, new
jobs pile up in the queue and form the next batch, so throughput grows with load without any
client waiting longer than one batch plus the short collection window.

Backpressure comes from the protocol: each connection has at most one job in flight (its handler
awaits the answer before reading the next message), so the queue never holds more jobs than there
are connections.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from policies.serving.protocol import ServedObservation
from policies.serving.served_policy import ServedPolicy

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ChunkResult:
    actions: np.ndarray  # (execute_steps, action_dim)
    queue_ms: float  # waiting before the batch started
    infer_ms: float  # the batch's model time
    batch_size: int


@dataclasses.dataclass
class _Job:
    slot: int
    kind: str  # "infer" or "reset"
    future: asyncio.Future
    observation: ServedObservation | None = None
    prompt: str | None = None
    enqueued: float = dataclasses.field(default_factory=time.perf_counter)


class BatchWorker:
    """Drains a queue of per-connection jobs into batched :meth:`ServedPolicy.query_chunks` calls."""

    def __init__(
        self,
        policy: ServedPolicy,
        *,
        max_batch: int = 32,
        max_wait_s: float = 0.005,
        expected_jobs: Callable[[], int] | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.policy = policy
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.expected_jobs = expected_jobs or (lambda: max_batch)
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._queue: asyncio.Queue[_Job] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task | None = None
        self._stopped = False

    # --------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emu3-vla-model")
        self._task = asyncio.get_running_loop().create_task(self._drain(), name="emu3-vla-batcher")

    async def stop(self) -> None:
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._queue is not None:
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(RuntimeError("the server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def pending(self) -> int:
        """Jobs waiting for the model (not counting the batch that is running)."""
        return 0 if self._queue is None else self._queue.qsize()

    # ------------------------------------------------------------------- jobs
    async def infer(self, slot: int, observation: ServedObservation, prompt: str) -> ChunkResult:
        return await self._submit(_Job(slot, "infer", self._future(), observation, prompt))

    async def reset(self, slot: int) -> None:
        await self._submit(_Job(slot, "reset", self._future()))

    def _future(self) -> asyncio.Future:
        return asyncio.get_running_loop().create_future()

    async def _submit(self, job: _Job) -> Any:
        if self._queue is None or self._stopped:
            raise RuntimeError("the model worker is not running (BatchWorker.start() not called, or stopped)")
        self._queue.put_nowait(job)
        return await job.future

    # ------------------------------------------------------------------- loop
    async def _drain(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self._queue.get()]
            deadline = loop.time() + self.max_wait_s
            while len(jobs) < self.max_batch:
                if not self._queue.empty():
                    jobs.append(self._queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0 or len(jobs) >= self.expected_jobs():
                    break
                try:
                    jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            started = time.perf_counter()
            outcomes = await loop.run_in_executor(self._executor, self._run, jobs)
            infer_ms = (time.perf_counter() - started) * 1e3
            n_infer = sum(job.kind == "infer" for job in jobs)
            if n_infer:
                self.batch_sizes[n_infer] += 1
            for job, outcome in zip(jobs, outcomes, strict=True):
                if job.future.done():  # the connection went away meanwhile
                    continue
                if isinstance(outcome, BaseException):
                    job.future.set_exception(outcome)
                elif job.kind == "infer":
                    queue_ms = (started - job.enqueued) * 1e3
                    job.future.set_result(ChunkResult(outcome, queue_ms, infer_ms, n_infer))
                else:
                    job.future.set_result(None)

    # --------------------------------------------------- model thread (only)
    def _run(self, jobs: Sequence[_Job]) -> list[Any]:
        """Resets first (they come from other connections than the queries), then one batched query.
        A failing batch is retried row by row so that only the offending request gets the error."""
        outcomes: list[Any] = [None] * len(jobs)
        for job in jobs:
            if job.kind == "reset":
                self.policy.reset(job.slot)
        infer = [i for i, job in enumerate(jobs) if job.kind == "infer"]
        if not infer:
            return outcomes
        try:
            chunks = self._query([jobs[i] for i in infer])
            for row, i in enumerate(infer):
                outcomes[i] = chunks[row]
        except Exception as err:
            if len(infer) == 1:
                log.exception("model step failed for slot %d", jobs[infer[0]].slot)
                outcomes[infer[0]] = err
                return outcomes
            log.warning("batch of %d failed (%s); retrying row by row", len(infer), err)
            for i in infer:
                try:
                    outcomes[i] = self._query([jobs[i]])[0]
                except Exception as row_err:
                    log.exception("model step failed for slot %d", jobs[i].slot)
                    outcomes[i] = row_err
        return outcomes

    def _query(self, jobs: Sequence[_Job]) -> np.ndarray:
        return self.policy.query_chunks(
            [job.slot for job in jobs], [job.observation for job in jobs], [job.prompt for job in jobs]
        )
