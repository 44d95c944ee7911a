"""LeRobot datasets (v3.0) as :class:`~emu3_vla.data.episodes.Episode` objects.

Reading goes through ``lerobot``'s own ``LeRobotDataset`` with a local ``root`` (never the hub).
Per-frame ``__getitem__`` would seek and decode the video once per frame; an episode is instead
read in one pass: the table rows through ``dataset.hf_dataset`` and each camera's frames with
lerobot's ``decode_video_frames`` over all of the episode's timestamps (PyAV backend: torchcodec
finds no system FFmpeg on these machines).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from emu3_vla.data.episodes import PERTURBED_KEY, DatasetFormatError, Episode
from emu3_vla.data.mapping import DataMapping
from emu3_vla.vision import resize_images

log = logging.getLogger(__name__)


def is_lerobot_dataset(root: str | Path) -> bool:
    return (Path(root) / "meta" / "info.json").is_file()


class LeRobotSource:
    """Episodes of a local LeRobot dataset, mapped to the model's views, actions and instruction."""

    def __init__(
        self,
        root: str | Path,
        mapping: DataMapping,
        *,
        repo_id: str | None = None,
        episodes: list[int] | None = None,
    ) -> None:
        from lerobot.datasets import LeRobotDataset

        root = Path(root)
        if not root.is_dir():
            raise DatasetFormatError(f"dataset folder {root} does not exist")
        if not is_lerobot_dataset(root):
            raise DatasetFormatError(
                f"{root} is not a LeRobot dataset: meta/info.json is missing (expected the v3.0 layout "
                "meta/, data/chunk-XXX/, videos/<key>/chunk-XXX/)"
            )
        info = json.loads((root / "meta" / "info.json").read_text())
        if not info.get("total_episodes"):
            # lerobot would look for the missing data files on the Hugging Face hub instead
            raise DatasetFormatError(f"{root} is a LeRobot dataset without episodes; nothing to read")
        self.root = root
        self.mapping = mapping
        self.dataset = LeRobotDataset(
            repo_id or f"local/{root.name}", root=root, episodes=episodes, video_backend="pyav"
        )
        meta = self.dataset.meta
        self.fps = float(meta.fps)
        self._check_keys()
        self.action_dim = int(meta.features[mapping.action_key]["shape"][0])
        self._episode_ids = list(episodes) if episodes is not None else list(range(meta.total_episodes))
        self._table = self.dataset.hf_dataset.with_format("numpy")
        self._rows_by_episode = self._index_rows()

    def _check_keys(self) -> None:
        features = self.dataset.meta.features
        wanted = [c.key for c in self.mapping.cameras.values()] + [self.mapping.action_key]
        if self.mapping.state_key:
            wanted.append(self.mapping.state_key)
        missing = [k for k in wanted if k not in features]
        if missing:
            raise DatasetFormatError(
                f"dataset {self.root} has no key(s) {missing}; it has: {sorted(features)}. "
                "Fix the data mapping (data.cameras.<view>.key, data.action_key, data.state_key)."
            )
        not_images = [
            c.key for c in self.mapping.cameras.values() if features[c.key]["dtype"] not in ("video", "image")
        ]
        if not_images:
            raise DatasetFormatError(f"keys {not_images} are not camera features (dtype video/image)")
        if self.mapping.instruction_key != "task":
            raise DatasetFormatError(
                f"instruction_key={self.mapping.instruction_key!r}: LeRobot datasets carry the instruction in 'task'"
            )

    def _index_rows(self) -> dict[int, np.ndarray]:
        episode_index = np.asarray(self._table["episode_index"]).reshape(-1)
        order = np.argsort(episode_index, kind="stable")
        rows: dict[int, np.ndarray] = {}
        bounds = np.flatnonzero(np.diff(episode_index[order])) + 1
        for group in np.split(order, bounds):
            if group.size:
                rows[int(episode_index[group[0]])] = group
        return rows

    def __len__(self) -> int:
        return len(self._episode_ids)

    def _rows(self, index: int) -> np.ndarray:
        ep = self._episode_ids[index]
        try:
            return self._rows_by_episode[ep]
        except KeyError:
            raise IndexError(f"episode {ep} has no frames in {self.root}") from None

    def actions(self, index: int) -> np.ndarray:
        rows = self._rows(index)
        return np.asarray(self._table[rows][self.mapping.action_key], dtype=np.float32).reshape(len(rows), -1)

    def _decode(self, index: int, rows: np.ndarray, table) -> dict[str, np.ndarray]:
        """Every view's frames at the table ``rows`` (``table`` = those rows) of episode ``index``,
        resized to the view."""
        from lerobot.datasets.video_utils import decode_video_frames

        meta = self.dataset.meta
        ep = self._episode_ids[index]
        timestamps = np.asarray(table["timestamp"], dtype=np.float64).reshape(-1)
        frames = {}
        for view, cam in self.mapping.cameras.items():
            if meta.features[cam.key]["dtype"] == "video":
                offset = float(meta.episodes[ep][f"videos/{cam.key}/from_timestamp"])
                path = self.root / meta.get_video_file_path(ep, cam.key)
                chw = decode_video_frames(
                    path, (timestamps + offset).tolist(), self.dataset.tolerance_s, "pyav", return_uint8=True
                )
                hwc = chw.permute(0, 2, 3, 1)
            else:
                hwc = torch.as_tensor(np.stack([np.asarray(img) for img in self.dataset.hf_dataset[rows][cam.key]]))
                if hwc.shape[-1] != 3:
                    hwc = hwc.permute(0, 2, 3, 1)
                if hwc.dtype != torch.uint8:
                    hwc = (hwc.float() * (255.0 if hwc.max() <= 1 else 1.0)).round().clamp(0, 255).to(torch.uint8)
            frames[view] = resize_images(hwc, cam.height, cam.width).numpy()
        return frames

    def frames(self, index: int, steps: np.ndarray) -> dict[str, np.ndarray]:
        """The frames at ``steps`` only: the video is decoded from the keyframe before the first of
        them to the last, not over the whole episode."""
        rows = self._rows(index)
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        if steps.size and (steps.min() < 0 or steps.max() >= len(rows)):
            raise IndexError(f"steps {steps.min()}..{steps.max()} outside episode {index}'s {len(rows)} steps")
        return self._decode(index, rows[steps], self._table[rows[steps]])

    def episode(self, index: int) -> Episode:
        meta = self.dataset.meta
        ep = self._episode_ids[index]
        rows = self._rows(index)
        table = self._table[rows]
        frames = self._decode(index, rows, table)
        task_index = int(np.asarray(table["task_index"]).reshape(-1)[0])
        instruction = str(meta.tasks.iloc[task_index].name)
        state = None
        if self.mapping.state_key:
            state = np.asarray(table[self.mapping.state_key], dtype=np.float32).reshape(len(rows), -1)
        actions = np.asarray(table[self.mapping.action_key], dtype=np.float32).reshape(len(rows), -1)
        perturbed = None
        if PERTURBED_KEY in meta.features:
            perturbed = np.asarray(table[PERTURBED_KEY], dtype=bool).reshape(len(rows))
        return Episode(
            index=ep, instruction=instruction, frames=frames, actions=actions, state=state, perturbed=perturbed
        )

    def fingerprint(self) -> str:
        """Hash of the mapping, the selected episodes, the content of the metadata and tables, and the
        names and sizes of the videos (hashing gigabytes of video on every run would cost more than
        it protects; a re-encoded video changes size). Copying the folder keeps the fingerprint."""
        h = hashlib.sha256()
        h.update(json.dumps(self.mapping.to_dict(), sort_keys=True).encode())
        h.update(json.dumps(self._episode_ids).encode())
        for path in sorted(p for p in self.root.rglob("*") if p.is_file() and not p.name.startswith(".")):
            rel = path.relative_to(self.root).as_posix()
            h.update(rel.encode())
            if path.suffix == ".mp4":
                h.update(str(path.stat().st_size).encode())
            else:
                h.update(hashlib.sha256(path.read_bytes()).digest())
        return h.hexdigest()
