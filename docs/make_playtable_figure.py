"""Render docs/playtable.png: PlayTable's static and gripper cameras, and the four scene variants.

Top row: scene D (CALVIN's evaluation scene) from the static camera (200x200, as stored in CALVIN's
datasets) and the gripper camera (84x84, scaled up), in one of CALVIN's standard start states (both
lights on, drawer open, door on the right so the red block shows on the shelf) with the arm moved a
little forward over the table. Bottom row: variants A..D from the static camera in the same state.

Run: ``.venv/bin/python docs/make_playtable_figure.py [--out docs/playtable.png]``
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from envs import PlayTableEnv, load_start_states

# A standard start state (one of the 192) in which no block hides behind the door.
STATE = {
    "led": 1,
    "lightbulb": 1,
    "slider": "right",
    "drawer": "open",
    "red_block": "slider_left",
    "blue_block": "table",
    "pink_block": "table",
    "grasped": 0,
}

SCALE = 2  # upscale the 200x200 frames for readability
# Where the figure puts the tcp: in front of the blocks, so the gripper camera sees them and the arm
# hides nothing on the shelf from the static camera.
TCP_POSE = (np.array([0.15, -0.32, 0.6]), np.array([math.pi, 0.0, math.pi / 2]), 1)


def _frames(variant: str, state: dict, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Static and gripper frames after ``steps`` absolute-pose steps towards :data:`TCP_POSE`."""
    with PlayTableEnv(variant=variant) as env:
        obs = env.reset(state)
        for _ in range(steps):
            obs, *_ = env.step(TCP_POSE)
        return obs["rgb_obs"]["rgb_static"].copy(), obs["rgb_obs"]["rgb_gripper"].copy()


def _label(image: Image.Image, text: str) -> Image.Image:
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 8 + 7 * len(text), 16), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))
    return image


def make_figure(out: Path) -> Path:
    state = STATE
    assert state in load_start_states(), "the figure should show a standard CALVIN start state"
    static, gripper = _frames("D", state, steps=30)
    size = 200 * SCALE
    top = Image.new("RGB", (2 * size, size), (255, 255, 255))
    top.paste(_label(Image.fromarray(static).resize((size, size), Image.NEAREST), "static 200x200 (scene D)"), (0, 0))
    top.paste(_label(Image.fromarray(gripper).resize((size, size), Image.NEAREST), "gripper 84x84"), (size, 0))
    quarter = size // 2
    bottom = Image.new("RGB", (2 * size, quarter), (255, 255, 255))
    for index, variant in enumerate("ABCD"):
        view, _ = _frames(variant, state, steps=0)
        bottom.paste(
            _label(Image.fromarray(view).resize((quarter, quarter), Image.BILINEAR), f"scene {variant}"),
            (index * quarter, 0),
        )
    figure = Image.new("RGB", (2 * size, size + quarter), (255, 255, 255))
    figure.paste(top, (0, 0))
    figure.paste(bottom, (0, size))
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("playtable.png"))
    print(make_figure(parser.parse_args().out))


if __name__ == "__main__":
    main()
