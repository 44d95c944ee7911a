"""Simulators the evaluator can drive: ``playtable`` (ours, default) and ``calvin`` (the real one)."""

from __future__ import annotations

from typing import Any

BACKENDS = ("playtable", "calvin")


class SetOracle:
    """``success(task, start, now)`` over an oracle that only offers CALVIN's ``get_task_info_for_set``."""

    def __init__(self, oracle: Any) -> None:
        self.oracle = oracle

    def success(self, task: str, start_info: Any, info: Any) -> bool:
        return task in self.oracle.get_task_info_for_set(start_info, info, {task})


def make_env(
    backend: str = "playtable",
    *,
    variant: str = "D",
    calvin_dataset: str | None = None,
    renderer: str = "tiny",
    lazy_images: bool = True,
) -> Any:
    """One simulator. ``lazy_images`` (playtable) renders cameras only when an observation's images
    are read, so a policy that looks every 10th step pays for 1 render in 10 (calvin_env renders
    every step regardless)."""
    if backend == "playtable":
        from envs import PlayTableEnv

        return PlayTableEnv(variant=variant, renderer=renderer, lazy_images=lazy_images)
    if backend == "calvin":
        from envs.calvin_backend import CalvinEnv, CalvinNotAvailable

        if not calvin_dataset:
            raise CalvinNotAvailable("--backend calvin needs --calvin-dataset (a CALVIN split such as task_D_D)")
        return CalvinEnv(calvin_dataset)
    raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")


def make_oracle(backend: str = "playtable") -> Any:
    if backend == "calvin":
        from envs.calvin_backend import calvin_task_oracle

        calvin = calvin_task_oracle()
        if calvin is not None:
            return SetOracle(calvin)
    from envs import TaskOracle

    return TaskOracle()


def max_envs_per_process(backend: str) -> int | None:
    """calvin_env is reliable with one environment per process only."""
    return 1 if backend == "calvin" else None
