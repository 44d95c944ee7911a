"""Simulated environments and CALVIN data: the bottom layer of emu3-vla (imports nothing of ours).

* :class:`PlayTableEnv`: a CALVIN-like pybullet tabletop (desk, sliding-door cabinet, drawer,
  button + LED, switch + bulb, three blocks, Franka Panda) with CALVIN's observations, actions,
  reset-from-symbolic-state and four scene variants ``A``..``D``. ``gymnasium.make("envs/PlayTable-v0")``
  gives the gymnasium version (registered on import).
* :class:`TaskOracle`, :func:`success`, :func:`symbolic_state`: CALVIN's 34 task checks and the
  symbolic state of a scene.
* :func:`load_eval_sequences`, :func:`load_start_states`, :func:`load_symbolic_tasks`,
  :func:`task_instructions`, :func:`task_names`: CALVIN's evaluation chains, task table and instructions.
* :func:`fnv1_32`, :func:`calvin_state_seed`, :func:`scene_obs_for_state`: CALVIN's start-scene
  procedure.
"""

from envs.calvin_data import (
    SUBTASK_STEPS,
    SYMBOLIC_KEYS,
    TASK_FAMILIES,
    load_eval_sequences,
    load_start_states,
    load_symbolic_tasks,
    task_family,
    task_instructions,
    task_names,
)
from envs.calvin_states import (
    NEUTRAL_ROBOT_OBS,
    StartSlots,
    calvin_state_seed,
    fnv1_32,
    scene_obs_for_state,
    start_obs_for_state,
)
from envs.gym import ENV_ID, PlayTableGymEnv, register
from envs.playtable.env import PlayTableEnv
from envs.playtable.layout import LAYOUTS, SceneLayout, get_layout
from envs.playtable.observation import LazyImages, StaleObservationError
from envs.tasks import TaskOracle, block_places, success, symbolic_state

register()

__all__ = [
    "ENV_ID",
    "LAYOUTS",
    "NEUTRAL_ROBOT_OBS",
    "SUBTASK_STEPS",
    "SYMBOLIC_KEYS",
    "TASK_FAMILIES",
    "LazyImages",
    "PlayTableEnv",
    "PlayTableGymEnv",
    "SceneLayout",
    "StaleObservationError",
    "StartSlots",
    "TaskOracle",
    "block_places",
    "calvin_state_seed",
    "fnv1_32",
    "get_layout",
    "load_eval_sequences",
    "load_start_states",
    "load_symbolic_tasks",
    "register",
    "scene_obs_for_state",
    "start_obs_for_state",
    "success",
    "symbolic_state",
    "task_family",
    "task_instructions",
    "task_names",
]
