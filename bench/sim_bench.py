"""PlayTable simulator speed: steps per second without rendering, with both cameras every step,
and with both cameras every 10th step (a policy that predicts 10-action chunks).

The no-render run is the baseline; the other rows print their speed relative to it, measured in
the same process on the same machine. Each step also builds the observation and the info dict, as
an evaluator's loop does. CPU time is printed next to wall time because the machine may be shared.

Run: ``.venv/bin/python bench/sim_bench.py [--steps 300] [--variant D] [--renderer tiny|egl]``
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from envs import PlayTableEnv, load_start_states


def motion(step: int) -> np.ndarray:
    """A slow figure-eight over the table with the gripper opening and closing: the arm keeps moving."""
    phase = step / 30.0
    action = np.array(
        [math.sin(phase), math.sin(2 * phase) * 0.6, math.cos(phase) * 0.4, 0, 0, 0.3 * math.sin(phase), 1]
    )
    action[6] = 1.0 if (step // 45) % 2 == 0 else -1.0
    return action


def run(env: PlayTableEnv, steps: int, render_every: int | None) -> tuple[float, float]:
    """Seconds (wall, cpu) for ``steps`` steps, reading both images every ``render_every`` steps."""
    env.reset(load_start_states()[0])
    wall, cpu = time.perf_counter(), time.process_time()
    for step in range(steps):
        obs, _, _, _ = env.step(motion(step))
        if render_every is not None and step % render_every == 0:
            obs["rgb_obs"].materialize()  # reading the images renders them
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description="PlayTable steps/s with and without rendering")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--variant", default="D")
    parser.add_argument("--renderer", default="tiny", choices=("tiny", "egl"))
    args = parser.parse_args()

    with PlayTableEnv(variant=args.variant, renderer=args.renderer) as env:
        run(env, 20, 1)  # warm up caches and the renderer
        rows = [
            ("no rendering", None),
            ("both cameras every step", 1),
            ("both cameras every 10th step", 10),
        ]
        results = {label: run(env, args.steps, every) for label, every in rows}
        backend = env.renderer.backend

    base_wall, base_cpu = results["no rendering"]
    print(f"PlayTable scene {args.variant}, renderer {backend}, {args.steps} steps per row (30 Hz control, 8 substeps)")
    print(f"{'mode':32s} {'steps/s':>9s} {'ms/step':>8s} {'cpu ms/step':>12s} {'vs no-render':>13s}")
    for label, (wall, cpu) in results.items():
        rate = args.steps / wall
        print(
            f"{label:32s} {rate:9.1f} {1000 * wall / args.steps:8.2f} {1000 * cpu / args.steps:12.2f} "
            f"{base_wall / wall:12.2f}x"
        )
    wall_ms, cpu_ms = 1000 * base_wall / args.steps, 1000 * base_cpu / args.steps
    print(f"(no-render baseline: {wall_ms:.2f} ms/step wall, {cpu_ms:.2f} ms/step cpu)")


if __name__ == "__main__":
    main()
