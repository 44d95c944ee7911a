"""``emu3-vla eval gym``: a policy in any gymnasium environment (LeRobot's ``gym-pusht``, ``gym-aloha``,
our ``envs/PlayTable-v0``, ...).

The policy is a checkpoint folder, ``remote://host:port`` (a model served by ``emu3-vla serve``) or
``random`` (uniform samples of the environment's action space: the floor). Between the environment
and the model sit three maps, each with a default:

* **observations** (:func:`observation_map`): environment key -> the model's input (a view name or
  ``state``). Default: the model's own observation path when the environment has it (CALVIN's
  ``rgb_obs.rgb_static`` ...), else LeRobot's convention for gym environments, as lerobot's
  ``preprocess_observation`` applies it (``pixels`` -> ``observation.image``, ``pixels.<cam>`` ->
  ``observation.images.<cam>``, ``agent_pos`` -> ``observation.state``, ``environment_state`` ->
  ``observation.environment_state``), matched against the dataset keys the checkpoint recorded for
  its views and state. ``--obs pixels=image`` names a pair explicitly.
* **actions** (:class:`ActionMap`): the model's actions (action units of its training data, clipped
  to its action bounds) -> the environment's ``Box``: ``absolute`` (as they are; PushT's targets in
  [0, 512]), ``rescale`` (the model's bounds mapped linearly onto the Box: a model trained on
  normalised actions), ``relative:<obs key>`` (added to that observation, e.g. the agent position,
  for a model trained on deltas). The result is clipped to the Box.
* **instruction**: fixed text (``--instruction``), or read at every reset from ``info``, the
  observation or an attribute of the unwrapped environment (``--instruction-from``); by default an
  environment's ``task_description`` / ``task`` attribute (LeRobot's convention).

An episode ends when the environment terminates or truncates, at ``max_steps``, or at success:
``info["is_success"]`` (LeRobot's and gymnasium-robotics' convention) or, with ``success_reward``, a
step reward at or above it. ``envs`` environments are stepped together and the policy is queried for
all of them at once (one batch). The folder gets ``results.json`` (the summary and every episode),
``episodes.jsonl`` (written as episodes end), ``videos/episode_XXXX.mp4`` for the first ``videos``
episodes (the environment's render beside the model's first view, the instruction below, a green /
red border at the end as in CALVIN rollouts) and ``report.html``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

STATE = "state"  # the model input name of the robot state (policies.base.STATE_INPUT)
INSTRUCTION_ATTRIBUTES = ("task_description", "task")  # LeRobot's environments name their task so
#: LeRobot's gym-environment keys -> the dataset keys its policies read (lerobot.envs.utils.preprocess_observation)
LEROBOT_OBSERVATION_KEYS = {
    "pixels": "observation.image",
    "agent_pos": "observation.state",
    "environment_state": "observation.environment_state",
}
ACTION_MODES = ("absolute", "rescale", "relative")


@dataclasses.dataclass
class GymEvalSettings:
    """Everything ``emu3-vla eval gym`` needs; see the module docstring for the maps."""

    env: str
    policy: str
    out: Path
    episodes: int = 10
    max_steps: int | None = None  # default: the environment's max_episode_steps
    envs: int = 1
    seed: int = 0  # episode k resets with seed + k
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    reset_options: dict[str, Any] | None = None  # env.reset(options=...) of every episode
    obs_map: dict[str, str] = dataclasses.field(default_factory=dict)  # env key -> model input
    action: str = "absolute"  # absolute | rescale | relative:<obs key>
    instruction: str | None = None
    instruction_from: str | None = None
    success_reward: float | None = None
    videos: int = 1
    device: str = "cpu"
    execute_steps: int | None = None
    decoder: str | None = None
    progress: bool = True


# ------------------------------------------------------------------------------------------ the model side
@dataclasses.dataclass
class ModelSide:
    """What the evaluator must know of a policy: its inputs (view / ``state`` -> the dataset key it was
    trained on, and where the policy reads it in an observation) and its actions."""

    inputs: dict[str, str]  # model input (views, then 'state' if read) -> dataset key
    obs_paths: dict[str, str]  # model input -> the key the policy reads in the observations we build
    action_dim: int | None
    action_low: np.ndarray | None = None
    action_high: np.ndarray | None = None

    @property
    def views(self) -> list[str]:
        return [name for name in self.inputs if name != STATE]

    @classmethod
    def of_inputs(cls, views: Sequence[str], inputs: Mapping[str, Any], state_used: bool, obs_paths: Mapping[str, str]):
        keys = {v: str(inputs.get("view_keys", {}).get(v, v)) for v in views}
        if state_used:
            keys[STATE] = str(inputs.get("state_key") or "observation.state")
        dim = inputs.get("action_dim")
        low, high = inputs.get("action_low") or (), inputs.get("action_high") or ()
        bounds = (None, None)
        if low and dim:
            bounds = tuple(np.broadcast_to(np.asarray(b, np.float64), (int(dim),)) for b in (low, high))
        paths = {name: str(obs_paths.get(name, keys[name])) for name in keys}
        return cls(keys, paths, int(dim) if dim else None, *bounds)


def _local_side(policy: Any) -> ModelSide:
    vla = policy.vla
    inputs = vla.model_inputs().to_dict()
    return ModelSide.of_inputs(vla.spec.views, inputs, vla.spec.uses_state, policy.obs_keys)


def _remote_side(policy: Any) -> ModelSide:
    meta = policy.metadata
    inputs = dict(meta.get("inputs") or {})
    inputs.setdefault("action_dim", meta.get("action_dim"))
    return ModelSide.of_inputs(list(meta["views"]), inputs, bool(meta.get("state_used")), policy.obs_keys)


class SpaceRandomPolicy:
    """Uniform samples of the environment's action space, one generator per environment, reseeded
    per episode (:meth:`reseed`): the floor of a benchmark."""

    def __init__(self, space: Any, seed: int = 0) -> None:
        self.space = space
        self._rngs: dict[int, np.random.Generator] = {}
        self.seed = seed

    def reseed(self, env_index: int, seed: int) -> None:
        self._rngs[env_index] = np.random.default_rng(seed)

    def reset(self, env_index: int | None = None) -> None:
        return None

    def act(self, observations: Sequence[Any], instructions: Sequence[str], env_ids: Sequence[int] | None = None):
        ids = list(range(len(observations))) if env_ids is None else list(env_ids)
        low, high = np.asarray(self.space.low, np.float64), np.asarray(self.space.high, np.float64)
        out = []
        for i in ids:
            rng = self._rngs.setdefault(i, np.random.default_rng([self.seed, i]))
            out.append(rng.uniform(np.maximum(low, -1e6), np.minimum(high, 1e6)))
        return np.stack(out)


def build_policy(settings: GymEvalSettings, action_space: Any) -> tuple[Any, ModelSide | None]:
    """The policy of ``settings.policy`` and what it reads and writes (None for ``random``)."""
    spec = settings.policy
    if spec == "random":
        return SpaceRandomPolicy(action_space, settings.seed), None
    if spec == "expert":
        raise ValueError("the scripted experts run in PlayTable only (emu3-vla eval calvin / tasks); not in eval gym")
    if spec.startswith(("remote://", "ws://", "wss://")):
        from policies.client import policy_from_uri

        policy = policy_from_uri(spec)
        return policy, _remote_side(policy)
    path = Path(spec)
    if not path.is_dir():
        raise FileNotFoundError(f"policy {spec!r} is neither 'random', remote://host:port nor a checkpoint folder")
    from policies.emu3_policy import Emu3VLAPolicy

    kwargs: dict[str, Any] = {"device": settings.device, "execute_steps": settings.execute_steps}
    if settings.decoder:
        kwargs["decoder"] = settings.decoder
    policy = Emu3VLAPolicy.from_checkpoint(path, **kwargs)
    return policy, _local_side(policy)


# ------------------------------------------------------------------------------------------ observations
def _paths(obs: Any, prefix: str = "") -> list[str]:
    """Every leaf key of a (nested) observation as a dotted path."""
    if not isinstance(obs, Mapping):
        return [prefix] if prefix else []
    out = []
    for key, value in obs.items():
        out += _paths(value, f"{prefix}.{key}" if prefix else str(key))
    return out


def read_path(obs: Any, path: str) -> Any:
    """``obs["pixels"]["top"]`` for ``pixels.top`` (a flat key is tried first)."""
    if isinstance(obs, Mapping) and path in obs:
        return obs[path]
    value = obs
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(f"the observation has no {path!r} (it has {_paths(obs)})")
        value = value[part]
    return value


def lerobot_dataset_key(path: str) -> str:
    """The dataset key LeRobot gives an environment observation (``pixels.top`` -> ``observation.images.top``)."""
    head, _, rest = path.partition(".")
    if head == "pixels" and rest:
        return f"observation.images.{rest}"
    return LEROBOT_OBSERVATION_KEYS.get(path, path)


def observation_map(obs: Any, model: ModelSide, explicit: Mapping[str, str] | None = None) -> dict[str, str]:
    """Model input -> the environment observation path that feeds it (see the module docstring)."""
    explicit = dict(explicit or {})
    unknown = sorted(set(explicit.values()) - set(model.inputs))
    if unknown:
        raise ValueError(f"--obs names model inputs {unknown}; this model reads {list(model.inputs)}")
    available = _paths(obs)
    missing_env = [k for k in explicit if k not in available]
    if missing_env:
        raise ValueError(f"--obs names environment keys {missing_env}; the environment's observation has {available}")
    out = {name: env_key for env_key, name in explicit.items()}
    by_dataset_key = {lerobot_dataset_key(p): p for p in available}
    for name, dataset_key in model.inputs.items():
        if name in out:
            continue
        for candidate in (model.obs_paths[name], dataset_key):
            if candidate in available:
                out[name] = candidate
                break
        else:
            if dataset_key in by_dataset_key:
                out[name] = by_dataset_key[dataset_key]
    unmapped = [name for name in model.inputs if name not in out]
    if unmapped:
        wants = ", ".join(f"{n} (trained on {model.inputs[n]})" for n in unmapped)
        raise ValueError(
            f"no environment observation for the model's {wants}; the environment gives {available}. "
            f"Map them with --obs ENV_KEY=INPUT, e.g. --obs {available[0] if available else 'pixels'}={unmapped[0]}"
        )
    return {name: out[name] for name in model.inputs}


def as_image(value: Any) -> np.ndarray:
    """An ``(H, W, 3) uint8`` image from what environments return (channels first, floats in [0, 1])."""
    image = np.asarray(value)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    if image.dtype != np.uint8:
        scale = 255.0 if image.size and float(np.max(image)) <= 1.0 else 1.0
        image = np.clip(np.round(image.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    return image


# ------------------------------------------------------------------------------------------ actions
@dataclasses.dataclass(frozen=True)
class ActionMap:
    """The model's actions -> the environment's: ``absolute``, ``rescale`` or ``relative`` to an
    observation (``relative_to``), then clipped to the environment's Box."""

    mode: str = "absolute"
    relative_to: str | None = None

    @classmethod
    def parse(cls, text: str) -> ActionMap:
        mode, _, key = text.partition(":")
        if mode not in ACTION_MODES:
            raise ValueError(f"--action {text!r}: use absolute, rescale or relative:<observation key>")
        if (mode == "relative") != bool(key):
            raise ValueError(f"--action {text!r}: relative needs the observation it is added to (relative:agent_pos)")
        return cls(mode, key or None)

    def describe(self) -> str:
        return f"relative:{self.relative_to}" if self.mode == "relative" else self.mode

    def check(self, space: Any, model: ModelSide) -> None:
        """Refuse, before any episode, a pairing that cannot work."""
        shape = getattr(space, "shape", None)
        if shape is None or len(shape) != 1 or not hasattr(space, "low"):
            raise ValueError(f"eval gym needs a 1-d Box action space; the environment has {space}")
        if model.action_dim is not None and model.action_dim != shape[0]:
            raise ValueError(
                f"the model's actions are {model.action_dim}-d but the environment's action space is {space}"
            )
        if self.mode == "rescale" and model.action_low is None:
            raise ValueError("--action rescale needs the model's action bounds; this checkpoint records none")
        if self.mode == "rescale" and not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ValueError(f"--action rescale needs a bounded action space; the environment has {space}")

    def __call__(self, actions: np.ndarray, observations: Sequence[Any], space: Any, model: ModelSide) -> np.ndarray:
        actions = np.asarray(actions, dtype=np.float64)
        low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
        if self.mode == "rescale":
            span = np.where(model.action_high > model.action_low, model.action_high - model.action_low, 1.0)
            actions = low + (actions - model.action_low) / span * (high - low)
        elif self.mode == "relative":
            base = np.stack([np.asarray(read_path(o, self.relative_to), np.float64).reshape(-1) for o in observations])
            actions = base + actions
        return np.clip(actions, low, high).astype(space.dtype)


# ------------------------------------------------------------------------------------------ environments
def import_env_package(env_id: str) -> None:
    """Import the package that registers ``env_id`` (``gym_pusht/PushT-v0`` -> ``gym_pusht``;
    gymnasium's own ``module:Env-v0`` form is left to gymnasium)."""
    if ":" in env_id:
        return
    namespace = env_id.split("/", 1)[0] if "/" in env_id else None
    if namespace:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # gym-pusht's pygame greets on import
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(namespace)


def make_env(settings: GymEvalSettings) -> Any:
    import gymnasium as gym

    import_env_package(settings.env)
    kwargs = dict(settings.env_kwargs)
    if settings.videos > 0:
        kwargs.setdefault("render_mode", "rgb_array")
    if settings.max_steps is not None:
        kwargs.setdefault("max_episode_steps", int(settings.max_steps))
    try:
        with warnings.catch_warnings():  # the env module loads here (gym-pusht: pygame's pkg_resources warning)
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
            return gym.make(settings.env, **kwargs)
    except gym.error.Error as err:
        raise ValueError(f"cannot make gymnasium environment {settings.env!r}: {err}") from err


def episode_limit(settings: GymEvalSettings, env: Any) -> int:
    if settings.max_steps is not None:
        return int(settings.max_steps)
    limit = getattr(env.spec, "max_episode_steps", None) if env.spec is not None else None
    if not limit:
        raise ValueError(f"{settings.env} sets no episode length; pass --max-steps")
    return int(limit)


def read_instruction(settings: GymEvalSettings, env: Any, obs: Any, info: Mapping[str, Any]) -> str:
    if settings.instruction is not None:
        return settings.instruction
    names = [settings.instruction_from] if settings.instruction_from else list(INSTRUCTION_ATTRIBUTES)
    for name in names:
        for source in (info, obs if isinstance(obs, Mapping) else {}):
            if isinstance(source.get(name), str):
                return source[name]
        value = getattr(env.unwrapped, name, None)
        if isinstance(value, str):
            return value
    if settings.instruction_from:
        raise ValueError(f"--instruction-from {settings.instruction_from}: not in info, the observation or the env")
    raise ValueError(f"{settings.env} names no task ({'/'.join(INSTRUCTION_ATTRIBUTES)}); pass --instruction TEXT")


# ------------------------------------------------------------------------------------------ videos
class EpisodeVideo:
    """One episode's video with the CALVIN rollouts' overlays (:mod:`eval.video`): two panels over the
    instruction, a green / red border held on the last frame."""

    def __init__(self, path: Path, fps: int) -> None:
        from eval.video import VideoWriter

        self.writer = VideoWriter(path, fps)
        self.path = path
        self.last: tuple[np.ndarray, np.ndarray, str] | None = None

    def frame(self, env: Any, images: list[np.ndarray], text: str) -> None:
        from eval.video import compose_frame

        left = None
        with contextlib.suppress(Exception):  # an environment without rgb_array rendering shows its views
            left = env.render()
        panels = [as_image(left)] if left is not None else []
        panels += images or [np.zeros((8, 8, 3), np.uint8)]
        panels += panels[-1:] if len(panels) == 1 else []
        self.last = (panels[0], panels[1], text)
        self.writer.add(compose_frame(panels[0], panels[1], text, None))

    def close(self, success: bool) -> None:
        from eval.video import FAILURE, SUCCESS, ChainVideo, compose_frame

        if self.last is not None:
            for _ in range(ChainVideo.MARK_FRAMES):
                self.writer.add(compose_frame(*self.last, SUCCESS if success else FAILURE))
        self.writer.close()


# ------------------------------------------------------------------------------------------ the loop
@dataclasses.dataclass
class _Slot:
    episode: int
    obs: Any
    instruction: str
    video: EpisodeVideo | None
    steps: int = 0
    ret: float = 0.0
    max_reward: float = -np.inf
    success: bool = False
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


def _scalars(info: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in info.items():
        if isinstance(value, bool | np.bool_):
            out[key] = bool(value)
        elif isinstance(value, int | float | np.integer | np.floating):
            out[key] = float(value) if isinstance(value, float | np.floating) else int(value)
    return out


def evaluate_gym(settings: GymEvalSettings) -> dict[str, Any]:
    """Run ``settings.episodes`` episodes; write ``results.json``, ``episodes.jsonl``, videos and
    ``report.html`` into ``settings.out``; return the results."""
    from eval.html_report import write_report

    if settings.episodes < 1 or settings.envs < 1:
        raise ValueError("--episodes and --envs must be at least 1")
    action_map = ActionMap.parse(settings.action)
    out = Path(settings.out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    envs = [make_env(settings) for _ in range(min(settings.envs, settings.episodes))]
    try:
        return _run(settings, envs, action_map, out, write_report)
    finally:
        for env in envs:
            with contextlib.suppress(Exception):
                env.close()


def _run(settings: GymEvalSettings, envs: list, action_map: ActionMap, out: Path, write_report) -> dict[str, Any]:
    space = envs[0].action_space
    limit = episode_limit(settings, envs[0])
    policy, model = build_policy(settings, space)
    if model is not None:
        action_map.check(space, model)
    fps = int((envs[0].metadata or {}).get("render_fps") or 10)
    log_path = out / "episodes.jsonl"
    log_path.write_text("")
    records: list[dict[str, Any]] = []
    slots: list[_Slot | None] = [None] * len(envs)
    mapping: dict[str, str] | None = None
    next_episode = 0
    bar = None
    if settings.progress:
        from tqdm import tqdm

        bar = tqdm(total=settings.episodes, desc=f"eval gym {settings.env}", unit="episode")
    started = time.perf_counter()

    def start(i: int) -> None:
        nonlocal next_episode, mapping
        k = next_episode
        next_episode += 1
        obs, info = envs[i].reset(seed=settings.seed + k, options=settings.reset_options)
        policy.reset(i)
        if hasattr(policy, "reseed"):
            policy.reseed(i, settings.seed + k)
        if model is not None and mapping is None:
            mapping = observation_map(obs, model, settings.obs_map)
            log.info("observation map (model input <- env key): %s", mapping)
        video = None
        if k < settings.videos:
            video = EpisodeVideo(out / "videos" / f"episode_{k:04d}.mp4", fps)
        slots[i] = _Slot(k, obs, read_instruction(settings, envs[i], obs, info), video)

    def model_obs(obs: Any) -> dict[str, Any]:
        if model is None:
            return {}
        frame = {}
        for name, env_key in (mapping or {}).items():
            value = read_path(obs, env_key)
            frame[model.obs_paths[name]] = as_image(value) if name != STATE else np.asarray(value, np.float32)
        return frame

    def show(i: int, slot: _Slot, frame: dict[str, Any] | None = None) -> None:
        if slot.video is None:
            return
        frame = model_obs(slot.obs) if frame is None else frame
        views = [frame[model.obs_paths[v]] for v in model.views] if model is not None else []
        slot.video.frame(envs[i], views, f"[ep {slot.episode} | {slot.steps}/{limit}] {slot.instruction}")

    def finish(i: int) -> None:
        slot = slots[i]
        assert slot is not None
        video_name = None
        if slot.video is not None:
            show(i, slot)  # the final observation, then the outcome's border
            slot.video.close(slot.success)
            video_name = slot.video.path.name
        record = {
            "episode": slot.episode,
            "seed": settings.seed + slot.episode,
            "task": slot.instruction,
            "success": slot.success,
            "steps": slot.steps,
            "return": round(slot.ret, 6),
            "max_reward": round(float(slot.max_reward), 6) if slot.steps else None,
            "final_info": _scalars(slot.info),
            "video": video_name,
        }
        records.append(record)
        with log_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        slots[i] = None
        if bar is not None:
            bar.update(1)

    for i in range(len(envs)):
        start(i)
    while any(s is not None for s in slots):
        active = [i for i, s in enumerate(slots) if s is not None]
        observations = [slots[i].obs for i in active]  # type: ignore[union-attr]
        frames = [model_obs(o) for o in observations]
        for i, frame in zip(active, frames, strict=True):
            show(i, slots[i], frame)  # type: ignore[arg-type]
        raw = policy.act(frames, [slots[i].instruction for i in active], env_ids=active)  # type: ignore[union-attr]
        actions = raw if model is None else action_map(raw, observations, space, model)
        for i, action in zip(active, actions, strict=True):
            slot = slots[i]
            assert slot is not None
            obs, reward, terminated, truncated, info = envs[i].step(action)
            slot.obs, slot.info = obs, dict(info)
            slot.steps += 1
            slot.ret += float(reward)
            slot.max_reward = max(slot.max_reward, float(reward))
            hit = bool(info.get("is_success", False))
            if settings.success_reward is not None:
                hit = hit or float(reward) >= settings.success_reward
            slot.success = slot.success or hit
            if slot.success or terminated or truncated or slot.steps >= limit:
                finish(i)
                if next_episode < settings.episodes:
                    start(i)
    if bar is not None:
        bar.close()
    records.sort(key=lambda r: r["episode"])
    successes = sum(r["success"] for r in records)
    results: dict[str, Any] = {
        "kind": "gym",
        "env": settings.env,
        "policy": settings.policy,
        "num_episodes": len(records),
        "successes": successes,
        "success_rate": successes / len(records),
        "mean_steps": float(np.mean([r["steps"] for r in records])),
        "mean_return": float(np.mean([r["return"] for r in records])),
        "max_steps": limit,
        "envs": len(envs),
        "seed": settings.seed,
        "action_map": action_map.describe(),
        "success_criterion": f"reward >= {settings.success_reward} or info['is_success']"
        if settings.success_reward is not None
        else "info['is_success']",
        "seconds": round(time.perf_counter() - started, 2),
        "observation_map": {name: env_key for name, env_key in (mapping or {}).items()},
        "env_kwargs": dict(settings.env_kwargs),
        "reset_options": settings.reset_options,
    }
    stats = getattr(policy, "stats", None)
    if stats is not None:
        results["model_queries"] = int(stats.queries)
        results["malformed_decodes"] = int(stats.malformed)
    results["episodes"] = records
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    write_report(out)
    close = getattr(policy, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()
    return results
