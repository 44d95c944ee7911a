"""ScriptedExpert: privileged waypoint experts for the 34 CALVIN tasks behind the Policy protocol.

The expert acts through the same 7-d relative action interface a learned policy uses; what makes
it an expert is what it sees: with ``needs_info = True`` an evaluator adds the simulator's info
dict, the furniture landmarks and the current subtask's name to each observation (see
:mod:`policies.base`). For each environment index it keeps one plan (:mod:`policies.experts.plans`)
and one motion controller (:mod:`policies.experts.motion`); ``reset(i)`` starts a new subtask and
the plan is built on the first step after it, from the scene as it is then.

Diversity for demonstrations comes from a per-environment random generator: waypoints and speeds
are jittered (``randomize``), and ``noise`` perturbs the motion part of actions while the arm moves
through free space (approaches, retreats); contact moves (grasping, pushing, sliding, pressing) and
the gripper command are never perturbed. Two kinds (``noise_kind``):

* ``"smooth"``: low-pass filtered Gaussian noise on every free-space step, fading as a move slows
  down onto its waypoint, so the expert visibly recovers from it;
* ``"bursts"``: now and then a short push (``BURST_STEPS`` steps of ``noise`` action units in one
  random direction, position only) followed by at least ``BURST_GAP`` clean steps. The expert's
  clean steps after a burst are a whole demonstration of recovering from a state off its path;
  a policy that acts in chunks learns from those, and the steps of the burst itself are flagged
  (:meth:`ScriptedExpert.perturbed`) so that training can skip chunks they touch.
:meth:`ScriptedExpert.label` gives the noise-free action of the last step: what the expert would do
from the state the noise led to (DART's supervisor label, see :mod:`eval.collection.collect`). Seed it per episode with
:meth:`ScriptedExpert.reseed`, so that an episode is a function of its seed whatever else runs.
Once a plan is finished the expert holds still with a constant gripper command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from policies.base import resolve_env_ids
from policies.experts.motion import MotionController, Move, Segment
from policies.experts.plans import Plan, PlanContext, make_plan
from policies.experts.scene import SceneView

NOISE_KINDS = ("smooth", "bursts")
NOISE_SMOOTHING = 0.8  # AR(1) coefficient: noise keeps its direction for a few steps
NOISE_FULL_SPEED = 0.5  # action units: moves at least this fast get the full noise
BURST_STEPS = 5  # steps of one push
BURST_GAP = 25  # clean steps after a push at least: two 10-step chunks of recovery, then a margin
BURST_RATE = 0.05  # chance per free-space step (outside a gap) that a push starts
MAX_SEGMENTS_PER_STEP = 32  # zero-length segments a plan may yield in a row (guards against loops)


@dataclass
class _EnvState:
    rng: np.random.Generator
    task: str | None = None
    plan: Plan | None = None
    context: PlanContext | None = None
    controller: MotionController = field(default_factory=MotionController)
    segment: Segment | None = None
    done: bool = False
    steps: int = 0
    noise: np.ndarray = field(default_factory=lambda: np.zeros(6))
    label: np.ndarray | None = None  # the last step's action before noise
    perturbed: bool = False  # the last step's action differs from its label
    push: np.ndarray = field(default_factory=lambda: np.zeros(3))
    burst_left: int = 0  # steps left in the current push
    gap_left: int = 0  # clean steps left before another push may start


class ScriptedExpert:
    """Waypoint experts for all 34 CALVIN tasks (see :data:`policies.experts.EXPERT_TASKS`).

    Args:
        seed: base seed; environment ``i`` draws from ``default_rng([seed, i])`` until :meth:`reseed`.
        randomize: jitter waypoints, speeds, turn angles and gripper waits (diverse demonstrations);
            off gives one canonical demonstration per scene.
        noise: size (in action units) of the perturbation of free-space moves: the standard deviation
            of smooth noise, or the speed of a burst's push.
        noise_kind: ``"smooth"`` or ``"bursts"`` (see the module docstring).
    """

    needs_info = True

    def __init__(self, seed: int = 0, randomize: bool = True, noise: float = 0.0, noise_kind: str = "smooth") -> None:
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        if noise_kind not in NOISE_KINDS:
            raise ValueError(f"noise_kind must be one of {', '.join(NOISE_KINDS)}, got {noise_kind!r}")
        self.seed = seed
        self.randomize = randomize
        self.noise = float(noise)
        self.noise_kind = noise_kind
        self._envs: dict[int, _EnvState] = {}

    # --- Policy protocol ---------------------------------------------------------------------

    def reseed(self, env_index: int, seed: int) -> None:
        """Draw environment ``env_index``'s randomisation from ``seed`` from now on (and start afresh)."""
        self._envs[env_index] = _EnvState(rng=np.random.default_rng(seed))

    def reset(self, env_index: int | None = None) -> None:
        """Start a new subtask: the plan is rebuilt on the next step (the random stream continues)."""
        indices = list(self._envs) if env_index is None else [env_index]
        for index in indices:
            state = self._state(index)
            self._envs[index] = _EnvState(rng=state.rng)

    def step(self, obs: Mapping[str, Any], instruction: str = "") -> np.ndarray:
        return self.act([obs], [instruction])[0]

    def act(
        self,
        observations: Sequence[Mapping[str, Any]],
        instructions: Sequence[str] | None = None,
        env_ids: Sequence[int] | None = None,
    ) -> np.ndarray:
        ids = resolve_env_ids(len(observations), env_ids)
        return np.stack([self._act_one(index, obs) for index, obs in zip(ids, observations, strict=True)])

    # --- introspection -----------------------------------------------------------------------

    def is_done(self, env_index: int = 0) -> bool:
        """Whether environment ``env_index``'s plan has finished (the expert now holds still)."""
        state = self._envs.get(env_index)
        return bool(state and state.done)

    def label(self, env_index: int = 0) -> np.ndarray:
        """The noise-free action behind environment ``env_index``'s last step (equal to the action
        returned when ``noise`` is 0). Raises if that environment has not stepped yet."""
        state = self._envs.get(env_index)
        if state is None or state.label is None:
            raise RuntimeError(f"environment {env_index} has not stepped since its last reset: no label yet")
        return state.label.copy()

    def perturbed(self, env_index: int = 0) -> bool:
        """Whether environment ``env_index``'s last action differed from its :meth:`label` (noise)."""
        state = self._envs.get(env_index)
        return bool(state and state.perturbed)

    def current_segment(self, env_index: int = 0) -> Segment | None:
        state = self._envs.get(env_index)
        return state.segment if state else None

    # --- internals ---------------------------------------------------------------------------

    def _state(self, index: int) -> _EnvState:
        if index not in self._envs:
            self._envs[index] = _EnvState(rng=np.random.default_rng([self.seed, index]))
        return self._envs[index]

    def _act_one(self, index: int, obs: Mapping[str, Any]) -> np.ndarray:
        state = self._state(index)
        state.label = self._plan_step(index, obs)
        if self.noise_kind == "bursts":
            action = self._with_burst(state, state.label)
        else:
            action = self._with_noise(state, state.label)
        state.perturbed = not np.array_equal(action, state.label)
        return action

    def _plan_step(self, index: int, obs: Mapping[str, Any]) -> np.ndarray:
        """The noise-free action of this step (holding still leaves ``state.segment`` at None)."""
        view = SceneView(obs)
        state = self._state(index)
        if state.plan is None or state.task != view.task:
            gripper = float(view.info["robot_info"]["gripper_action"])
            state.task = view.task
            state.controller = MotionController(gripper=gripper)
            state.context = PlanContext(view=view, rng=state.rng, randomize=self.randomize)
            state.plan = make_plan(view.task, state.context)
            state.segment, state.done = None, False
        state.context.view = view
        state.steps += 1
        if state.done:
            return state.controller.hold_action()
        for _ in range(MAX_SEGMENTS_PER_STEP):
            if state.segment is None:
                state.segment = next(state.plan, None)
                if state.segment is None:
                    state.done = True
                    return state.controller.hold_action()
                state.controller.start(state.segment)
            action = state.controller.step(view)
            if action is not None:
                return action
            state.segment = None
        return state.controller.hold_action()

    def _with_noise(self, state: _EnvState, action: np.ndarray) -> np.ndarray:
        if self.noise <= 0 or not isinstance(state.segment, Move) or not state.segment.free:
            return action
        innovation = state.rng.normal(0.0, self.noise, 6) * np.sqrt(1 - NOISE_SMOOTHING**2)
        state.noise = NOISE_SMOOTHING * state.noise + innovation
        # Noise in proportion to the speed: none while the expert stops on a waypoint, grasps or
        # presses, so perturbed moves still end exactly where they should.
        scale = min(1.0, float(np.linalg.norm(action[:3])) / NOISE_FULL_SPEED)
        noisy = action.copy()
        noisy[:6] = np.clip(action[:6] + scale * state.noise, -1.0, 1.0)
        return noisy

    def _with_burst(self, state: _EnvState, action: np.ndarray) -> np.ndarray:
        free = self.noise > 0 and isinstance(state.segment, Move) and state.segment.free
        if state.burst_left == 0:
            if state.gap_left > 0:
                state.gap_left -= 1
                return action
            if not free or state.rng.random() >= BURST_RATE:
                return action
            direction = state.rng.normal(size=3)
            state.push = self.noise * direction / max(float(np.linalg.norm(direction)), 1e-9)
            state.burst_left = BURST_STEPS
        if not free:  # the move ended (contact, grasp): a push never reaches those
            state.burst_left, state.gap_left = 0, BURST_GAP
            return action
        state.burst_left -= 1
        if state.burst_left == 0:
            state.gap_left = BURST_GAP
        noisy = action.copy()
        noisy[:3] = np.clip(action[:3] + state.push, -1.0, 1.0)
        return noisy
