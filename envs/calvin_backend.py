"""The real CALVIN simulator (``calvin_env``) behind the same interface as :class:`PlayTableEnv`.

``calvin_env`` is not on PyPI: install it from its repository (``git clone --recurse-submodules
https://github.com/mees/calvin && cd calvin/calvin_env && pip install -e .``) and download a CALVIN
dataset split; the environment is built from the split's ``validation/.hydra/merged_config.yaml``
as CALVIN's own evaluator does (``get_env(dataset/validation, show_gui=False)``). It is imported
only when this backend is used, and runs reliably only one environment per process, so evaluators
use one process per environment with it.

Start scenes come from :func:`envs.start_obs_for_state` (CALVIN's procedure, FNV-seeded), so a
chain starts from the same scene in both simulators. Success is judged by CALVIN's own task oracle
when ``calvin_agent``'s task config can be found, else by :class:`envs.TaskOracle`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from envs.calvin_states import start_obs_for_state

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "the real CALVIN simulator is not installed: `git clone --recurse-submodules https://github.com/mees/calvin`, "
    "then `pip install -e calvin/calvin_env` (and its tacto/urdfpy submodules) into this environment, download a "
    "dataset split (e.g. calvin/dataset/download_data.sh debug) and pass its folder with --calvin-dataset. "
    "Use --backend playtable (the default) for the simulator that ships with emu3-vla."
)


class CalvinNotAvailable(RuntimeError):
    """``calvin_env`` cannot be imported or its dataset config is missing; the message says how to fix it."""


class CalvinEnv:
    """A ``calvin_env`` PlayTableSimEnv with ``reset(state, seed=...)`` like :class:`PlayTableEnv`."""

    def __init__(self, dataset_path: str | Path, *, show_gui: bool = False) -> None:
        try:
            from calvin_env.envs.play_table_env import get_env
        except ImportError as err:
            raise CalvinNotAvailable(f"{INSTALL_HINT} ({err})") from err
        folder = Path(dataset_path)
        if (folder / "validation").is_dir():
            folder = folder / "validation"
        if not (folder / ".hydra" / "merged_config.yaml").is_file():
            raise CalvinNotAvailable(
                f"{folder} has no .hydra/merged_config.yaml; pass a CALVIN dataset split folder (e.g. task_D_D)"
            )
        self.env = get_env(folder, show_gui=show_gui)

    def reset(self, state: Mapping[str, Any] | None = None, *, seed: int | None = None, robot_obs=None, scene_obs=None):
        if state is not None:
            robot_obs, scene_obs = start_obs_for_state(state, seed=seed)
        return self.env.reset(robot_obs=robot_obs, scene_obs=scene_obs)

    def step(self, action: np.ndarray):
        return self.env.step(np.asarray(action, dtype=np.float64))

    def get_info(self) -> dict[str, Any]:
        return self.env.get_info()

    def get_landmarks(self) -> dict[str, np.ndarray]:
        raise CalvinNotAvailable("scripted experts need PlayTable landmarks; they do not run in calvin_env")

    def close(self) -> None:
        self.env.close()


def calvin_task_oracle() -> Any | None:
    """CALVIN's own ``Tasks`` oracle from ``calvin_agent``'s config, or None when it is not installed."""
    try:
        import calvin_agent
        import hydra
        from omegaconf import OmegaConf
    except ImportError:
        return None
    conf = Path(calvin_agent.__file__).resolve().parents[1] / "conf" / "callbacks" / "rollout" / "tasks"
    path = conf / "new_playtable_tasks.yaml"
    if not path.is_file():
        log.warning("calvin_agent is installed but %s is missing; using envs.TaskOracle", path)
        return None
    return hydra.utils.instantiate(OmegaConf.load(path))
