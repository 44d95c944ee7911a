"""Simulators the evaluator can drive: ``playtable`` (ours, default) and ``calvin`` (the real one)."""

from __future__ import annotations

from typing import Any

BACKENDS = ("playtable", "calvin")
# The policy each backend evaluates when none is named: the scripted experts need PlayTable, so
# calvin_env gets the random policy (the floor), which runs anywhere.
DEFAULT_POLICY = {"playtable": "expert", "calvin": "random"}
# Policies that read what only PlayTable provides.
PLAYTABLE_ONLY_POLICIES = {
    "expert": "the scripted experts read PlayTable's landmarks and contact info, which calvin_env does not provide",
}


class SetOracle:
    """``success(task, start, now)`` over an oracle that only offers CALVIN's ``get_task_info_for_set``."""

    def __init__(self, oracle: Any) -> None:
        self.oracle = oracle

    def success(self, task: str, start_info: Any, info: Any) -> bool:
        return task in self.oracle.get_task_info_for_set(start_info, info, {task})


def default_policy(backend: str) -> str:
    """The policy spec evaluated on ``backend`` when none is given."""
    if backend not in DEFAULT_POLICY:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    return DEFAULT_POLICY[backend]


def check_policy_for_backend(policy: str, backend: str) -> None:
    """Refuses, before anything is built, a policy that cannot run on ``backend``."""
    if backend != "playtable" and policy in PLAYTABLE_ONLY_POLICIES:
        raise ValueError(
            f"policy {policy!r} cannot run on --backend {backend}: {PLAYTABLE_ONLY_POLICIES[policy]}. "
            "Use --backend playtable for it, or evaluate 'random', a checkpoint folder or remote://host:port "
            f"on {backend}."
        )


def check_camera_sizes_for_backend(camera_sizes: dict[str, int] | None, backend: str) -> None:
    """Refuses, before anything is built, camera sizes for a backend that renders its own cameras."""
    if camera_sizes and backend != "playtable":
        raise ValueError(
            f"--camera-sizes applies to --backend playtable only; {backend} renders its own cameras "
            f"(asked for {camera_sizes})"
        )


def make_env(
    backend: str = "playtable",
    *,
    variant: str = "D",
    calvin_dataset: str | None = None,
    renderer: str = "tiny",
    lazy_images: bool = True,
    camera_sizes: dict[str, int] | None = None,
) -> Any:
    """One simulator. ``lazy_images`` (playtable) renders cameras only when an observation's images
    are read, so a policy that looks every 10th step pays for 1 render in 10 (calvin_env renders
    every step regardless). ``camera_sizes`` (playtable) renders other square sizes than CALVIN's
    200 / 84. ``calvin_dataset`` (calvin): a folder with ``.hydra/merged_config.yaml``, written by
    ``emu3-vla eval calvin-config`` or a CALVIN dataset split."""
    check_camera_sizes_for_backend(camera_sizes, backend)
    if backend == "playtable":
        from envs import PlayTableEnv

        return PlayTableEnv(variant=variant, renderer=renderer, lazy_images=lazy_images, camera_sizes=camera_sizes)
    if backend == "calvin":
        from envs.calvin_backend import CalvinEnv, CalvinNotAvailable

        if not calvin_dataset:
            raise CalvinNotAvailable(
                "--backend calvin needs --calvin-config (a folder written by `emu3-vla eval calvin-config`) "
                "or --calvin-dataset (a CALVIN split such as task_D_D)"
            )
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
