"""Read and write the files the generation commands use: PNG images and mp4 videos (PyAV).

Frames are ``uint8`` arrays ``(H, W, 3)``; videos ``(T, H, W, 3)``. mp4 files are H.264 in
yuv420p (playable everywhere), which needs even frame sizes: every size the VQ decoder produces
(multiples of 8) is even.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, UnidentifiedImageError


def write_png(image: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
    return path


def read_image(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """An image file -> ``(H, W, 3) uint8`` RGB, resized to ``size = (height, width)`` if given."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if size is not None and (img.height, img.width) != tuple(size):
                img = img.resize((size[1], size[0]), Image.Resampling.BICUBIC)
            return np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"{path} is not a readable image: {err}") from err


def write_mp4(frames: np.ndarray, path: str | Path, fps: float = 8.0) -> Path:
    """``(T, H, W, 3) uint8`` -> an H.264 mp4 at ``fps`` frames per second."""
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError("a video needs at least one frame")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 needs even frame sizes, got {height}x{width}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def read_video(path: str | Path, size: tuple[int, int] | None = None, max_frames: int | None = None) -> np.ndarray:
    """A video file -> ``(T, H, W, 3) uint8`` frames (resized to ``size = (height, width)`` if given)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video {path} does not exist")
    out = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            for frame in container.decode(video=0):
                if size is not None:
                    frame = frame.reformat(width=size[1], height=size[0])
                out.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(out) >= max_frames:
                    break
    except av.error.FFmpegError as err:
        raise ValueError(f"{path} is not a readable video: {err}") from err
    if not out:
        raise ValueError(f"{path} contains no frames")
    return np.stack(out)
