"""Our policies behind CALVIN's ``CalvinBaseModel`` interface (``reset()``, ``step(obs, goal)``).

CALVIN's own evaluation script (``calvin_agent/evaluation/evaluate_policy.py``) drives a model
object with exactly these two methods, so wrapping a policy in :class:`CalvinModel` lets that script
evaluate it unchanged. ``goal`` is the language annotation of the current subtask.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from policies.base import Policy


class CalvinModel:
    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    def reset(self) -> None:
        self.policy.reset()

    def step(self, obs: dict[str, Any], goal: str | dict[str, Any]) -> np.ndarray:
        instruction = goal if isinstance(goal, str) else str(goal.get("lang", goal))
        return np.asarray(self.policy.step(obs, instruction))
