"""A ``merged_config.yaml`` for the real CALVIN simulator, composed from ``calvin_env``'s own conf.

``calvin_env`` builds its environment from a CALVIN dataset split's ``.hydra/merged_config.yaml``.
Without a split, the same kind of file can be composed from the ``conf/`` folder of a ``calvin_env``
checkout: its data-collection config with the static and gripper cameras only (the tactile camera
needs the ``tacto`` package), without the VR input and the recorder (data collection only), and with
``data_path`` pointing at the checkout's ``data/`` folder (URDFs and meshes). ``emu3-vla eval
calvin-config`` writes it; ``--backend calvin --calvin-config <folder>`` evaluates with it.

Only :func:`compose_calvin_config` needs hydra; nothing here imports ``calvin_env``.
"""

from __future__ import annotations

import copy
import importlib.util
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PRIMARY_CONFIG = "config_data_collection"
DEFAULT_CAMERAS = "static_and_gripper"  # a camera group of calvin_env's conf without the tactile sensor
SCENES = ("A", "B", "C", "D")
DATA_COLLECTION_ONLY = ("vr_input", "recorder", "hydra")  # keys a simulator for evaluation does not use
REQUIRED = ("env", "cameras", "scene", "robot")
TACTILE_SENSOR = "TactileSensor"  # class name of calvin_env's tactile camera (needs ``tacto``)
CONFIG_DIR = ".hydra"  # where calvin_env's get_env() looks for merged_config.yaml in a folder
CONFIG_NAME = "merged_config.yaml"


class CalvinConfigError(RuntimeError):
    """No usable calvin_env checkout or config; the message says what to do."""


def find_calvin_env_root(explicit: str | Path | None = None) -> Path:
    """The root of a ``calvin_env`` checkout (the folder with ``conf/`` and ``data/``): ``explicit``,
    else the one the installed ``calvin_env`` package lives in (found without importing it)."""
    if explicit is not None:
        root = Path(explicit).expanduser().resolve()
    else:
        spec = importlib.util.find_spec("calvin_env")
        if spec is None or not spec.origin:
            raise CalvinConfigError(
                "calvin_env is not installed: clone https://github.com/mees/calvin_env, `pip install -e` it, "
                "or pass --calvin-env-root with the clone's folder"
            )
        root = Path(spec.origin).resolve().parents[1]
    missing = [p for p in ("conf/" + PRIMARY_CONFIG + ".yaml", "data") if not (root / p).exists()]
    if missing:
        raise CalvinConfigError(
            f"{root} is not a calvin_env checkout (no {', '.join(missing)}); install calvin_env editable from a "
            "git clone (`pip install -e calvin_env`) or pass --calvin-env-root with the clone's folder"
        )
    return root


def compose_overrides(scene: str = "D", cameras: str = DEFAULT_CAMERAS) -> list[str]:
    """Hydra overrides of calvin_env's data-collection config for evaluation: one of CALVIN's scenes,
    the camera group, no VR input and no recorder, and hydra's plain logging (calvin_env asks for
    ``colorlog``, a plugin that evaluation does not need)."""
    if scene not in SCENES:
        raise ValueError(f"scene must be one of {', '.join(SCENES)}, got {scene!r}")
    return [
        f"scene=calvin_scene_{scene}",
        f"cameras={cameras}",
        "~vr_input",
        "~recorder",
        "hydra/job_logging=default",
        "hydra/hydra_logging=default",
    ]


def tactile_cameras(config: Mapping[str, Any]) -> list[str]:
    """Names of the cameras in a (merged) calvin_env config that are tactile sensors."""
    cameras = config.get("cameras") or {}
    return [name for name, cam in cameras.items() if str((cam or {}).get("_target_", "")).endswith(TACTILE_SENSOR)]


def evaluation_config(composed: Mapping[str, Any], data_path: str | Path) -> dict[str, Any]:
    """A copy of a composed calvin_env config made fit for evaluation: the data-collection-only
    parts removed, ``data_path`` absolute, VR and recording off. Interpolations such as
    ``${cameras}`` are kept; calvin_env resolves them when it builds the environment."""
    config = copy.deepcopy(dict(composed))
    missing = [key for key in REQUIRED if key not in config]
    if missing:
        raise CalvinConfigError(f"the composed calvin_env config lacks {', '.join(missing)}")
    for key in DATA_COLLECTION_ONLY:
        config.pop(key, None)
    config["data_path"] = str(Path(data_path).resolve())
    config["use_vr"] = False
    config["record"] = False
    return config


def compose_calvin_config(root: str | Path, *, scene: str = "D", cameras: str = DEFAULT_CAMERAS) -> dict[str, Any]:
    """calvin_env's data-collection config from the checkout at ``root``, composed by hydra with
    :func:`compose_overrides` and finished by :func:`evaluation_config`."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    root = Path(root)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # calvin_env's defaults lists predate hydra 1.1's `_self_`
        with initialize_config_dir(config_dir=str((root / "conf").resolve()), version_base=None):
            composed = compose(PRIMARY_CONFIG, overrides=compose_overrides(scene, cameras))
    return evaluation_config(OmegaConf.to_container(composed, resolve=False), root / "data")


def write_calvin_config(
    out: str | Path, root: str | Path | None = None, *, scene: str = "D", cameras: str = DEFAULT_CAMERAS
) -> Path:
    """Writes ``out/.hydra/merged_config.yaml`` (the layout calvin_env reads from a dataset folder)
    and returns its path."""
    from omegaconf import OmegaConf

    config = compose_calvin_config(find_calvin_env_root(root), scene=scene, cameras=cameras)
    path = Path(out) / CONFIG_DIR / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(config), path)
    return path
