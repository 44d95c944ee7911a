"""Running a scripted expert through a :class:`~eval.collection.jobs.Job` in one PlayTable environment.

The loop is CALVIN's evaluation loop for one chain, with recording: reset once from the job's
symbolic state, then per subtask reset the expert, step until the oracle reports success (at most
``max_steps``), and stop the job at the first failure. The observation handed to the expert carries
the privileged keys (``info``, ``landmarks``, ``task``) that ``needs_info`` policies get.

A subtask's episode does not end at the very step of success: the expert finishes its motion
(letting go, backing off) and the episode ends when it holds still, or ``tail_steps`` after
success at the latest, so that demonstrations neither stop mid-gesture nor idle.

With ``handover=True`` a chain's subtask ends at its success instead, and the expert's finishing
motion opens the *next* subtask's episode, under the next instruction. CALVIN's protocol switches
the instruction at the very step of success, so a policy meets its second subtask mid-gesture
(still on the drawer handle, the block still in hand); without handover no training segment starts
there, only from the pose a finished motion leaves. The last subtask of a job keeps its tail.

Only recorded steps are rendered (images are lazy), and not at all with ``record_frames=False``.
With ``render_every=k`` an episode's frames are rendered at its steps 0, k, 2k, ... and held in
between (a zero-order hold, what a camera at 1/k of the control rate gives). A model that encodes
every k-th frame (``data.frame_stride``, a multiple of k) then trains on exactly the images a
full-rate recording holds, while collection renders k times less; rendering is most of an
expert's CPU time (measured in ``docs/experiments.md``).

With ``store_sizes`` the environment renders at its own camera sizes (e.g. CALVIN's 200 / 84, what
evaluation renders) and each frame is stored resized to ``store_sizes`` with the antialiased filter
a policy applies to its camera images (:func:`emu3_vla.vision.resize_images`): the dataset then holds
exactly the pixels a policy is fed in evaluation. Rendered directly at the small size, the same
scene comes out aliased, and a VQ tokenizer gives about half of its codes differently.

With a noisy expert the arm executes the noisy action, and ``labels`` says which action is
recorded: ``"clean"`` (default) the expert's noise-free action from the state the noise led to,
i.e. DART's supervisor label (Laskey et al., 2017): the data then shows how to get back on track
from states a learned policy's own errors lead to, without teaching it the noise; ``"executed"``
the noisy action that was sent. ``abs_actions`` are always the target poses actually reached for.
Each step also records whether its executed action carried noise (``perturbed``), so that training
can leave out the action chunks that contain a perturbation (see ``noise_kind="bursts"``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from envs import SUBTASK_STEPS, PlayTableEnv, TaskOracle
from eval.collection.jobs import Job
from policies.base import privileged_observation
from policies.experts import ScriptedExpert

TAIL_STEPS = 60  # at most this many steps after success while the expert finishes its motion
# A reset puts a block in the drawer a millimetre above its floor; it touches the floor (which the
# lift_<block>_drawer check requires at the subtask's start) only after falling for a few steps.
SETTLE_STEPS = 8
HOLD_STILL = np.array([0, 0, 0, 0, 0, 0, 1.0])
LABELS = ("clean", "executed")  # which action a noisy expert's episode records


@dataclass
class Episode:
    """One recorded subtask: per step the observation before the action and the action taken."""

    task: str
    static: np.ndarray | None  # (T, H, W, 3) uint8
    gripper: np.ndarray | None  # (T, h, w, 3) uint8
    robot_obs: np.ndarray  # (T, 15)
    scene_obs: np.ndarray  # (T, 24)
    actions: np.ndarray  # (T, 7) relative actions as recorded (see ``labels``)
    abs_actions: np.ndarray  # (T, 7) the target pose after each action (CALVIN's absolute actions)
    success_step: int  # steps until the oracle reported success
    perturbed: np.ndarray | None = None  # (T,) bool: the executed action was the expert's plus noise

    def __len__(self) -> int:
        return len(self.actions)


@dataclass
class SubtaskOutcome:
    task: str
    success: bool
    steps: int  # steps until success (or until giving up)
    episode: Episode | None = None  # set when the subtask succeeded and was to be recorded


@dataclass
class JobResult:
    job: Job
    outcomes: list[SubtaskOutcome] = field(default_factory=list)
    env_steps: int = 0
    seconds: float = 0.0

    @property
    def episodes(self) -> list[Episode]:
        return [o.episode for o in self.outcomes if o.episode is not None]


class _Recorder:
    def __init__(self, frames: bool, render_every: int = 1, store_sizes: dict[str, int] | None = None) -> None:
        if render_every < 1:
            raise ValueError(f"render_every must be >= 1, got {render_every}")
        self.frames = frames
        self.render_every = render_every
        self.store_sizes = dict(store_sizes) if store_sizes else {}
        self.static: list[np.ndarray] = []
        self.gripper: list[np.ndarray] = []
        self.robot_obs: list[np.ndarray] = []
        self.scene_obs: list[np.ndarray] = []
        self.actions: list[np.ndarray] = []
        self.abs_actions: list[np.ndarray] = []
        self.perturbed: list[bool] = []

    def __len__(self) -> int:
        return len(self.actions)

    def before(self, obs: dict[str, Any], action: np.ndarray, perturbed: bool = False) -> None:
        if self.frames:
            if len(self) % self.render_every == 0:  # the episode's step counts from its own start
                self.static.append(self._stored(obs["rgb_obs"]["rgb_static"], "static"))
                self.gripper.append(self._stored(obs["rgb_obs"]["rgb_gripper"], "gripper"))
            else:  # held: the same arrays again (np.stack copies them when the episode is made)
                self.static.append(self.static[-1])
                self.gripper.append(self.gripper[-1])
        self.robot_obs.append(np.asarray(obs["robot_obs"], dtype=np.float64))
        self.scene_obs.append(np.asarray(obs["scene_obs"], dtype=np.float64))
        self.actions.append(np.asarray(action, dtype=np.float64))
        self.perturbed.append(bool(perturbed))

    def _stored(self, image: np.ndarray, camera: str) -> np.ndarray:
        size = self.store_sizes.get(camera)
        if size is None or image.shape[:2] == (size, size):
            return np.array(image)
        from emu3_vla.vision import resize_images

        return resize_images(np.array(image)[None], size, size)[0].numpy()

    def after(self, info: dict[str, Any], action: np.ndarray) -> None:
        robot = info["robot_info"]
        self.abs_actions.append(
            np.concatenate([robot["target_pos"], robot["target_orn"], [1.0 if action[6] >= 0 else -1.0]])
        )

    def episode(self, task: str, success_step: int) -> Episode:
        return Episode(
            task=task,
            static=np.stack(self.static) if self.frames else None,
            gripper=np.stack(self.gripper) if self.frames else None,
            robot_obs=np.stack(self.robot_obs),
            scene_obs=np.stack(self.scene_obs),
            actions=np.stack(self.actions),
            abs_actions=np.stack(self.abs_actions),
            success_step=success_step,
            perturbed=np.asarray(self.perturbed, dtype=bool),
        )


def run_job(
    env: PlayTableEnv,
    expert: ScriptedExpert,
    job: Job,
    oracle: TaskOracle,
    *,
    record_frames: bool = True,
    max_steps: int = SUBTASK_STEPS,
    tail_steps: int = TAIL_STEPS,
    finish_last: bool = True,
    labels: str = "clean",
    handover: bool = False,
    render_every: int = 1,
    store_sizes: dict[str, int] | None = None,
) -> JobResult:
    """Run ``job`` with the expert as environment 0; record the wanted subtasks that succeed.

    ``finish_last=False`` stops the last subtask at success (benchmarks need no tail);
    ``handover=True`` records a subtask's tail as the start of the next one; ``render_every=k``
    renders every k-th step of an episode and holds the frame in between; ``store_sizes`` stores the
    frames ``env`` renders resized to these sizes (see the module doc).
    """
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
    started = time.perf_counter()
    result = JobResult(job=job)
    obs = env.reset(job.state, seed=job.scene_seed)
    if "drawer" in job.state.values():
        for _ in range(SETTLE_STEPS):
            obs, *_ = env.step(HOLD_STILL)
    info = env.get_info()
    expert.reseed(0, job.expert_seed)
    carried: _Recorder | None = None  # handover: the previous subtask's tail, opening this one
    for position, task in enumerate(job.tasks):
        expert.reset(0)
        start_info = info
        wanted = job.record[position]
        recorder = (carried or _Recorder(record_frames, render_every, store_sizes)) if wanted else None
        offset = len(recorder) if recorder is not None else 0
        has_next = position + 1 < len(job.tasks)
        handing_over = handover and has_next
        tail_recorder = (
            _Recorder(record_frames, render_every, store_sizes) if handing_over and job.record[position + 1] else None
        )
        tail = tail_steps if (finish_last or has_next) else 0
        success_step: int | None = None
        steps = 0
        while True:
            action = expert.step(privileged_observation(obs, env, task, info))
            into = recorder if success_step is None or not handing_over else tail_recorder
            if into is not None:
                into.before(obs, expert.label(0) if labels == "clean" else action, expert.perturbed(0))
            obs, _, _, info = env.step(action)
            steps += 1
            if into is not None:
                into.after(info, action)
            if success_step is None:
                if oracle.success(task, start_info, info):
                    success_step = steps
                    if tail == 0:
                        break
                elif steps >= max_steps:
                    break
            elif expert.is_done(0) or steps - success_step >= tail:
                break
        result.env_steps += steps
        success = success_step is not None
        episode = recorder.episode(task, offset + success_step) if (recorder is not None and success) else None
        result.outcomes.append(SubtaskOutcome(task, success, success_step or steps, episode))
        carried = tail_recorder
        if not success:
            break
    result.seconds = time.perf_counter() - started
    return result
