"""Synthetic CALVIN-like action trajectories, for tests, benchmarks and demos without data.

Each trajectory has 7 dims: 6 continuous dims, each a sum of 2-4 sinusoids of 0.5-6 cycles per
200 steps (random amplitudes summing to 0.4-0.9, random phases) plus Gaussian noise of std 0.02,
clipped to [-1, 1]; and a -1/+1 gripper that switches 1-3 times per 200 steps. On 10-step windows
of these, the public FAST processor needs about 14.6 tokens per chunk at scale 10 and 34 at
scale 50, the figures docs/design.md section 4 quotes for smooth CALVIN-like chunks.
"""

from __future__ import annotations

import numpy as np

from action_tokenizer.data import make_chunks


def calvin_like_trajectories(
    num: int,
    length: int = 200,
    *,
    seed: int = 0,
    noise_std: float = 0.02,
    max_cycles: float = 6.0,
) -> np.ndarray:
    """Trajectories (num, length, 7) in [-1, 1]; the last dim is the gripper (exactly -1 or +1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    out = np.empty((num, length, 7))
    cycles_per_step = 1.0 / 200.0
    for i in range(num):
        for d in range(6):
            k = int(rng.integers(2, 5))
            freq = rng.uniform(0.5, max_cycles, k) * cycles_per_step
            amp = rng.uniform(0.1, 1.0, k)
            amp *= rng.uniform(0.4, 0.9) / amp.sum()
            phase = rng.uniform(0, 2 * np.pi, k)
            wave = (amp[:, None] * np.sin(2 * np.pi * freq[:, None] * t + phase[:, None])).sum(axis=0)
            out[i, :, d] = wave + rng.normal(0.0, noise_std, length)
        switches = max(1, round(rng.integers(1, 4) * length / 200))
        at = np.sort(rng.choice(np.arange(1, length), size=min(switches, length - 1), replace=False))
        gripper = np.full(length, rng.choice([-1.0, 1.0]))
        for s in at:
            gripper[s:] *= -1
        out[i, :, 6] = gripper
    out[..., :6] = np.clip(out[..., :6], -1.0, 1.0)
    return out


def calvin_like_chunks(
    num_trajectories: int, horizon: int = 10, stride: int = 1, *, length: int = 200, seed: int = 0, **kwargs: float
) -> np.ndarray:
    """Windows (N, horizon, 7) cut every ``stride`` steps from synthetic trajectories."""
    traj = calvin_like_trajectories(num_trajectories, length, seed=seed, **kwargs)
    ends = np.arange(1, num_trajectories + 1) * length
    return make_chunks(traj.reshape(-1, 7), horizon, stride, ends)
