"""The real CALVIN simulator (``calvin_env``) behind the same interface as :class:`PlayTableEnv`.

``calvin_env`` is not on PyPI: install it from a git clone of its repository (``git clone
https://github.com/mees/calvin_env && pip install -e calvin_env``; it records its clone's commit when
it builds an environment). The environment is built by ``calvin_env``'s own ``get_env(folder,
show_gui=False)``, as CALVIN's evaluator does, from ``folder/.hydra/merged_config.yaml``: the
``validation`` folder of a downloaded CALVIN dataset split, or a folder written by ``emu3-vla eval
calvin-config`` (:mod:`envs.calvin_config`, no dataset needed). It is imported only when this
backend is used, and runs reliably only one environment per process, so evaluators use one process
per environment with it. See envs/README.md for the steps.

Start scenes come from :func:`envs.start_obs_for_state` (CALVIN's procedure, FNV-seeded), so a
chain starts from the same scene in both simulators. Success is judged by CALVIN's own task oracle
(``calvin_env.envs.tasks.Tasks`` with CALVIN's task config), else by :class:`envs.TaskOracle`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from envs.calvin_config import (
    CONFIG_DIR,
    CONFIG_NAME,
    DEFAULT_CAMERAS,
    CalvinConfigError,
    find_calvin_env_root,
    tactile_cameras,
)
from envs.calvin_states import start_obs_for_state

log = logging.getLogger(__name__)

INSTALL_STEPS = (
    "`git clone https://github.com/mees/calvin_env` and `pip install -e calvin_env` into this environment "
    "(keep it a git clone: calvin_env records its own commit), then either write a simulator config with "
    "`emu3-vla eval calvin-config --out calvin_conf` and pass --calvin-config calvin_conf, or pass a downloaded "
    "CALVIN dataset split with --calvin-dataset. Use --backend playtable (the default) for the simulator that "
    "ships with emu3-vla."
)
INSTALL_HINT = f"the real CALVIN simulator (calvin_env) is not installed: {INSTALL_STEPS}"
# modules calvin_env imports -> what to pip install (its requirements.txt; gym's last API it uses is 0.26)
CALVIN_ENV_NEEDS = {"gym": "gym==0.26.2", "git": "gitpython", "quaternion": "numpy-quaternion", "cv2": "opencv-python"}


def _import_hint(err: ImportError) -> str:
    """The install hint for a failed ``import calvin_env``: calvin_env itself missing, or one of its
    requirements (e.g. after ``pip install --no-deps``)."""
    missing = (err.name or "").split(".")[0]
    if missing and missing != "calvin_env":
        package = CALVIN_ENV_NEEDS.get(missing, missing)
        return (
            f"calvin_env is installed but cannot be imported: it needs {package!r} (`pip install {package}`; "
            f"`pip install -e calvin_env` installs all its requirements). ({type(err).__name__}: {err})"
        )
    return f"{INSTALL_HINT} ({type(err).__name__}: {err})"


def tacto_hint(config_path: Path | str, cameras: list[str]) -> str:
    return (
        f"{config_path} lists calvin_env's tactile camera ({', '.join(cameras)}), which needs the tactile-sensor "
        "package tacto (a git submodule of calvin_env: `git submodule update --init` in the calvin_env clone, then "
        "`pip install -e calvin_env/tacto`). emu3-vla's policies read only the static and gripper cameras, so "
        f"rather drop it: compose the config with cameras={DEFAULT_CAMERAS} (`emu3-vla eval calvin-config --out "
        f"calvin_conf`, then --calvin-config calvin_conf), or delete `cameras.tactile` from {config_path}."
    )


class CalvinNotAvailable(RuntimeError):
    """``calvin_env`` (or a package it needs) cannot be imported or its config is missing; the message
    says how to fix it."""


def _causes(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


@contextlib.contextmanager
def _quiet_hydra() -> Iterator[None]:
    """calvin_env calls hydra without ``version_base``; hydra warns about that at import and build."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*The version_base parameter is not specified")
        yield


def _tacto_usable() -> bool:
    try:
        import tacto
    except Exception:  # not installed, or its rendering stack fails to import
        return False
    return hasattr(tacto, "Sensor")  # an empty submodule folder imports as a namespace package


def _in_git_work_tree(path: Path) -> bool:
    return any((folder / ".git").exists() for folder in [path, *path.parents])


def config_folder(dataset_path: str | Path) -> Path:
    """The folder whose ``.hydra/merged_config.yaml`` builds the environment: a dataset split's
    ``validation`` folder, or the folder itself (a split's subfolder, or ``calvin-config``'s output)."""
    folder = Path(dataset_path)
    if (folder / "validation").is_dir():
        folder = folder / "validation"
    if not (folder / CONFIG_DIR / CONFIG_NAME).is_file():
        raise CalvinNotAvailable(
            f"{folder} has no {CONFIG_DIR}/{CONFIG_NAME}; pass a folder written by `emu3-vla eval calvin-config` "
            "or a CALVIN dataset split folder (e.g. task_D_D)"
        )
    return folder


class CalvinEnv:
    """A ``calvin_env`` PlayTableSimEnv with ``reset(state, seed=...)`` like :class:`PlayTableEnv`."""

    def __init__(self, dataset_path: str | Path, *, show_gui: bool = False) -> None:
        try:
            with _quiet_hydra():
                import calvin_env
                from calvin_env.envs.play_table_env import get_env
        except ImportError as err:
            raise CalvinNotAvailable(_import_hint(err)) from err
        from omegaconf import OmegaConf

        folder = config_folder(dataset_path)
        path = folder / CONFIG_DIR / CONFIG_NAME
        tactile = tactile_cameras(OmegaConf.to_container(OmegaConf.load(path), resolve=False))
        if tactile and not _tacto_usable():
            raise CalvinNotAvailable(tacto_hint(path, tactile))
        package = Path(calvin_env.__file__).resolve().parent
        if not _in_git_work_tree(package):
            raise CalvinNotAvailable(_git_hint(package))
        try:
            with _quiet_hydra():
                self.env = get_env(folder, show_gui=show_gui)
        except Exception as err:
            for cause in _causes(err):
                if "tacto" in str(cause):
                    raise CalvinNotAvailable(tacto_hint(path, tactile or ["tactile"])) from err
                if type(cause).__name__ == "InvalidGitRepositoryError":
                    raise CalvinNotAvailable(_git_hint(package)) from err
            raise

    def reset(self, state: Mapping[str, Any] | None = None, *, seed: int | None = None, robot_obs=None, scene_obs=None):
        if state is not None:
            robot_obs, scene_obs = start_obs_for_state(state, seed=seed)
        return self.env.reset(robot_obs=robot_obs, scene_obs=scene_obs)

    def step(self, action: np.ndarray):
        return self.env.step(np.asarray(action, dtype=np.float64))

    def get_info(self) -> dict[str, Any]:
        return self.env.get_info()

    def get_landmarks(self) -> dict[str, np.ndarray]:
        raise CalvinNotAvailable(
            "the scripted experts need PlayTable's landmarks; they do not run in calvin_env (use --backend playtable)"
        )

    def close(self) -> None:
        """Disconnects from pybullet once. calvin_env's ``__del__`` calls its ``close()`` again, and a second
        disconnect fails ("Not connected to physics server") as the interpreter exits; so after the first
        close the environment's own ``close`` becomes a no-op."""
        env, self.env = self.env, None
        if env is None:
            return
        with contextlib.redirect_stdout(io.StringIO()) as printed:  # calvin_env prints "disconnecting id N"
            env.close()
        log.debug("calvin_env: %s", printed.getvalue().strip())
        env.close = _already_closed


def _already_closed() -> None:
    return None


def _git_hint(package: Path) -> str:
    return (
        f"calvin_env at {package} is not inside a git clone; calvin_env records its clone's commit when it builds "
        "an environment, so install it from one: `git clone https://github.com/mees/calvin_env` and "
        "`pip install -e calvin_env`"
    )


def calvin_task_oracle() -> Any | None:
    """CALVIN's own ``Tasks`` oracle (``calvin_env.envs.tasks.Tasks``) with CALVIN's task config
    ``new_playtable_tasks.yaml``: ``calvin_agent``'s (the file CALVIN's evaluator loads) when that is
    installed, else the copy of the same file in the calvin_env clone's ``conf/tasks``. None when
    neither is found."""
    try:
        import hydra
        from omegaconf import OmegaConf
    except ImportError:
        return None
    candidates = []
    try:
        import calvin_agent
    except ImportError:
        pass
    else:
        conf = Path(calvin_agent.__file__).resolve().parents[1] / "conf"
        candidates.append(conf / "callbacks" / "rollout" / "tasks" / "new_playtable_tasks.yaml")
    with contextlib.suppress(CalvinConfigError):
        candidates.append(find_calvin_env_root() / "conf" / "tasks" / "new_playtable_tasks.yaml")
    for path in candidates:
        if path.is_file():
            log.info("task oracle: calvin_env.envs.tasks.Tasks with %s", path)
            return hydra.utils.instantiate(OmegaConf.load(path))
    log.warning("CALVIN's task config not found (looked at %s); using envs.TaskOracle", candidates or "nothing")
    return None
