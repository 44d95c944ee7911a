"""CALVIN's on-disk dataset format: reader and writer.

A CALVIN split folder (``task_ABC_D/training``, ...) holds one ``episode_XXXXXXX.npz`` per time step
(keys ``rgb_static`` 200x200x3, ``rgb_gripper`` 84x84x3, ``actions`` absolute 7-d, ``rel_actions``
relative 7-d, ``robot_obs`` 15, ``scene_obs`` 24, plus depth/tactile images we do not use),
``ep_start_end_ids.npy`` with the inclusive ``[start, end]`` step ids of each recorded play
sequence, and ``lang_annotations/auto_lang_ann.npy``: a pickled dict with
``language.ann`` (instructions), ``language.task`` (task names), ``language.emb`` (sentence
embeddings) and ``info.indx`` (inclusive ``(start, end)`` of each annotated window).

The language-annotated windows are the episodes a language-conditioned policy trains on. Reading
the annotation file needs ``allow_pickle=True``: that is how CALVIN stores it; only open folders
you trust.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from emu3_vla.data.episodes import DatasetFormatError, Episode
from emu3_vla.data.mapping import CameraSpec, DataMapping
from emu3_vla.vision import resize_images

LANG_FILE = Path("lang_annotations") / "auto_lang_ann.npy"
STEP_KEYS = ("rgb_static", "rgb_gripper", "actions", "rel_actions", "robot_obs", "scene_obs")
CALVIN_FPS = 30.0


def calvin_mapping(static: int = 200, gripper: int = 80) -> DataMapping:
    """Mapping for CALVIN folders: npz keys as camera/action/state keys."""
    return DataMapping(
        cameras={
            "static": CameraSpec("rgb_static", static, static),
            "gripper": CameraSpec("rgb_gripper", gripper, gripper),
        },
        action_key="rel_actions",
        state_key="robot_obs",
        instruction_key="ann",
    )


def is_calvin_dataset(root: str | Path) -> bool:
    root = Path(root)
    return (root / "ep_start_end_ids.npy").is_file() or (root / LANG_FILE).is_file()


def step_path(root: Path, step: int) -> Path:
    return root / f"episode_{step:07d}.npz"


class CalvinSource:
    """Language-annotated windows of a CALVIN-format folder as episodes."""

    fps = CALVIN_FPS

    def __init__(self, root: str | Path, mapping: DataMapping | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetFormatError(f"dataset folder {root} does not exist")
        if not (root / LANG_FILE).is_file():
            raise DatasetFormatError(
                f"{root} is not a CALVIN split folder with language annotations: {LANG_FILE} is missing "
                "(point data.root at e.g. task_D_D/training, not at the dataset's top folder)"
            )
        self.root = root
        self.mapping = mapping or calvin_mapping()
        ann = np.load(root / LANG_FILE, allow_pickle=True).item()
        try:
            self._windows = [(int(s), int(e)) for s, e in ann["info"]["indx"]]
            self._instructions = [str(a) for a in ann["language"]["ann"]]
            self._tasks = [str(t) for t in ann["language"].get("task", [None] * len(self._windows))]
        except (KeyError, TypeError) as err:
            raise DatasetFormatError(f"{root / LANG_FILE} lacks info.indx / language.ann: {err}") from err
        first = self._load_step(self._windows[0][0]) if self._windows else {}
        wanted = [c.key for c in self.mapping.cameras.values()] + [self.mapping.action_key]
        if self.mapping.state_key:
            wanted.append(self.mapping.state_key)
        missing = [k for k in wanted if first and k not in first]
        if missing:
            raise DatasetFormatError(f"CALVIN steps in {root} have no key(s) {missing}; they have {sorted(first)}")
        self.action_dim = int(np.asarray(first[self.mapping.action_key]).shape[-1]) if first else 7

    def _load_step(self, step: int) -> dict[str, np.ndarray]:
        path = step_path(self.root, step)
        if not path.is_file():
            raise DatasetFormatError(f"step file {path} is missing")
        with np.load(path) as data:
            return {k: data[k] for k in data.files}

    def __len__(self) -> int:
        return len(self._windows)

    def _steps(self, index: int) -> list[dict[str, np.ndarray]]:
        start, end = self._windows[index]
        return [self._load_step(s) for s in range(start, end + 1)]

    def actions(self, index: int) -> np.ndarray:
        start, end = self._windows[index]
        out = []
        for s in range(start, end + 1):
            with np.load(step_path(self.root, s)) as data:
                out.append(data[self.mapping.action_key])
        return np.asarray(out, dtype=np.float32)

    def frames(self, index: int, steps: np.ndarray) -> dict[str, np.ndarray]:
        """The frames at ``steps`` only (one step file each)."""
        start, end = self._windows[index]
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        if steps.size and (steps.min() < 0 or steps.max() > end - start):
            raise IndexError(f"steps {steps.min()}..{steps.max()} outside episode {index}'s {end - start + 1} steps")
        return self._views([self._load_step(start + int(s)) for s in steps])

    def _views(self, steps: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Each camera's frames of these loaded steps, resized to its view."""
        return {
            view: resize_images(np.stack([st[cam.key] for st in steps]), cam.height, cam.width).numpy()
            for view, cam in self.mapping.cameras.items()
        }

    def episode(self, index: int) -> Episode:
        steps = self._steps(index)
        frames = self._views(steps)
        state = (
            np.stack([st[self.mapping.state_key] for st in steps]).astype(np.float32)
            if self.mapping.state_key
            else None
        )
        return Episode(
            index=index,
            instruction=self._instructions[index],
            frames=frames,
            actions=np.stack([st[self.mapping.action_key] for st in steps]).astype(np.float32),
            state=state,
            task=self._tasks[index],
        )

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps(self.mapping.to_dict(), sort_keys=True).encode())
        h.update(hashlib.sha256((self.root / LANG_FILE).read_bytes()).digest())
        for start, end in self._windows:
            for s in (start, end):
                h.update(f"{s}:{step_path(self.root, s).stat().st_size}".encode())
        return h.hexdigest()


class CalvinWriter:
    """Writes episodes in CALVIN's layout so that CALVIN's own loaders (and ours) can read them.

    Each episode becomes consecutive step files, one ``ep_start_end_ids`` range and one language
    annotation covering it. Sentence embeddings are not computed (no text encoder ships here):
    ``language.emb`` holds zeros of CALVIN's shape ``(N, 1, 384)``.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._next_step = 0
        self._ranges: list[tuple[int, int]] = []
        self._ann: list[str] = []
        self._tasks: list[str] = []

    @classmethod
    def reopen(cls, root: str | Path) -> CalvinWriter:
        """A writer that appends to the finalised folder ``root`` (an interrupted collection continued):
        its episode ranges and annotations are read back, and new steps are numbered after them."""
        writer = cls(root)
        ranges_file = writer.root / "ep_start_end_ids.npy"
        if not ranges_file.is_file() or not (writer.root / LANG_FILE).is_file():
            raise FileNotFoundError(
                f"{writer.root} holds no finalised CALVIN episodes (ep_start_end_ids.npy) to continue"
            )
        writer._ranges = [(int(a), int(b)) for a, b in np.load(ranges_file)]
        language = np.load(writer.root / LANG_FILE, allow_pickle=True).item()["language"]
        writer._ann, writer._tasks = list(language["ann"]), list(language["task"])
        writer._next_step = writer._ranges[-1][1] + 1 if writer._ranges else 0
        return writer

    def add_episode(self, steps: dict[str, np.ndarray], instruction: str, task: str) -> tuple[int, int]:
        """``steps[key]`` is an array with one entry per time step for every key of :data:`STEP_KEYS`."""
        missing = [k for k in STEP_KEYS if k not in steps]
        if missing:
            raise KeyError(f"CALVIN steps need keys {missing}")
        n = len(steps["actions"])
        start = self._next_step
        for i in range(n):
            np.savez_compressed(step_path(self.root, start + i), **{k: np.asarray(steps[k][i]) for k in STEP_KEYS})
        end = start + n - 1
        self._next_step = end + 1
        self._ranges.append((start, end))
        self._ann.append(instruction)
        self._tasks.append(task)
        return start, end

    def finalize(self) -> None:
        np.save(self.root / "ep_start_end_ids.npy", np.asarray(self._ranges, dtype=np.int64).reshape(-1, 2))
        (self.root / LANG_FILE.parent).mkdir(exist_ok=True)
        ann = {
            "language": {
                "ann": list(self._ann),
                "task": list(self._tasks),
                "emb": np.zeros((len(self._ann), 1, 384), dtype=np.float32),
            },
            "info": {"episodes": [], "indx": list(self._ranges)},
        }
        np.save(self.root / LANG_FILE, np.array(ann, dtype=object), allow_pickle=True)
