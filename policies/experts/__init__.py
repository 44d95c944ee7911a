"""Scripted experts for the 34 CALVIN tasks (privileged policies: they read the simulator's info).

``ScriptedExpert`` implements :class:`policies.base.Policy` with ``needs_info = True``: each
observation must carry ``info``, ``landmarks`` and ``task`` (an evaluator adds them). It commands
CALVIN's relative 7-d actions from waypoints, so its demonstrations are what a learned policy can
imitate. ``EXPERT_TASKS`` lists the tasks it can do (all 34).
"""

from policies.experts.expert import NOISE_KINDS, ScriptedExpert
from policies.experts.plans import EXPERT_TASKS, PLANS, PlanContext, make_plan
from policies.experts.scene import MissingPrivilegedInfo, SceneView

__all__ = [
    "EXPERT_TASKS",
    "NOISE_KINDS",
    "PLANS",
    "MissingPrivilegedInfo",
    "PlanContext",
    "SceneView",
    "ScriptedExpert",
    "make_plan",
]
