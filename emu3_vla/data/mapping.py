"""Which dataset keys feed the model: cameras (and their resize), actions, state, instruction.

Any LeRobot dataset can be used, not only ours: the mapping names the camera keys that become the
model's views (one, two or more, in block order), the action key (any dimension), and where the
instruction comes from. The action chunk length is given in steps or in seconds; in seconds it
follows the dataset's fps, so a 10 Hz and a 50 Hz dataset get chunks of the same duration.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The largest view side :func:`camera_override` suggests (a 640x480 camera at 8x compression would
#: be 4,800 tokens per view; a 128x128 view is 256).
SUGGESTED_MAX_SIDE = 128


class MissingCamerasError(ValueError):
    """The data config names no camera; the message lists the dataset's cameras and an override to paste."""


@dataclasses.dataclass(frozen=True)
class CameraSpec:
    """A dataset camera key and the size the model's view resizes it to (multiples of 8)."""

    key: str
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height % 8 or self.width % 8:
            raise ValueError(
                f"camera {self.key!r}: view size {self.height}x{self.width} must be a multiple of 8 "
                "(the VQ tokenizer's compression)"
            )


@dataclasses.dataclass(frozen=True)
class DataMapping:
    cameras: Mapping[str, CameraSpec]
    action_key: str = "action"
    state_key: str | None = "observation.state"
    instruction_key: str = "task"
    chunk_steps: int | None = 10
    chunk_seconds: float | None = None

    def __post_init__(self) -> None:
        if not self.cameras:
            raise ValueError("the data mapping needs at least one camera")
        if (self.chunk_steps is None) == (self.chunk_seconds is None):
            raise ValueError("give exactly one of chunk_steps and chunk_seconds")

    @property
    def views(self) -> tuple[str, ...]:
        return tuple(self.cameras)

    def chunk_length(self, fps: float) -> int:
        """Action steps per chunk (= steps between the frames of a window)."""
        if self.chunk_steps is not None:
            return int(self.chunk_steps)
        steps = round(float(self.chunk_seconds) * fps)
        if steps < 1:
            raise ValueError(f"chunk_seconds={self.chunk_seconds} at {fps} fps is less than one step")
        return steps

    @classmethod
    def calvin(cls, static: int = 200, gripper: int = 80) -> DataMapping:
        """Our playtable / CALVIN datasets: the 200x200 static and 84x84 -> 80x80 wrist cameras."""
        return cls(
            cameras={
                "static": CameraSpec("observation.images.static", static, static),
                "gripper": CameraSpec("observation.images.gripper", gripper, gripper),
            }
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataMapping:
        """From a config dict: ``cameras: {view: {key, height, width} | {key, size}}`` plus scalars.

        No cameras (``data=lerobot`` before its one ``data.cameras={...}`` override) is a
        :class:`MissingCamerasError` listing the dataset's camera features (read from ``root``'s
        ``meta/info.json`` when there is one) and the override that maps them."""
        if not data.get("cameras"):
            raise MissingCamerasError(
                "data.cameras is empty: name the camera keys that become the model's views in ONE override, "
                + camera_override(data.get("root"))
            )
        cams = {}
        for view, cam in dict(data["cameras"]).items():
            cam = dict(cam)
            if "size" in cam:
                size = cam.pop("size")
                cam["height"], cam["width"] = (size, size) if isinstance(size, int) else tuple(size)
            cams[str(view)] = CameraSpec(**cam)
        scalars = {k: data[k] for k in ("action_key", "state_key", "instruction_key") if k in data}
        chunk_steps = data.get("chunk_steps")
        chunk_seconds = data.get("chunk_seconds")
        if chunk_steps is None and chunk_seconds is None:
            chunk_steps = 10
        return cls(cameras=cams, chunk_steps=chunk_steps, chunk_seconds=chunk_seconds, **scalars)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cameras": {v: dataclasses.asdict(c) for v, c in self.cameras.items()},
            "action_key": self.action_key,
            "state_key": self.state_key,
            "instruction_key": self.instruction_key,
            "chunk_steps": self.chunk_steps,
            "chunk_seconds": self.chunk_seconds,
        }


def view_name(key: str) -> str:
    """A view name for a dataset camera key: its last dotted part (``observation.images.front`` -> ``front``)."""
    return key.rsplit(".", 1)[-1]


def camera_override(root: str | Path | None) -> str:
    """The ``data.cameras={...}`` override mapping every camera of the LeRobot dataset at ``root`` (sizes:
    the camera's own, a multiple of 8, at most :data:`SUGGESTED_MAX_SIDE`), or a generic example when
    the folder cannot be read."""
    example = "e.g. 'data.cameras={front: {key: observation.images.front, size: 96}}'"
    info = Path(str(root)) / "meta" / "info.json" if root else None
    try:
        features = json.loads(info.read_text())["features"] if info is not None else {}
    except (OSError, ValueError, KeyError, TypeError):
        features = {}
    cameras = {k: f for k, f in features.items() if isinstance(f, dict) and f.get("dtype") in ("video", "image")}
    if not cameras:
        return example
    parts, listed = [], []
    for key, feature in cameras.items():
        shape = list(feature.get("shape") or [])
        names = list(feature.get("names") or [])
        if len(shape) == 3 and names[:1] in (["channels"], ["channel"]):
            height, width = shape[1], shape[2]
        else:
            height, width = [*shape, 0, 0][:2]
        side = max(8, min(SUGGESTED_MAX_SIDE, int(min(height, width) or SUGGESTED_MAX_SIDE)) // 8 * 8)
        listed.append(f"{key} ({feature['dtype']}, {height}x{width})")
        parts.append(f"{view_name(key)}: {{key: {key}, size: {side}}}")
    return f"e.g. 'data.cameras={{{', '.join(parts)}}}' (this dataset's cameras: {', '.join(listed)})"
