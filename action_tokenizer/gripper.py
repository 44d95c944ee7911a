"""Gripper conventions shared by the normaliser, the tokenizers and the policy.

CALVIN (and most LeRobot arms with a binary gripper) encode the gripper command as -1 (close) /
+1 (open) in the last action dimension. A decoded chunk carries a continuous value there, so the
policy must binarise it before it reaches the simulator. Zero is mapped to +1 (open): a decoded value
of exactly 0 carries no information, and the same convention fixes the gripper of the neutral chunk
that malformed token streams decode to (see :mod:`action_tokenizer.fast`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: The gripper value used when nothing about it could be decoded: open, as ``binarize_gripper(0)``.
NEUTRAL_GRIPPER = 1.0

#: CALVIN's relative and absolute actions are 7-d: xyz, euler xyz, gripper.
CALVIN_ACTION_DIM = 7


def default_gripper_dims(action_dim: int) -> tuple[int, ...]:
    """The binary gripper dimensions assumed when the caller names none.

    Only 7-d actions are assumed to be CALVIN-style (last dim = -1/+1 gripper). For any other size we
    cannot know, and guessing would silently skip normalising a continuous joint, so no dimension is
    treated as a gripper; pass ``gripper_dims`` / ``passthrough_dims`` explicitly for such data.
    """
    return (action_dim - 1,) if action_dim == CALVIN_ACTION_DIM else ()


def resolve_dims(dims: Sequence[int] | None, action_dim: int, what: str) -> tuple[int, ...]:
    """Turn possibly negative dimension indices into sorted non-negative ones, with a clear error."""
    if dims is None:
        return default_gripper_dims(action_dim)
    out = set()
    for d in dims:
        d = int(d)
        if not -action_dim <= d < action_dim:
            raise ValueError(f"{what} index {d} is out of range for {action_dim}-d actions (use 0..{action_dim - 1})")
        out.add(d % action_dim)
    return tuple(sorted(out))


def binarize_gripper(actions: np.ndarray, dims: Sequence[int] = (-1,)) -> np.ndarray:
    """Return a copy of ``actions`` whose gripper dims are exactly -1 or +1 (sign, with 0 -> +1).

    Works on any array whose last axis is the action dimension: one action, a chunk or a batch.
    """
    out = np.array(actions, dtype=np.float64, copy=True)
    if out.ndim == 0:
        raise ValueError("binarize_gripper needs an array whose last axis is the action dimension")
    idx = list(resolve_dims(dims, out.shape[-1], "gripper dimension"))
    out[..., idx] = np.where(out[..., idx] >= 0, 1.0, -1.0)
    return out
