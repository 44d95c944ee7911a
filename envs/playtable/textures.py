"""Procedural textures for the desk and door (wood grain, speckled laminate), made in code.

Textures are light greyscale patterns; pybullet multiplies them with a shape's colour, so one wood
texture gives oak, walnut or cherry depending on the variant's colour. They are generated once per
process (seeded, so every run draws the same grain), written to a temporary PNG for
``loadTexture`` and deleted right after loading.
"""

from __future__ import annotations

import os
import tempfile
from functools import cache

import numpy as np
from PIL import Image

from envs.playtable.bullet import p

KINDS = ("wood", "speckle", "plain")


@cache
def texture_pixels(kind: str) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 greyscale pattern; the texture's u axis runs along the desk's width."""
    rng = np.random.RandomState({"wood": 11, "speckle": 12}.get(kind, 0))
    height, width = 128, 512
    u = np.linspace(0, 1, width)[None, :]
    v = np.linspace(0, 1, height)[:, None]
    if kind == "wood":
        wobble = np.cumsum(rng.normal(0, 1, width))[None, :] * 0.004
        rings = 0.5 + 0.5 * np.sin((v * 9 + wobble + 0.15 * np.sin(u * 7)) * 2 * np.pi)
        streaks = rng.normal(0, 1, (height, 1))
        shade = 0.86 + 0.10 * rings + 0.02 * streaks + rng.normal(0, 0.02, (height, width))
    elif kind == "speckle":
        shade = 0.93 + rng.normal(0, 0.035, (height, width))
        shade[rng.random_sample((height, width)) < 0.03] -= 0.15
    elif kind == "plain":
        shade = np.ones((height, width))
    else:
        raise ValueError(f"unknown texture {kind!r}; choose one of {KINDS}")
    grey = (np.clip(shade, 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def load_texture(kind: str, client: int) -> int:
    """Load a procedural texture into a pybullet client; returns its texture id."""
    with tempfile.TemporaryDirectory(prefix="playtable_texture_") as tmp:
        path = os.path.join(tmp, f"{kind}.png")
        Image.fromarray(texture_pixels(kind)).save(path)
        return p.loadTexture(path, physicsClientId=client)
