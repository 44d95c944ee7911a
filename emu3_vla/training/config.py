"""Hydra configuration for training, composed from ``emu3_vla/configs`` without changing directory.

``emu3-vla train`` passes its command-line overrides here; composing (instead of ``@hydra.main``)
keeps the sub-command inside our CLI, leaves the working directory alone and lets tests build
configs in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

CONFIG_MODULE = "emu3_vla.configs"


class ConfigError(ValueError):
    """A config name, override or value is wrong; the message says which and how to fix it."""


def load_config(name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """Compose ``name`` (``train``, ``calvin_paper``, ``demo``, ...) with hydra ``key=value`` overrides."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            cfg = compose(config_name=name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"bad config {name!r} with overrides {list(overrides)}: {err}") from err
    finally:
        GlobalHydra.instance().clear()
    return cfg


def require(cfg: DictConfig, key: str, hint: str) -> object:
    """The value at ``key``; a :class:`ConfigError` naming the key if it is missing (``???``)."""
    if OmegaConf.is_missing(cfg, key) or OmegaConf.select(cfg, key) is None:
        raise ConfigError(f"{key} is required: {hint}")
    return OmegaConf.select(cfg, key)


def save_config(cfg: DictConfig, path: str | Path) -> None:
    Path(path).write_text(OmegaConf.to_yaml(cfg, resolve=True))
