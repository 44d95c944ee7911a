"""Demonstrations that start where a trained policy leaves the scene (DAgger-style hand-over data).

Why: in CALVIN's chains a policy meets every later subtask in the state its *own* previous subtask
left (the arm still on the handle, a block moved on the way, the gripper half closed). Expert
demonstrations never start there, even with ``--handover``: measured on the calvin34 recipe's
policy, from the states its first subtask leaves it completes the second in 2 of 33 chains and the
scripted expert in 31 of 33. DAgger (Ross et al., 2011) closes that gap by letting the learner visit
the states and the expert label them.

What one chain does: reset to a training chain's start (:func:`eval.chains.training_chains`: never
one of CALVIN's 1,000 evaluation chains); the policy runs CALVIN's protocol (validation instruction,
360 steps per subtask, success checked every step) for up to ``policy_subtasks`` subtasks; then the
scripted expert takes over in the same simulator, at the very state the policy left:

* after the policy's success, the expert records the **next** subtask, from the step CALVIN hands it
  over (``kind="handover"``);
* after the policy's failure (``recover=True``), the expert records the **failed** subtask from
  where the policy stopped; its success is still judged against the state at the subtask's start
  (``kind="recovery"``).

The expert then records up to ``expert_subtasks`` subtasks, each with its finishing motion, under
CALVIN's training paraphrases. Only subtasks the expert completes become episodes. The policy sees
what evaluation renders (CALVIN's 200 / 84 px, resized by the model); from the hand-over on the
simulator renders at the dataset's sizes, as ``collect`` records.

Parallel: ``workers`` processes, each with its own copy of the policy and ``envs`` simulators
stepped together (one batched policy query per step), as the chain evaluation runs. Output::

    <out>/lerobot/                   LeRobot v3.0 dataset, the features ``collect`` writes
    <out>/on_policy_report.json      per chain: what the policy did, who took over where, what was kept

Train on it together with the expert demonstrations (``data.root=[expert/lerobot,on_policy/lerobot]``)
so that the new states are added to, not swapped for, the old ones.

Interrupted (Ctrl-C, SIGTERM through the CLI): the chains whose episodes were written stay (a worker's
batch of ``chains_per_call`` chains is written whole), the dataset is finalised and the report says
``"interrupted": true`` and ``next_chain``; ``resume=True`` (``--resume``, the demo's rerun) continues
from there with the same chains. A driving VLA answers a batch of simulators at once, so a chain run
after the restart may differ in the last floating-point bits from the uninterrupted run's (other
chains share its batch); the scripted drivers give the same episodes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from emu3_vla.interrupts import deferred_interrupts
from envs import SUBTASK_STEPS, PlayTableEnv, TaskOracle, task_instructions
from eval.chains import training_chains
from eval.collection.collect import checked_render_sizes, checked_tasks, instruction_for, prepare_out
from eval.collection.jobs import derive_seed
from eval.collection.recorder import TAIL_STEPS, Episode, _Recorder
from eval.collection.resume import report_to_continue, settings_json
from eval.collection.writers import MAX_EPISODE_FRAMES, LeRobotWriter
from eval.worker_exit import exit_with_parent
from policies.base import privileged_observation
from policies.experts import ScriptedExpert

log = logging.getLogger(__name__)

REPORT_NAME = "on_policy_report.json"
#: Training chains are drawn under this offset from the run's seed, apart from those ``collect`` draws.
CHAIN_SEED_OFFSET = 7_919
MAX_DRAWN_CHAINS = 16_000  # chains drawn at most to find enough over a task subset


@dataclasses.dataclass
class OnPolicyConfig:
    """Everything :func:`collect_on_policy` needs (see the module docstring)."""

    policy: str  # a VLA checkpoint folder (or "expert" / "random", as `emu3-vla eval --policy` takes)
    out: Path
    chains: int = 400
    tasks: Sequence[str] | None = None  # only chains whose driven and recorded subtasks are among these
    seed: int = 0
    policy_subtasks: int = 1  # the policy's successes before the expert takes over
    expert_subtasks: int = 1  # subtasks the expert records after taking over
    recover: bool = True  # after the policy's failure the expert records that subtask from there
    static_size: int = 96
    gripper_size: int = 48
    render_every: int = 1  # the expert's episodes: render every k-th step, hold the frame in between (recorder)
    render_sizes: tuple[int, int] | None = None  # the expert's episodes: render so, store resized (as collect)
    envs: int = 4  # simulators per worker, stepped together
    workers: int = 2
    decoder: str = "parallel"
    chains_per_call: int = 16  # chains a worker runs before sending its episodes back
    overwrite: bool = False
    resume: bool = False  # continue the interrupted collection in ``out`` (same settings), else start one
    progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        counts = ("chains", "policy_subtasks", "expert_subtasks", "render_every", "envs", "workers", "chains_per_call")
        for name in counts:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.policy_subtasks >= 5:
            raise ValueError("policy_subtasks must be below 5 (a chain has 5 subtasks; the expert needs one)")
        if self.tasks is not None:
            self.tasks = checked_tasks(self.tasks)
        self.render_sizes = checked_render_sizes(self.render_sizes)
        if self.policy not in ("expert", "random") and not (Path(self.policy) / "emu3_vla.json").is_file():
            raise ValueError(
                f"policy {self.policy!r} is not a VLA checkpoint folder (no emu3_vla.json), 'expert' or 'random'"
            )


@dataclasses.dataclass
class ChainOutcome:
    """What happened in one chain, and the episodes it recorded."""

    index: int
    state: dict[str, Any]
    tasks: list[str]
    policy_successes: int = 0
    kind: str | None = None  # "handover", "recovery" or None (the expert never took over)
    expert_from: int | None = None  # the subtask the expert started at
    expert_successes: int = 0
    episodes: list[tuple[int, Episode]] = dataclasses.field(default_factory=list)  # (position, episode)

    def row(self) -> dict[str, Any]:
        return {
            "chain": self.index,
            "start_state": self.state,
            "tasks": self.tasks,
            "policy_successes": self.policy_successes,
            "kind": self.kind,
            "expert_from": self.expert_from,
            "expert_successes": self.expert_successes,
            "episodes": [{"position": p, "task": e.task, "length": len(e)} for p, e in self.episodes],
        }


@dataclasses.dataclass
class _Slot:
    env: PlayTableEnv
    chain: ChainOutcome
    position: int = 0
    steps: int = 0
    expert: bool = False
    obs: Any = None
    start_info: Any = None
    info: Any = None  # the simulator's info after the last step (the expert's privileged input)
    recorder: _Recorder | None = None
    success_step: int | None = None


class OnPolicyRunner:
    """Runs chains in ``envs`` simulators with one batched policy and the scripted expert (one process).

    A privileged policy (``needs_info``, e.g. a noisy scripted expert standing in for the learner)
    gets the simulator's info with each observation, as the chain evaluation hands it."""

    def __init__(self, config: OnPolicyConfig) -> None:
        from eval.evaluate import instructions_for_eval
        from eval.policy_factory import make_policy

        self.config = config
        decoder = None if config.policy in ("expert", "random") else config.decoder
        self.policy = make_policy(config.policy, seed=config.seed, decoder=decoder)
        self.privileged = bool(getattr(self.policy, "needs_info", False))
        self.expert = ScriptedExpert(randomize=True)
        self.oracle = TaskOracle()
        self.texts = instructions_for_eval("validation")  # what the chain evaluation says
        self.sizes = {"static": config.static_size, "gripper": config.gripper_size}

    def run(self, chains: list[ChainOutcome]) -> list[ChainOutcome]:
        pending, slots = list(chains), [None] * min(self.config.envs, len(chains))
        while pending or any(s is not None for s in slots):
            for k, slot in enumerate(slots):
                if slot is None and pending:
                    slots[k] = self._start(k, pending.pop(0))
            active = [k for k, s in enumerate(slots) if s is not None and not s.expert]
            if active:
                tasks = [slots[k].chain.tasks[slots[k].position] for k in active]
                observations = [self._observation(slots[k], task) for k, task in zip(active, tasks, strict=True)]
                actions = self.policy.act(observations, [self.texts[t] for t in tasks], env_ids=active)
                for k, action in zip(active, actions, strict=True):
                    if not self._policy_step(k, slots[k], action):
                        slots[k] = self._close(slots[k])
            for k, slot in enumerate(slots):
                if slot is not None and slot.expert and not self._expert_step(k, slot):
                    slots[k] = self._close(slot)
        return chains

    def _observation(self, slot: _Slot, task: str) -> Any:
        return privileged_observation(slot.obs, slot.env, task) if self.privileged else slot.obs

    def _start(self, k: int, chain: ChainOutcome) -> _Slot:
        seed = derive_seed(self.config.seed, "on_policy", chain.index)
        env = PlayTableEnv()
        slot = _Slot(env, chain, obs=env.reset(chain.state, seed=seed))
        slot.start_info = env.get_info()
        self.policy.reset(k)
        if hasattr(self.policy, "reseed"):
            self.policy.reseed(k, seed)
        self.expert.reseed(k, derive_seed(self.config.seed, "on_policy_expert", chain.index))
        return slot

    def _close(self, slot: _Slot) -> None:
        slot.env.close()
        return None

    def _policy_step(self, k: int, slot: _Slot, action) -> bool:
        """One policy action; False when the chain is over."""
        task = slot.chain.tasks[slot.position]
        slot.obs, _, _, info = slot.env.step(action)
        slot.steps += 1
        if self.oracle.success(task, slot.start_info, info):
            slot.chain.policy_successes += 1
            slot.position += 1
            slot.start_info, slot.steps = info, 0
            if slot.position >= len(slot.chain.tasks):
                return False
            if slot.chain.policy_successes < self.config.policy_subtasks:
                self.policy.reset(k)
                return True
            return self._take_over(k, slot, "handover")
        if slot.steps >= SUBTASK_STEPS:
            return self._take_over(k, slot, "recovery") if self.config.recover else False
        return True

    def _take_over(self, k: int, slot: _Slot, kind: str) -> bool:
        slot.chain.kind, slot.chain.expert_from = kind, slot.position
        slot.expert = True
        rendered = self.config.render_sizes
        slot.env.set_camera_sizes({"static": rendered[0], "gripper": rendered[1]} if rendered else self.sizes)
        slot.obs, slot.info = slot.env.get_obs(), slot.env.get_info()
        self._begin_expert_subtask(k, slot)
        return True

    def _begin_expert_subtask(self, k: int, slot: _Slot) -> None:
        self.expert.reset(k)
        slot.steps, slot.success_step = 0, None
        stored = self.sizes if self.config.render_sizes else None
        slot.recorder = _Recorder(frames=True, render_every=self.config.render_every, store_sizes=stored)

    def _expert_step(self, k: int, slot: _Slot) -> bool:
        """One expert action, recorded; False when the chain is over."""
        task = slot.chain.tasks[slot.position]
        action = self.expert.act([privileged_observation(slot.obs, slot.env, task, slot.info)], env_ids=[k])[0]
        slot.recorder.before(slot.obs, self.expert.label(k), self.expert.perturbed(k))
        slot.obs, _, _, slot.info = slot.env.step(action)
        slot.recorder.after(slot.info, action)
        slot.steps += 1
        if slot.success_step is None:
            if self.oracle.success(task, slot.start_info, slot.info):
                slot.success_step = slot.steps  # then the finishing motion, recorded too
            return slot.success_step is not None or slot.steps < SUBTASK_STEPS
        if not (self.expert.is_done(k) or slot.steps - slot.success_step >= TAIL_STEPS):
            return True
        slot.chain.episodes.append((slot.position, slot.recorder.episode(task, slot.success_step)))
        slot.chain.expert_successes += 1
        slot.position += 1
        if slot.chain.expert_successes >= self.config.expert_subtasks or slot.position >= len(slot.chain.tasks):
            return False
        slot.start_info = slot.info
        self._begin_expert_subtask(k, slot)
        return True


_RUNNER: OnPolicyRunner | None = None


def _init_worker(config: OnPolicyConfig, threads: int) -> None:
    global _RUNNER
    import torch

    exit_with_parent()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(threads)
    _RUNNER = OnPolicyRunner(config)


def _run_in_worker(chains: list[ChainOutcome]) -> list[ChainOutcome]:
    assert _RUNNER is not None, "worker not initialised"
    return _RUNNER.run(chains)


def chain_outcomes(config: OnPolicyConfig) -> list[ChainOutcome]:
    """The chains to run: ``config.chains`` training chains (never a standard one), in order.

    With ``config.tasks`` only chains whose first ``policy_subtasks + expert_subtasks`` subtasks are
    all among them (a policy trained on 8 tasks drives only those); more chains are drawn until
    enough qualify, and an error says so if too few exist."""
    seed = config.seed + CHAIN_SEED_OFFSET
    if config.tasks is None:
        drawn = training_chains(config.chains, seed)
    else:
        wanted, span = set(config.tasks), config.policy_subtasks + config.expert_subtasks
        if len(wanted) < span:  # a chain's subtasks are distinct tasks
            raise ValueError(f"a chain's first {span} subtasks are distinct tasks; give at least {span} tasks")
        count = 4 * config.chains
        while True:
            drawn = [(s, t) for s, t in training_chains(count, seed) if set(t[:span]) <= wanted][: config.chains]
            if len(drawn) == config.chains or count >= MAX_DRAWN_CHAINS:
                break
            count = min(4 * count, MAX_DRAWN_CHAINS)
        if len(drawn) < config.chains:
            raise ValueError(
                f"only {len(drawn)} of {MAX_DRAWN_CHAINS} training chains start with {span} of the tasks "
                f"{sorted(wanted)}; ask for fewer chains or allow more tasks"
            )
    return [ChainOutcome(i, dict(state), list(tasks)) for i, (state, tasks) in enumerate(drawn)]


#: Settings that may differ when an interrupted collection is continued (how it runs, not what it records).
RESUME_FREE_SETTINGS = frozenset({"out", "envs", "workers", "chains_per_call", "overwrite", "resume", "progress"})


def collect_on_policy(config: OnPolicyConfig) -> dict[str, Any]:
    """Run the chains, write the episodes as a LeRobot dataset and the report; returns the report."""
    import os

    from tqdm.auto import tqdm

    lerobot_root = config.out / "lerobot"
    previous = report_to_continue(config, REPORT_NAME, "next_chain", RESUME_FREE_SETTINGS)
    if previous is not None and not previous.get("interrupted"):
        log.info("%s already holds this on-policy collection, finished (%d chains)", config.out, previous["chains"])
        return previous
    if previous is None:  # with resume, report_to_continue has refused every folder it would be a loss to replace
        prepare_out(config.out, [lerobot_root, config.out / REPORT_NAME], config.overwrite or config.resume)
    writer = LeRobotWriter(
        lerobot_root,
        static_size=config.static_size,
        gripper_size=config.gripper_size,
        max_episode_frames=max(MAX_EPISODE_FRAMES, SUBTASK_STEPS + 2 * TAIL_STEPS + 1),
        render_every=config.render_every,
        resume=previous is not None,
    )
    paraphrases = task_instructions("training")
    chains = chain_outcomes(config)
    next_chain = int(previous["next_chain"]) if previous else 0
    if previous:
        log.info("continuing %s from chain %d of %d", config.out, next_chain, len(chains))
    step = config.chains_per_call
    calls = [chains[i : i + step] for i in range(next_chain, len(chains), step)]
    threads = max(1, (os.cpu_count() or 1) // config.workers)
    rows = list(previous["chain_list"]) if previous else []
    kinds = Counter(previous["chains_by_kind"]) if previous else Counter()
    kept = Counter(previous["episodes_by_kind"]) if previous else Counter()
    started = time.perf_counter()
    bar = tqdm(total=len(chains), initial=len(rows), desc="chains", unit="chain", disable=not config.progress)
    pool = ProcessPoolExecutor(
        config.workers, mp_context=get_context("forkserver"), initializer=_init_worker, initargs=(config, threads)
    )
    interruption: KeyboardInterrupt | None = None
    try:
        for done in pool.map(_run_in_worker, calls):
            with deferred_interrupts():  # a batch of chains is written and counted whole, or not at all
                for chain in done:
                    for position, episode in chain.episodes:
                        text = instruction_for(episode.task, config.seed, chain.index, position, paraphrases)
                        writer.add(episode, text)
                        kept[chain.kind] += 1
                    kinds[chain.kind or "none"] += 1
                    rows.append(chain.row())
                    next_chain = chain.index + 1
                bar.update(len(done))
            bar.set_postfix(episodes=sum(kept.values()))
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM through the CLI: keep what was written
        interruption = stop
    finally:
        pool.shutdown(wait=interruption is None, cancel_futures=True)  # workers exit with this process
        bar.close()
    writer.finalize()
    report = {
        "policy": str(config.policy),
        "chains": len(rows),
        "episodes": sum(kept.values()),
        "episodes_by_kind": dict(kept),
        "chains_by_kind": dict(kinds),
        "policy_first_subtask_success": round(sum(r["policy_successes"] > 0 for r in rows) / max(len(rows), 1), 4),
        "seconds": round((previous["seconds"] if previous else 0.0) + time.perf_counter() - started, 1),
        "interrupted": interruption is not None,
        "next_chain": next_chain,
        "lerobot_root": str(lerobot_root),
        "config": settings_json(config),
        "chain_list": rows,
    }
    (config.out / REPORT_NAME).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if interruption is not None:
        log.warning(
            "interrupted: %s holds the episodes of %d of %d chains; run the same command with --resume to continue",
            lerobot_root,
            len(rows),
            len(chains),
        )
        raise interruption
    return report
