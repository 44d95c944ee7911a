"""Golden images: both cameras of a fixed scene must match small committed references.

This catches drift in the renderer, the scene's geometry or colours, the cameras or the robot
model (a pybullet upgrade, an edit to the layout). The comparison allows a small mean absolute
difference (0-255 scale) so that harmless floating-point differences between machines pass.

Regenerate the references deliberately, after checking the new pictures by eye, with::

    PLAYTABLE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_playtable_golden.py

which rewrites ``tests/golden/playtable_*.png`` and skips the comparison.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from envs import PlayTableEnv, load_start_states

GOLDEN = Path(__file__).parent / "golden"
MAX_MEAN_ABS_DIFF = 2.0
UPDATE = os.environ.get("PLAYTABLE_UPDATE_GOLDEN") == "1"


def fixed_scene_images() -> dict[str, np.ndarray]:
    """Scene D, the first standard chain's start state, the arm a little forward and down."""
    with PlayTableEnv() as env:
        env.reset(load_start_states()[0])
        for _ in range(6):
            env.step(np.array([0.3, 0.6, -0.6, 0, 0, 0, 1.0]))
        for _ in range(6):
            env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
        return env.render_cameras()


@pytest.fixture(scope="module")
def images():
    return fixed_scene_images()


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


@pytest.mark.parametrize("camera", ["rgb_static", "rgb_gripper"])
def test_camera_matches_golden_image(images, camera):
    path = GOLDEN / f"playtable_{camera}.png"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        Image.fromarray(images[camera]).save(path)
        pytest.skip(f"rewrote {path}")
    assert path.exists(), f"missing {path}; create it with PLAYTABLE_UPDATE_GOLDEN=1 (see module docstring)"
    reference = np.asarray(Image.open(path).convert("RGB"))
    assert reference.shape == images[camera].shape
    difference = mean_abs_diff(images[camera], reference)
    assert difference <= MAX_MEAN_ABS_DIFF, f"{camera} drifted from {path.name}: mean abs diff {difference:.2f}"


def test_tolerance_catches_a_visible_change(images):
    """The tolerance is tight enough to notice the drawer closing and the LED going off."""
    with PlayTableEnv() as env:
        state = {**load_start_states()[0], "drawer": "closed", "led": 0}
        env.reset(state)
        for _ in range(6):
            env.step(np.array([0.3, 0.6, -0.6, 0, 0, 0, 1.0]))
        for _ in range(6):
            env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
        changed = env.render()
    assert mean_abs_diff(changed, images["rgb_static"]) > 2 * MAX_MEAN_ABS_DIFF
