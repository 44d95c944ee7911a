"""Rollout videos: static and gripper views side by side, the instruction, the subtask index, and a
green / red border when a subtask succeeds / fails. Encoding runs in a background thread so the
rollout never waits for the video encoder."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

PANEL = 200  # both views are shown at the static camera's size
BAR = 36
SUCCESS = (40, 200, 60)
FAILURE = (220, 40, 40)


def compose_frame(
    static: np.ndarray, gripper: np.ndarray, text: str, marker: tuple[int, int, int] | None
) -> np.ndarray:
    """One video frame: ``[static | gripper]`` over a text bar, with an optional coloured border."""
    left = Image.fromarray(np.asarray(static)).resize((PANEL, PANEL))
    right = Image.fromarray(np.asarray(gripper)).resize((PANEL, PANEL), Image.NEAREST)
    canvas = Image.new("RGB", (2 * PANEL, PANEL + BAR), (20, 20, 20))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (PANEL, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for row, line in enumerate(_wrap(text, 64)[:2]):
        draw.text((4, PANEL + 3 + 15 * row), line, fill=(235, 235, 235), font=font)
    if marker is not None:
        draw.rectangle([0, 0, 2 * PANEL - 1, PANEL - 1], outline=marker, width=6)
    return np.asarray(canvas)


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


class VideoWriter:
    """Writes frames to an mp4 (H.264 via PyAV) from a background thread."""

    def __init__(self, path: str | Path, fps: int = 30) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self._queue: queue.Queue = queue.Queue(maxsize=256)
        self._error: BaseException | None = None
        self.frames = 0
        self._thread = threading.Thread(target=self._run, name=f"video:{self.path.name}", daemon=True)
        self._thread.start()

    def add(self, frame: np.ndarray) -> None:
        if self._error is not None:
            raise RuntimeError(f"video writer for {self.path} failed: {self._error}") from self._error
        self._queue.put(np.ascontiguousarray(frame, dtype=np.uint8))
        self.frames += 1

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"video writer for {self.path} failed: {self._error}") from self._error

    def _run(self) -> None:
        container = None
        try:
            while (frame := self._queue.get()) is not None:
                if container is None:
                    container = av.open(str(self.path), mode="w")
                    stream = container.add_stream("libx264", rate=self.fps)
                    stream.height, stream.width = frame.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": "23", "preset": "veryfast"}
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            if container is not None:
                for packet in stream.encode():
                    container.mux(packet)
        except BaseException as err:  # reported to the rollout thread on its next call
            self._error = err
            while self._queue.get() is not None:  # drain so add()/close() never block
                pass
        finally:
            if container is not None:
                container.close()


class ChainVideo:
    """Frames of one evaluated chain, with the success marker held for a moment after each subtask."""

    MARK_FRAMES = 12

    def __init__(self, path: str | Path, fps: int = 30) -> None:
        self.writer = VideoWriter(path, fps)
        self._mark: tuple[int, int, int] | None = None
        self._mark_left = 0

    def frame(self, obs: dict, instruction: str, subtask: int, total: int) -> None:
        rgb = obs["rgb_obs"]
        text = f"[{subtask + 1}/{total}] {instruction}"
        marker = self._mark if self._mark_left > 0 else None
        self._mark_left = max(self._mark_left - 1, 0)
        self.writer.add(compose_frame(rgb["rgb_static"], rgb["rgb_gripper"], text, marker))

    def mark(self, success: bool) -> None:
        self._mark = SUCCESS if success else FAILURE
        self._mark_left = self.MARK_FRAMES

    def close(self, last_obs: dict | None = None, instruction: str = "", subtask: int = 0, total: int = 5) -> None:
        if last_obs is not None:  # show the final marker on the last frame
            while self._mark_left > 0:
                self.frame(last_obs, instruction, subtask, total)
        self.writer.close()
