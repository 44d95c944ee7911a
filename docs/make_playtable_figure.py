"""Render docs/playtable.png: PlayTable's static and gripper cameras, and the four scene variants.

Top row: scene D (CALVIN's evaluation scene) from the static camera (200x200, as stored in CALVIN's
datasets) and the gripper camera (84x84, scaled up), in the start state of the first standard
evaluation chain with the arm lowered over the table. Bottom row: variants A..D from the static
camera in one and the same symbolic state.

Run: ``.venv/bin/python docs/make_playtable_figure.py [--out docs/playtable.png]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from envs import PlayTableEnv, load_start_states

SCALE = 2  # upscale the 200x200 frames for readability
LOWER_ARM = np.array([0.3, 0.6, -0.6, 0, 0, 0, 1.0])  # a few relative steps towards the blocks


def _frames(variant: str, state: dict, steps: int) -> tuple[np.ndarray, np.ndarray]:
    with PlayTableEnv(variant=variant) as env:
        obs = env.reset(state)
        for _ in range(steps):
            obs, *_ = env.step(LOWER_ARM)
        for _ in range(10):
            obs, *_ = env.step(np.array([0, 0, 0, 0, 0, 0, 1.0]))
        return obs["rgb_obs"]["rgb_static"].copy(), obs["rgb_obs"]["rgb_gripper"].copy()


def _label(image: Image.Image, text: str) -> Image.Image:
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 8 + 7 * len(text), 16), fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))
    return image


def make_figure(out: Path) -> Path:
    state = load_start_states()[0]
    static, gripper = _frames("D", state, steps=8)
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
