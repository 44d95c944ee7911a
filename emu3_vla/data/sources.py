"""Open a dataset folder in whichever supported format it is."""

from __future__ import annotations

from pathlib import Path

from emu3_vla.data.calvin_format import CalvinSource, calvin_mapping, is_calvin_dataset
from emu3_vla.data.episodes import DatasetFormatError, EpisodeSource
from emu3_vla.data.lerobot_source import LeRobotSource, is_lerobot_dataset
from emu3_vla.data.mapping import DataMapping

FORMATS = ("auto", "lerobot", "calvin")


def open_dataset(
    root: str | Path, mapping: DataMapping | None = None, *, fmt: str = "auto", repo_id: str | None = None
) -> EpisodeSource:
    """A LeRobot v3.0 folder or a CALVIN split folder as an episode source.

    ``mapping`` defaults to our CALVIN-style cameras (static 200x200, wrist 80x80) under each format's
    key names.
    """
    root = Path(root)
    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; choose one of {FORMATS}")
    if not root.exists():
        raise DatasetFormatError(f"dataset folder {root} does not exist")
    if fmt == "auto":
        if is_lerobot_dataset(root):
            fmt = "lerobot"
        elif is_calvin_dataset(root):
            fmt = "calvin"
        else:
            raise DatasetFormatError(
                f"{root} is neither a LeRobot dataset (meta/info.json) nor a CALVIN split folder "
                "(ep_start_end_ids.npy, lang_annotations/)"
            )
    if fmt == "lerobot":
        return LeRobotSource(root, mapping or DataMapping.calvin(), repo_id=repo_id)
    return CalvinSource(root, mapping or calvin_mapping())
