"""The demo's optional on-policy round (``on_policy.chains > 0``): DAgger-style data, then a fine-tune.

After the main training the trained policy drives training chains and the scripted expert records
from the states it leaves (:mod:`eval.collection.on_policy`); the model then continues from its
final weights on the expert demonstrations *and* those episodes, for ``on_policy.steps`` at
``on_policy.lr``. Both are cached stages like the others; the evaluations that follow use the
fine-tuned weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from eval.demo.stages import Stage, config_settings


def collect_stage(run: Any, trained: Stage) -> Stage:
    o = run.cfg.on_policy
    settings = {
        "chains": int(o.chains),
        "driver": str(o.get("policy") or "trained"),
        "tasks": None if len(run.tasks) == 34 else list(run.tasks),
        "policy_subtasks": int(o.policy_subtasks),
        "expert_subtasks": int(o.expert_subtasks),
        "recover": bool(o.recover),
        "views": run.views(),
        "decoder": str(run.cfg.eval.decoder),
        "seed": int(run.cfg.seed),
        **({"render_every": run.render_every()} if run.render_every() > 1 else {}),
        **({"render_sizes": list(run.render_sizes())} if run.render_sizes() else {}),
    }
    return Stage(f"collect on-policy data ({run.tag})", run.folder / f"on_policy_{run.tag}", settings, [trained])


def run_collect(run: Any, stage: Stage, checkpoint: Path) -> dict[str, Any]:
    from eval.collection.on_policy import OnPolicyConfig, collect_on_policy

    s, views = stage.settings, run.views()
    report = collect_on_policy(
        OnPolicyConfig(
            policy=str(checkpoint) if s["driver"] == "trained" else s["driver"],
            out=stage.folder / "collect",
            chains=s["chains"],
            tasks=s["tasks"],
            seed=s["seed"],
            policy_subtasks=s["policy_subtasks"],
            expert_subtasks=s["expert_subtasks"],
            recover=s["recover"],
            static_size=views["static"],
            gripper_size=views["gripper"],
            render_every=int(s.get("render_every", 1)),
            render_sizes=tuple(s["render_sizes"]) if s.get("render_sizes") else None,
            envs=int(run.cfg.eval.envs),
            workers=int(run.cfg.workers),
            decoder=s["decoder"],
            resume=True,  # an interrupted attempt continues from its next chain
            overwrite=True,  # what cannot be continued starts over
        )
    )
    report.pop("chain_list", None)
    return report


def finetune_stage(
    run: Any, upstream: list[Stage], train_cfg: DictConfig, checkpoint: Path, roots: list[str]
) -> tuple[Stage, DictConfig]:
    """The main training config, continued from ``checkpoint`` on ``roots`` (expert + on-policy data)."""
    o = run.cfg.on_policy
    cfg = OmegaConf.create(OmegaConf.to_container(train_cfg, resolve=True))
    cfg.model.checkpoint = str(checkpoint)
    cfg.data.root = list(roots)
    cfg.data.repeats = [1] * (len(roots) - 1) + [int(o.repeat)]  # the last root: the on-policy data
    cfg.steps = int(o.steps)
    cfg.optim.lr = float(o.lr)
    cfg.checkpoint.every = int(o.steps)
    cfg.run_dir = str(run.folder / f"train_{run.tag}_on_policy")
    stage = Stage(f"fine-tune on on-policy data ({run.tag})", Path(cfg.run_dir), config_settings(cfg), upstream)
    return stage, cfg
