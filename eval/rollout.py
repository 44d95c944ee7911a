"""Run CALVIN long-horizon chains: several environments stepped together, one batched policy.

The protocol (docs/design.md section 6): each chain resets the scene once from its symbolic start state
(with the chain's own seed); for each of its 5 subtasks the policy is reset and gets 360 steps;
success is checked after every step against the current subtask only; a chain stops at its first
failure. ``num_envs`` environments run different chains at the same time so that a batched policy
(the Emu3 policy decodes all environments in one forward pass) is queried once per step for all of
them; an environment that finishes its chain takes the next one.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from envs.calvin_data import SUBTASK_STEPS
from eval.results import ChainResult
from eval.video import ChainVideo
from policies.base import privileged_observation

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ChainJob:
    chain_index: int
    seed: int
    state: dict[str, Any]
    tasks: list[str]


@dataclasses.dataclass
class _Slot:
    env: Any
    job: ChainJob | None = None
    subtask: int = 0
    steps: int = 0
    obs: Any = None
    start_info: Any = None
    successes: list[bool] = dataclasses.field(default_factory=list)
    step_counts: list[int] = dataclasses.field(default_factory=list)
    malformed_at_start: int = 0
    started: float = 0.0
    video: ChainVideo | None = None
    probe: Any = None  # eval.failures.FailureProbe of the running block subtask


def _malformed(policy: Any, env_id: int) -> int:
    stats = getattr(policy, "stats", None)
    return int(getattr(stats, "malformed_by_env", {}).get(env_id, 0)) if stats is not None else 0


class ChainRunner:
    """Evaluates chains with ``len(envs)`` environments and one (batched) policy."""

    def __init__(
        self,
        envs: Sequence[Any],
        policy: Any,
        instructions: dict[str, str],
        oracle: Any,
        *,
        ep_len: int = SUBTASK_STEPS,
        video_dir: Path | None = None,
        video_chains: Iterable[int] = (),
        progress: bool = True,
        failure_probe: Callable[[str, Any], Any] | None = None,
    ) -> None:
        """``failure_probe(task, start_info)``: a probe that watches a subtask and labels its failure
        (:class:`eval.failures.FailureProbe`), or None for tasks it does not cover."""
        self.slots = [_Slot(env) for env in envs]
        self.policy = policy
        self.instructions = instructions
        self.oracle = oracle
        self.ep_len = ep_len
        self.video_dir = video_dir
        self.video_chains = set(video_chains)
        self.progress = progress
        self.failure_probe = failure_probe
        self.privileged = bool(getattr(policy, "needs_info", False))

    def _observation(self, slot: _Slot) -> Any:
        if not self.privileged:
            return slot.obs
        return privileged_observation(slot.obs, slot.env, slot.job.tasks[slot.subtask])

    def _start(self, k: int, job: ChainJob) -> None:
        slot = self.slots[k]
        slot.job, slot.subtask, slot.steps = job, 0, 0
        slot.successes, slot.step_counts = [], []
        slot.obs = slot.env.reset(job.state, seed=job.seed)
        slot.start_info = slot.env.get_info()
        slot.probe = self._probe(job.tasks[0], slot.start_info)
        slot.malformed_at_start = _malformed(self.policy, k)
        slot.started = time.perf_counter()
        slot.video = None
        if self.video_dir is not None and job.chain_index in self.video_chains:
            slot.video = ChainVideo(self.video_dir / f"chain_{job.chain_index:04d}.mp4")
        self.policy.reset(k)
        if hasattr(self.policy, "reseed"):  # a stochastic policy draws from the chain's own seed
            self.policy.reseed(k, job.seed + job.chain_index)

    def _probe(self, task: str, start_info: Any) -> Any:
        return self.failure_probe(task, start_info) if self.failure_probe is not None else None

    def _finish_subtask(self, k: int, success: bool, info: Any) -> ChainResult | None:
        slot = self.slots[k]
        slot.successes.append(success)
        slot.step_counts.append(slot.steps)
        if slot.video is not None:
            slot.video.mark(success)
        if success and slot.subtask + 1 < len(slot.job.tasks):
            slot.subtask += 1
            slot.steps = 0
            slot.start_info = info
            slot.probe = self._probe(slot.job.tasks[slot.subtask], info)
            self.policy.reset(k)
            return None
        job = slot.job
        if slot.video is not None:
            task = job.tasks[min(slot.subtask, len(job.tasks) - 1)]
            slot.video.close(slot.obs, self.instructions[task], slot.subtask, len(job.tasks))
        result = ChainResult(
            chain_index=job.chain_index,
            seed=job.seed,
            state=dict(job.state),
            tasks=list(job.tasks),
            successes=list(slot.successes),
            steps=list(slot.step_counts),
            malformed=_malformed(self.policy, k) - slot.malformed_at_start,
            seconds=round(time.perf_counter() - slot.started, 3),
            failure=slot.probe.label() if (slot.probe is not None and not success) else None,
        )
        slot.job = None
        return result

    def run(self, jobs: Sequence[ChainJob], on_result: Callable[[ChainResult], None]) -> None:
        pending = list(jobs)
        bar = tqdm(total=len(pending), desc="chains", disable=not self.progress, unit="chain")
        done = 0
        length_sum = 0
        while pending or any(s.job is not None for s in self.slots):
            for k, slot in enumerate(self.slots):
                if slot.job is None and pending:
                    self._start(k, pending.pop(0))
            active = [k for k, s in enumerate(self.slots) if s.job is not None]
            tasks = [self.slots[k].job.tasks[self.slots[k].subtask] for k in active]
            texts = [self.instructions[t] for t in tasks]
            for k, text in zip(active, texts, strict=True):
                slot = self.slots[k]
                if slot.video is not None:
                    slot.video.frame(slot.obs, text, slot.subtask, len(slot.job.tasks))
            actions = self.policy.act([self._observation(self.slots[k]) for k in active], texts, env_ids=active)
            for k, task, action in zip(active, tasks, actions, strict=True):
                slot = self.slots[k]
                slot.obs, _, _, info = slot.env.step(action)
                slot.steps += 1
                if slot.probe is not None:
                    slot.probe.observe(info)
                result = None
                if self.oracle.success(task, slot.start_info, info):
                    result = self._finish_subtask(k, True, info)
                elif slot.steps >= self.ep_len:
                    result = self._finish_subtask(k, False, info)
                if result is not None:
                    on_result(result)
                    done += 1
                    length_sum += result.completed
                    bar.update(1)
                    bar.set_postfix(avg_len=f"{length_sum / done:.2f}")
        bar.close()


def chain_jobs(
    chains: Sequence[tuple[dict, list[str]]], seed_fn: Callable[[dict], int], indices: Iterable[int]
) -> list[ChainJob]:
    """Jobs for the chains at ``indices``; each chain's seed is a function of its start state only
    (CALVIN's FNV seeding by default), so its outcome cannot depend on which shard or slot ran it."""
    return [ChainJob(i, int(seed_fn(chains[i][0])), dict(chains[i][0]), list(chains[i][1])) for i in indices]
