"""Writing recorded episodes: a LeRobot v3.0 dataset (through lerobot's own API) and CALVIN's format.

**LeRobot.** ``LeRobotDataset.create`` / ``add_frame`` / ``save_episode`` / ``finalize`` with the
features ``observation.images.static`` and ``observation.images.gripper`` (video, or PNG images with
``video=False``), ``observation.state`` (CALVIN's 15-d ``robot_obs``), ``action`` (the 7-d relative
action: the one sent to the simulator, or with a noisy expert its noise-free label),
``action.perturbed`` (the executed action carried noise; training skips chunks with such steps) and
the per-frame ``task`` text (the instruction).

**Video settings.** lerobot's default encoder (SVT-AV1, CRF 30, 4:2:0 chroma) blurs the small,
saturated blocks of 128x128 / 64x64 frames badly: measured on expert episodes it leaves a mean
absolute error of 2.7 grey levels and single pixels off by up to 222 (the blocks' edges lose their
colour to 4:2:0 subsampling). H.264 at CRF 18 (4:2:0) is no better (2.8, max 169). This writer uses
H.264 with 4:4:4 chroma at CRF 0, which libx264 codes losslessly: what is left is the rounding of
the RGB -> YUV -> RGB conversions, a mean of 0.23 (static) / 0.30 (gripper) grey levels, with
almost every value exact or off by 1 and at most 2 (measured over 3,240 frames of 30 episodes),
for files about twice the size of AV1's and half of PNG images'. The ``ultrafast`` preset stays
lossless (the preset trades file size, not quality, at CRF 0): measured on 300 96x96 frames, 0.36 ms
per frame instead of 0.96 at the default preset, for 30 % larger files. ``VIDEO_TOLERANCE`` states that
bound; the tests check it. (Lossless RGB would need ``libx264rgb``, which lerobot's encoder
configuration does not accept; lossless HEVC in planar RGB decodes misaligned frames.) Frames are
fed to the encoder as they arrive (``streaming_encoding``), which avoids writing a temporary PNG
per frame (about a third less time per frame), and the encoder's per-frame image statistics are
counted as byte histograms (:mod:`eval.collection.image_stats`: the same statistics, 1.8x less writer
CPU per frame).

**CALVIN.** :class:`emu3_vla.data.calvin_format.CalvinWriter` writes one ``episode_XXXXXXX.npz`` per
step with ``rgb_static``, ``rgb_gripper``, ``actions`` (absolute: the target pose after the step and
the gripper), ``rel_actions``, ``robot_obs`` and ``scene_obs``, plus the language annotations.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from emu3_vla.data.calvin_format import CalvinWriter
from emu3_vla.data.episodes import PERTURBED_KEY
from emu3_vla.data.held_frames import write_render_every
from emu3_vla.interrupts import deferred_interrupts
from eval.collection.image_stats import acquire_byte_image_stats, release_byte_image_stats
from eval.collection.recorder import Episode

log = logging.getLogger(__name__)

FPS = 30
#: Largest per-pixel error (grey levels) the stored video frames may show against the rendered ones.
VIDEO_TOLERANCE = 2
VIDEO_CODEC = {"vcodec": "h264", "pix_fmt": "yuv444p", "crf": 0, "g": 2, "preset": "ultrafast"}
STATE_NAMES = [
    "tcp_x",
    "tcp_y",
    "tcp_z",
    "tcp_roll",
    "tcp_pitch",
    "tcp_yaw",
    "gripper_width",
    *(f"joint_{i}" for i in range(1, 8)),
    "gripper_action",
]
ACTION_NAMES = ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]
#: Longest episode the video encoder's queue holds (a subtask's 360 steps plus its tail, with room).
MAX_EPISODE_FRAMES = 1024
#: Largest video file (MB) before the writer starts the next one. lerobot appends each episode to the
#: current file by remuxing the whole file, so an episode costs time proportional to that file's size:
#: with lerobot's 200 MB default the writer (one process) became the bottleneck of the demo's
#: collection (19 CPU-minutes of its 21; 1.0 episodes/s at the start, 0.35 at the end). Small files
#: keep every append cheap; readers do not care how many files there are.
VIDEO_FILE_MB = 8
STATIC_KEY = "observation.images.static"
GRIPPER_KEY = "observation.images.gripper"


def lerobot_features(static_size: int, gripper_size: int, video: bool = True) -> dict[str, dict]:
    """The dataset's feature specification (see the module docstring)."""
    kind = "video" if video else "image"
    image_names = ["height", "width", "channels"]
    return {
        STATIC_KEY: {"dtype": kind, "shape": (static_size, static_size, 3), "names": image_names},
        GRIPPER_KEY: {"dtype": kind, "shape": (gripper_size, gripper_size, 3), "names": image_names},
        "observation.state": {"dtype": "float32", "shape": (15,), "names": STATE_NAMES},
        "action": {"dtype": "float32", "shape": (7,), "names": ACTION_NAMES},
        PERTURBED_KEY: {"dtype": "bool", "shape": (1,), "names": None},
    }


def _quiet_encoders() -> None:
    """Keep libx264's statistics, remuxing notes and the datasets library's progress bars out of the output.

    lerobot hands libav's logging back to libav's own stderr printer after each video, so the libav
    level itself is lowered (not only PyAV's Python-side one). lerobot also warns at length, with
    tracebacks, that torchcodec finds no system FFmpeg; videos are written and read with PyAV here.
    """
    logging.getLogger("lerobot.utils.import_utils").setLevel(logging.ERROR)
    logging.getLogger("lerobot.configs.video").setLevel(logging.WARNING)  # "Using video codec: ..." per config
    try:
        import av.logging

        av.logging.set_level(av.logging.ERROR)
        av.logging.set_libav_level(av.logging.ERROR)
    except (ImportError, AttributeError):  # pragma: no cover - older PyAV
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - lerobot depends on it
        pass


class LeRobotWriter:
    """Appends episodes to a new LeRobot v3.0 dataset at ``root`` (which must not exist yet), or with
    ``resume=True`` to the finalised one there (an interrupted collection continued)."""

    def __init__(
        self,
        root: str | Path,
        *,
        repo_id: str | None = None,
        static_size: int = 200,
        gripper_size: int = 84,
        video: bool = True,
        fps: int = FPS,
        max_episode_frames: int = MAX_EPISODE_FRAMES,
        video_file_mb: int = VIDEO_FILE_MB,
        byte_image_stats: bool = True,
        render_every: int = 1,
        resume: bool = False,
    ) -> None:
        """``byte_image_stats=False`` keeps lerobot's own per-frame statistics (the benchmark's baseline);
        ``render_every=k`` marks the dataset as holding frames rendered every k-th step (its episodes
        must be recorded so, see ``eval.collection.recorder``), which training then checks.
        ``resume=True`` reopens the dataset at ``root`` (lerobot's ``LeRobotDataset.resume``) and appends
        after its last episode; its features must be the ones these settings would create."""
        _quiet_encoders()
        from lerobot.configs.video import RGBEncoderConfig
        from lerobot.datasets import LeRobotDataset

        self.root = Path(root)
        if resume and not (self.root / "meta" / "info.json").is_file():
            raise FileNotFoundError(f"{self.root} holds no LeRobot dataset to continue (no meta/info.json)")
        if self.root.exists() and not resume:
            raise FileExistsError(f"{self.root} already exists; choose a new folder or remove it first")
        self.repo_id = repo_id or f"local/{self.root.name}"
        self.static_size, self.gripper_size = static_size, gripper_size
        self.video = video
        self.max_episode_frames = max_episode_frames
        options: dict = {}
        if video:
            # lerobot's streaming encoder drops frames (with a warning) when its queue is full - fine for
            # a live camera, fatal for a dataset whose table rows must match its video frames. A queue
            # that holds a whole episode can never be full: save_episode() waits for the encoder.
            options = {
                "rgb_encoder": RGBEncoderConfig(**VIDEO_CODEC),
                "streaming_encoding": True,
                "encoder_queue_maxsize": max_episode_frames,
                "video_files_size_in_mb": video_file_mb,
            }
        features = lerobot_features(static_size, gripper_size, video)
        if resume:
            options.pop("video_files_size_in_mb", None)  # the dataset's own setting (meta/info.json) applies
            self.dataset = LeRobotDataset.resume(self.repo_id, root=self.root, **options)
            _check_same_features(self.root, self.dataset.meta.features, features)
            self.episodes = int(self.dataset.meta.total_episodes)
        else:
            self.dataset = LeRobotDataset.create(
                self.repo_id,
                fps=fps,
                features=features,
                root=self.root,
                robot_type="panda",
                use_videos=video,
                **options,
            )
            write_render_every(self.root, render_every)
            self.episodes = 0
        self._byte_stats = video and byte_image_stats  # until finalize(): image stats counted per byte value
        if self._byte_stats:
            acquire_byte_image_stats()

    def add(self, episode: Episode, instruction: str) -> int:
        """Append one episode; returns its index in the dataset."""
        if episode.static is None or episode.gripper is None:
            raise ValueError("the episode was recorded without frames (record_frames=False); a dataset needs them")
        if len(episode) > self.max_episode_frames:
            raise ValueError(
                f"episode of {len(episode)} frames is longer than max_episode_frames={self.max_episode_frames}; "
                "create the writer with a larger max_episode_frames"
            )
        expected = {STATIC_KEY: self.static_size, GRIPPER_KEY: self.gripper_size}
        for key, frames in ((STATIC_KEY, episode.static), (GRIPPER_KEY, episode.gripper)):
            if frames.shape[1:] != (expected[key], expected[key], 3):
                raise ValueError(
                    f"{key} frames are {frames.shape[1:]}, the dataset stores {expected[key]}x{expected[key]}"
                )
        with deferred_interrupts():  # Ctrl-C / SIGTERM land between episodes, never inside one
            return self._add(episode, instruction)

    def _add(self, episode: Episode, instruction: str) -> int:
        state = episode.robot_obs.astype(np.float32)
        actions = episode.actions.astype(np.float32)
        perturbed = np.zeros(len(episode), bool) if episode.perturbed is None else episode.perturbed.astype(bool)
        for t in range(len(episode)):
            self.dataset.add_frame(
                {
                    STATIC_KEY: episode.static[t],
                    GRIPPER_KEY: episode.gripper[t],
                    "observation.state": state[t],
                    "action": actions[t],
                    PERTURBED_KEY: perturbed[t : t + 1],
                    "task": instruction,
                }
            )
        self.dataset.save_episode()
        self.episodes += 1
        return self.episodes - 1

    def finalize(self) -> None:
        try:
            self.dataset.finalize()
        finally:
            if self._byte_stats:
                self._byte_stats = False
                release_byte_image_stats()


def _check_same_features(root: Path, stored: dict[str, dict], expected: dict[str, dict]) -> None:
    """A ValueError if the dataset being continued stores other features (camera sizes, video or images)."""
    for key, spec in expected.items():
        have = stored.get(key)
        if have is None or have["dtype"] != spec["dtype"] or tuple(have["shape"]) != tuple(spec["shape"]):
            got = f"{have['dtype']} {tuple(have['shape'])}" if have else "missing"
            raise ValueError(
                f"{root} stores {key} as {got}, these settings write {spec['dtype']} {tuple(spec['shape'])}: "
                "continue it with the settings it was made with, or start a new collection"
            )


class CalvinFormatWriter:
    """Appends episodes to a CALVIN split folder (``.../training``) through ``CalvinWriter``; with
    ``resume=True`` after the episodes a finalised folder already holds."""

    def __init__(self, root: str | Path, resume: bool = False) -> None:
        self.root = Path(root)
        if resume:
            self.writer = CalvinWriter.reopen(self.root)
            return
        if self.root.exists() and any(self.root.iterdir()):
            raise FileExistsError(f"{self.root} already exists and is not empty; choose a new folder or remove it")
        self.writer = CalvinWriter(self.root)

    def add(self, episode: Episode, instruction: str) -> tuple[int, int]:
        if episode.static is None or episode.gripper is None:
            raise ValueError("the episode was recorded without frames (record_frames=False); CALVIN steps need them")
        steps = {
            "rgb_static": episode.static,
            "rgb_gripper": episode.gripper,
            "actions": episode.abs_actions.astype(np.float32),
            "rel_actions": episode.actions.astype(np.float32),
            "robot_obs": episode.robot_obs.astype(np.float32),
            "scene_obs": episode.scene_obs.astype(np.float32),
        }
        return self.writer.add_episode(steps, instruction, episode.task)

    def finalize(self) -> None:
        self.writer.finalize()
