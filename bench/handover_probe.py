"""Does a trained policy fail its second CALVIN subtask because it meets it mid-gesture?

CALVIN's protocol gives the next instruction at the very step the oracle reports success, with the
arm still on the handle or the block still in hand; demonstrations recorded without
``collect --handover`` start every segment from the pose the expert's finished motion leaves. For
the first N standard chains this resets to the chain's start, lets the scripted expert do subtask 1
and stops it either

* ``at_success``: at the step of success (what the protocol hands the policy), or
* ``finished``: after its finishing motion (let go, back off; what the segments start from),

then runs the policy on subtask 2 for 360 steps and asks the oracle. Subtask 1 runs through
collection's own loop (``eval.collection.recorder.run_job``), with the same start state and expert
in both arms; chains whose first subtask the expert fails are left out. Prints one JSON line per
chain and the success of subtask 2 in each arm:

    python bench/handover_probe.py runs/calvin34/train_main/model --chains 100

``--first policy`` asks the converse: the *policy* does subtask 1 (as in CALVIN's protocol, from the
chain's start) and subtask 2 is done from the state it leaves once by the policy (``policy``, what
the chain evaluation measures) and once, after replaying the same deterministic subtask 1, by the
scripted expert (``expert``). If the expert succeeds where the policy fails, the state is solvable
and the policy is off its training distribution there; if the expert fails too, subtask 1 left the
scene broken.
"""

from __future__ import annotations

import argparse
import json
import time

from emu3_vla.cli_args import DECODER_NAMES
from envs import SUBTASK_STEPS, PlayTableEnv, TaskOracle
from eval.chains import load_standard_chains
from eval.collection.jobs import Job
from eval.collection.recorder import run_job
from eval.evaluate import chain_seed, instructions_for_eval
from policies.base import Policy, privileged_observation
from policies.emu3_policy import Emu3VLAPolicy
from policies.experts import ScriptedExpert

ARMS = ("at_success", "finished")
SECOND_ARMS = ("policy", "expert")


def run_subtask(env: PlayTableEnv, actor: Policy, oracle: TaskOracle, task: str, text: str) -> bool:
    """One subtask from the env's current state, up to 360 steps; the policy or the scripted expert.

    A privileged actor (``needs_info``, the expert) gets the simulator's info, landmarks and task
    name with each observation, as the chain evaluation hands them."""
    actor.reset()
    obs = env.get_obs()
    start = info = env.get_info()
    for _ in range(SUBTASK_STEPS):
        if getattr(actor, "needs_info", False):
            obs = privileged_observation(obs, env, task, info)
        obs, _, _, info = env.step(actor.step(obs, text))
        if oracle.success(task, start, info):
            return True
    return False


def expert_first(policy: Emu3VLAPolicy, expert: ScriptedExpert, oracle: TaskOracle, texts, index, state, tasks):
    """Subtask 1 by the expert, handed over at success or after its finishing motion; subtask 2 by the policy."""
    first, second = tasks[0], tasks[1]
    row: dict[str, object] = {"chain": index, "first": first, "second": second}
    for arm in ARMS:
        env = PlayTableEnv(lazy_images=True)
        try:
            # collection's own loop: the expert's subtask 1, its finishing motion only in the second arm
            job = Job(index, dict(state), (first,), (False,), chain_seed(state, 0), index)
            done = run_job(env, expert, job, oracle, record_frames=False, finish_last=arm == "finished")
            ok = done.outcomes[0].success
            row[arm] = run_subtask(env, policy, oracle, second, texts[second]) if ok else None
        finally:
            env.close()
    return row


def policy_first(policy: Emu3VLAPolicy, expert: ScriptedExpert, oracle: TaskOracle, texts, index, state, tasks):
    """Subtask 1 by the policy, subtask 2 by the policy and (replayed) by the expert."""
    first, second = tasks[0], tasks[1]
    row: dict[str, object] = {"chain": index, "first": first, "second": second}
    for arm in SECOND_ARMS:
        env = PlayTableEnv()
        try:
            env.reset(dict(state), seed=chain_seed(state, 0))
            ok = run_subtask(env, policy, oracle, first, texts[first])
            row["first_ok"] = ok
            if not ok:
                row[arm] = None
                break
            row[arm] = run_subtask(env, policy if arm == "policy" else expert, oracle, second, texts[second])
        finally:
            env.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a VLA checkpoint folder")
    parser.add_argument("--chains", type=int, default=100, help="the first N standard chains")
    parser.add_argument("--decoder", default="parallel", choices=DECODER_NAMES)
    parser.add_argument(
        "--first", default="expert", choices=("expert", "policy"), help="who does subtask 1 (see above)"
    )
    args = parser.parse_args()

    policy = Emu3VLAPolicy.from_checkpoint(args.checkpoint, decoder=args.decoder)
    texts = instructions_for_eval("validation")
    oracle = TaskOracle()
    expert = ScriptedExpert(randomize=False)
    rows, started = [], time.perf_counter()
    probe, arms = (policy_first, SECOND_ARMS) if args.first == "policy" else (expert_first, ARMS)
    for index, (state, tasks) in enumerate(load_standard_chains(args.chains)):
        rows.append(probe(policy, expert, oracle, texts, index, state, tasks))
        print(json.dumps(rows[-1]), f"{time.perf_counter() - started:.0f} s", flush=True)
    for arm in arms:
        done = [r[arm] for r in rows if r.get(arm) is not None]
        print(f"{arm:>10s}: subtask 2 succeeded in {sum(done)} of {len(done)} chains")


if __name__ == "__main__":
    main()
