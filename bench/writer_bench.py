"""Collection cost split: the experts' rollouts against the LeRobot writer, with lerobot's per-frame
image statistics (the baseline) and with the byte-histogram ones the writer uses
(:mod:`eval.collection.image_stats`).

The bench records the episodes of the first ``--jobs`` collection jobs once (one process, the camera
sizes of ``recipe=calvin34``), then writes the same episodes into two new datasets, one per statistics
class, and prints CPU seconds per frame for each part. Collection runs the rollouts in worker
processes and the writer in the main one, on the same cores, so its speed follows the total CPU per
episode; the last line is the collection speed-up that the writer's saving implies,
(rollout + baseline writer) / (rollout + writer). It also checks that both datasets hold the same
image statistics (mean, std, min, max exactly; quantiles within one histogram bin).

``--render-every K`` records the rollouts as ``collect --render-every K`` does (cameras rendered at
every K-th step of an episode, the frame held in between), to see what is left of the split then.

Run: ``.venv/bin/python bench/writer_bench.py [--jobs 40] [--static-size 96] [--gripper-size 48] [--render-every 1]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from eval.collection.collect import CollectConfig, demonstration_jobs, run_settings
from eval.collection.pool import run_jobs
from eval.collection.writers import LeRobotWriter


def record(jobs: int, static_size: int, gripper_size: int, render_every: int) -> tuple[list, float]:
    """The episodes of the first ``jobs`` calvin34-style collection jobs and the CPU seconds they took."""
    config = CollectConfig(
        out=Path("unused"),
        episodes_per_task=100,
        static_size=static_size,
        gripper_size=gripper_size,
        handover=True,
        render_every=render_every,
    )
    started = time.process_time()
    episodes = []
    for result in run_jobs(demonstration_jobs(config, limit=jobs), run_settings(config), workers=1):
        episodes += [(o.episode, o.episode.task.replace("_", " ")) for o in result.outcomes if o.episode is not None]
    return episodes, time.process_time() - started


def write(episodes: list, root: Path, static_size: int, gripper_size: int, byte_stats: bool) -> tuple[float, dict]:
    """CPU seconds (all threads of this process) to write ``episodes``, and the dataset's image statistics."""
    started = time.process_time()
    writer = LeRobotWriter(root, static_size=static_size, gripper_size=gripper_size, byte_image_stats=byte_stats)
    for episode, instruction in episodes:
        writer.add(episode, instruction)
    writer.finalize()
    seconds = time.process_time() - started
    stats = {k: v for k, v in writer.dataset.meta.stats.items() if k.startswith("observation.images")}
    return seconds, stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40, help="collection jobs to record (about 3 episodes each)")
    parser.add_argument("--static-size", type=int, default=96)
    parser.add_argument("--gripper-size", type=int, default=48)
    parser.add_argument("--render-every", type=int, default=1, help="render every K-th step, hold in between")
    args = parser.parse_args()

    episodes, rollout = record(args.jobs, args.static_size, args.gripper_size, args.render_every)
    frames = sum(len(e) for e, _ in episodes)
    print(f"{len(episodes)} episodes, {frames} frames (static {args.static_size}, gripper {args.gripper_size})")
    print(
        f"rollouts (experts, physics, cameras rendered every {args.render_every} steps): "
        f"{1e3 * rollout / frames:6.2f} ms CPU per frame"
    )
    with tempfile.TemporaryDirectory() as tmp:
        baseline, base_stats = write(episodes, Path(tmp) / "lerobot", args.static_size, args.gripper_size, False)
        shutil.rmtree(Path(tmp) / "lerobot")
        ours, our_stats = write(episodes, Path(tmp) / "byte", args.static_size, args.gripper_size, True)
    print(f"writer, lerobot's per-frame statistics: {1e3 * baseline / frames:6.2f} ms CPU per frame (baseline)")
    print(
        f"writer, byte-histogram statistics:      {1e3 * ours / frames:6.2f} ms CPU per frame "
        f"({baseline / ours:.2f}x less)"
    )
    worst = {}
    for key, stats in base_stats.items():
        for name, value in stats.items():
            gap = float(np.max(np.abs(np.asarray(value, float) - np.asarray(our_stats[key][name], float))))
            worst[name] = max(worst.get(name, 0.0), gap)
    print(
        "largest difference between the two datasets' image statistics (0-1 scale): "
        + ", ".join(f"{k} {v:.1e}" for k, v in sorted(worst.items()))
    )
    print(
        f"collection speed-up implied (rollout + writer CPU per frame): {(rollout + baseline) / (rollout + ours):.2f}x"
    )


if __name__ == "__main__":
    main()
