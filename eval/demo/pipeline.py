"""``emu3-vla demo``: the product's main job, one command, every stage cached (:mod:`.stages`).

collect expert demonstrations -> fit FAST -> train the VQ tokenizer -> build the token cache and
train the VLA -> evaluate it in closed loop (single-task suite over the recipe's tasks, CALVIN's
standard chains, a learning curve over the kept checkpoints, a random policy beside it) -> let the
same model write text and images -> write ``results.json``, plots, ``report.html`` files and
rollout mp4s into the run folder and print a summary.

The configuration (``emu3_vla/configs/demo.yaml``) holds every number: ``train`` *is* the training
config and ``vq`` the VQ one, so this module only fills in the run folder's paths; ``recipe``
picks the task set and budget (``articulated``: the 8 articulated-object tasks, ``calvin34``: all
34 tasks with chain demonstrations); ``ablation`` changes one thing and retrains on the same data.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from eval.demo.stages import Stage, config_settings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Run:
    """One demo run: the composed config, its folder, its tasks and where the model runs."""

    cfg: DictConfig
    folder: Path
    tasks: list[str]
    device: str
    tag: str  # "main", or the ablation's name

    @classmethod
    def create(cls, cfg: DictConfig) -> Run:
        from envs import task_names

        device = str(cfg.device)
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        tasks = list(cfg.tasks) if cfg.tasks else task_names()
        unknown = sorted(set(tasks) - set(task_names()))
        if unknown:
            raise ValueError(f"unknown tasks {unknown}; choose from: {', '.join(task_names())}")
        run = cls(cfg, Path(cfg.run_dir), tasks, device, str(cfg.get("tag") or "main"))
        run.check_render_every()
        return run

    def views(self) -> dict[str, int]:
        cameras = self.cfg.train.data.cameras
        return {"static": int(cameras.static.size), "gripper": int(cameras.gripper.size)}

    def render_every(self) -> int:
        """Collection renders every k-th step and holds the frame in between (``collect.render_every``)."""
        return int(self.cfg.collect.get("render_every") or 1)

    def render_sizes(self) -> tuple[int, int] | None:
        """Collection renders at these (static, gripper) sizes and stores resized (``collect.render_sizes``)."""
        sizes = self.cfg.collect.get("render_sizes")
        return (int(sizes[0]), int(sizes[1])) if sizes else None

    def check_render_every(self) -> None:
        """Every frame the VLA or the VQ tokenizer encodes must be a rendered one, not a held copy."""
        every = self.render_every()
        strides = {"train.data.frame_stride": int(self.cfg.train.data.frame_stride)}
        strides["vq.frame_stride"] = int(self.cfg.vq.frame_stride)
        wrong = [f"{name}={stride}" for name, stride in strides.items() if every < 1 or stride % every]
        if wrong:
            raise ValueError(
                f"collect.render_every={every} renders every {every}th step and repeats the frame in between, "
                f"but {' and '.join(wrong)} would encode repeated frames: make the strides multiples of "
                f"{every}, or set collect.render_every to a divisor of them (1 renders every step)"
            )


# ------------------------------------------------------------------------------------ data stages
def collect_stage(run: Run) -> Stage:
    c = run.cfg.collect
    if c.get("dataset"):
        return Stage("use dataset", run.folder / "data", {"dataset": str(Path(c.dataset).resolve())})
    settings = {
        "tasks": run.tasks,
        "episodes_per_task": int(c.episodes_per_task),
        "chain_fraction": float(c.chain_fraction),
        "views": run.views(),
        "noise": float(c.noise),
        "noise_kind": str(c.noise_kind),
        "labels": str(c.labels),
        "seed": int(run.cfg.seed),
        # only when on, so that the key of collections made before the option existed still matches
        **({"handover": True} if c.get("handover") else {}),
        **({"render_every": run.render_every()} if run.render_every() > 1 else {}),
        **({"render_sizes": list(run.render_sizes())} if run.render_sizes() else {}),
    }
    return Stage("collect demonstrations", run.folder / "data", settings)


def collect_demonstrations(run: Run, stage: Stage) -> dict[str, Any]:
    """The collection stage, cached; an interrupted attempt continues its dataset from the next job
    (``collect(resume=True)``), since collection is the longest stage after training."""
    return stage.run(lambda: run_collect(run, stage), resumable=True)


def run_collect(run: Run, stage: Stage) -> dict[str, Any]:
    from eval.collection.collect import CollectConfig, collect

    c, views = run.cfg.collect, run.views()
    if c.get("dataset"):  # demonstrations collected before (e.g. `emu3-vla collect`, larger frames)
        root = Path(c.dataset).resolve()
        report_path = root.parent / "collect_report.json"
        report = json.loads(report_path.read_text()) if report_path.is_file() else {}
        report.pop("episode_list", None)
        return {"episodes": report.get("episodes"), "lerobot_root": str(root), "report": report}
    report = collect(
        CollectConfig(
            out=stage.folder / "collect",
            tasks=run.tasks,
            episodes_per_task=int(c.episodes_per_task),
            chain_fraction=float(c.chain_fraction),
            workers=int(run.cfg.workers),
            seed=int(run.cfg.seed),
            static_size=views["static"],
            gripper_size=views["gripper"],
            noise=float(c.noise),
            noise_kind=str(c.noise_kind),
            labels=str(c.labels),
            handover=bool(c.get("handover", False)),
            render_every=run.render_every(),
            render_sizes=run.render_sizes(),
            resume=True,  # an interrupted attempt continues from its next job
            overwrite=True,  # what cannot be continued starts over
        )
    ).to_json()
    report.pop("episode_list", None)
    return {"episodes": report["episodes"], "lerobot_root": report["lerobot_root"], "report": report}


def fast_stage(run: Run, upstream: Stage) -> Stage:
    t = run.cfg.train
    settings = {"scale": float(t.fast.scale), "vocab_size": int(t.fast.vocab_size), "chunk": int(t.data.chunk_steps)}
    return Stage("fit FAST", run.folder / "fast", settings, [upstream])


def run_fast(run: Run, stage: Stage) -> dict[str, Any]:
    from action_tokenizer import FastTokenizer
    from emu3_vla.training.data_prep import all_chunks, open_source

    s = stage.settings
    chunks = all_chunks(open_source(run.cfg.train), s["chunk"])
    tok = FastTokenizer.fit(chunks, scale=s["scale"], vocab_size=s["vocab_size"])
    tok.save(stage.folder / "tokenizer")
    report = tok.encode_with_report(chunks[:: max(len(chunks) // 2000, 1)])
    lengths = [len(ids) for ids in report.ids]
    return {
        "chunks": len(chunks),
        "mean_tokens_per_chunk": sum(lengths) / len(lengths),
        "clamped_chunks": int(report.num_clamped_chunks),
        "checked_chunks": len(lengths),
    }


def vq_stage(run: Run, upstream: Stage) -> Stage:
    return Stage("train VQ tokenizer", run.folder / "vq", config_settings(run.cfg.vq), [upstream])


def run_vq(run: Run, stage: Stage) -> dict[str, Any]:
    from emu3_vla.training.cli import train_vq

    vq_cfg = OmegaConf.create(OmegaConf.to_container(run.cfg.vq, resolve=True))
    vq_cfg.out = str(stage.folder)
    return train_vq(vq_cfg)


# -------------------------------------------------------------------------------- training stage
def train_stage(run: Run, upstream: list[Stage]) -> tuple[Stage, DictConfig]:
    train_cfg = OmegaConf.create(OmegaConf.to_container(run.cfg.train, resolve=True))
    train_cfg.run_dir = str(run.folder / f"train_{run.tag}")
    stage = Stage(f"train VLA ({run.tag})", Path(train_cfg.run_dir), config_settings(train_cfg), upstream)
    return stage, train_cfg


def run_train(train_cfg: DictConfig) -> dict[str, Any]:
    from emu3_vla.training.trainer import train

    result = train(train_cfg)
    last = next((m for m in reversed(result.metrics) if "loss" in m), {})
    return {
        "checkpoint": str(result.final_checkpoint),
        "steps": result.steps,
        "final_loss": last.get("loss"),
        "final_action_acc": last.get("action_acc"),
    }


# ------------------------------------------------------------------------------ evaluation stages
def eval_settings(run: Run, policy: str, out: Path, videos: int):
    from eval.evaluate import EvalSettings

    e = run.cfg.eval
    return EvalSettings(
        policy=policy,
        out=out,
        decoder=None if policy == "random" else str(e.decoder),
        videos=videos,
        execute_steps=None if policy == "random" else e.get("execute_steps"),
        num_envs=int(e.envs),
        workers=int(run.cfg.workers),
        seed=int(run.cfg.seed),
        progress=True,
        device=run.device,
    )


def evaluate_suite(
    run: Run, trained: Stage, checkpoint: Path, name: str, folder: str, tasks: list[str], per_task: int, videos: int
) -> dict[str, Any]:
    from eval.evaluate import evaluate_tasks

    e = run.cfg.eval
    stage = Stage(
        f"{name} ({run.tag})",
        run.folder / f"eval_{run.tag}" / folder,
        {"per_task": per_task, "tasks": tasks, "decoder": str(e.decoder), "execute_steps": e.get("execute_steps")},
        [trained],
    )
    settings = eval_settings(run, str(checkpoint), stage.folder, videos)
    return stage.run(lambda: evaluate_tasks(settings, tasks=tasks, per_task=per_task), resumable=True)


def evaluate_standard_chains(
    run: Run, trained: Stage, checkpoint: Path, folder: Path, chains: int, videos: int, name: str
) -> dict[str, Any]:
    from eval.evaluate import evaluate_chains

    e = run.cfg.eval
    stage = Stage(
        name,
        folder,
        {
            "chains": chains,
            "decoder": str(e.decoder),
            "execute_steps": e.get("execute_steps"),
            "policy": checkpoint.name,
        },
        [trained],
    )
    settings = eval_settings(run, str(checkpoint), stage.folder, videos)
    return stage.run(lambda: evaluate_chains(settings, num_chains=chains), resumable=True)


def learning_curve(run: Run, trained: Stage, final: dict[str, Any]) -> dict[str, Any]:
    """Average length and SR@1 of every kept checkpoint on the same first ``eval.curve_chains`` chains.

    ``trained`` is the main training stage, whose folder holds the checkpoints (not an on-policy
    fine-tune after it): a checkpoint's point depends on that stage alone, so adding a round to a
    finished run keeps the points it already evaluated (measured: 5 of them, about 5 min on calvin34)."""
    from eval.plots import learning_curve_plot

    n = int(run.cfg.eval.curve_chains)
    train_dir = trained.folder
    points = []
    steps = sorted(int(p.name.split("_")[1]) for p in (train_dir / "checkpoints").glob("step_*") if p.is_dir())
    for step in steps:
        if final and step == final["step"]:  # the final model's first chains were evaluated already
            continue
        folder = run.folder / f"eval_{run.tag}" / "curve" / f"step_{step:07d}"
        m = evaluate_standard_chains(
            run, trained, train_dir / "checkpoints" / f"step_{step:07d}" / "model", folder, n, 0, f"curve: step {step}"
        )
        points.append({"step": step, "chains": m.get("chains"), "avg_len": m.get("avg_len"), "sr@1": m.get("sr@1")})
    if final:
        points.append(
            {"step": final["step"], "chains": final["chains"], "avg_len": final["avg_len"], "sr@1": final["sr@1"]}
        )
    points = sorted({p["step"]: p for p in points}.values(), key=lambda p: p["step"])
    png = run.folder / ("learning_curve.png" if run.tag == "main" else f"learning_curve_{run.tag}.png")
    learning_curve_plot(points, png, title=f"{n} standard chains per checkpoint")
    return {"chains": n, "points": points, "png": str(png)}


# ------------------------------------------------------------------------------------------- main
def main(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume) the demo described by ``cfg`` (the composed ``demo`` config)."""
    from envs import task_names
    from eval.demo.generation import generation_stage
    from eval.demo.report import write_report

    t_start = time.perf_counter()
    run = Run.create(cfg)
    run.folder.mkdir(parents=True, exist_ok=True)
    (run.folder / "demo_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    timings: dict[str, float] = {}

    def timed(name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[name] = round(time.perf_counter() - t0, 1)
        return out

    collect = collect_stage(run)
    collected = timed("collect", collect_demonstrations, run, collect)
    cfg.train.data.root = str(collected["lerobot_root"])
    fast = fast_stage(run, collect)
    fast_info = timed("fast", fast.run, lambda: run_fast(run, fast))
    vq = vq_stage(run, collect)
    vq_report = timed("vq", vq.run, lambda: run_vq(run, vq))

    cfg.train.model.vq = str(vq.folder)
    cfg.train.data.cache_dir = str(run.folder / "token_cache")
    cfg.train.data.action_tokenizer = None if cfg.train.action_tokens == "binning" else str(fast.folder / "tokenizer")
    trained_stage, train_cfg = train_stage(run, [collect, fast, vq])
    main_stage = trained_stage  # the learning curve's checkpoints are this run's, whatever follows it
    trained = timed("train", trained_stage.run, lambda: run_train(train_cfg), resumable=True)
    checkpoint = Path(trained["checkpoint"])
    final_step = int(trained["steps"])
    on_policy: dict[str, Any] = {}
    if int(cfg.on_policy.chains) > 0:  # a DAgger-style round: the evaluations below use its weights
        from eval.demo import on_policy as op

        op_collect = op.collect_stage(run, trained_stage)  # chains over the trained tasks only
        on_policy["data"] = timed(
            "on-policy data", op_collect.run, lambda: op.run_collect(run, op_collect, checkpoint), resumable=True
        )
        if on_policy["data"]["episodes"]:
            roots = [str(collected["lerobot_root"]), on_policy["data"]["lerobot_root"]]
            trained_stage, train_cfg = op.finetune_stage(run, [trained_stage, op_collect], train_cfg, checkpoint, roots)
            on_policy["training"] = timed(
                "on-policy fine-tune", trained_stage.run, lambda: run_train(train_cfg), resumable=True
            )
            checkpoint = Path(on_policy["training"]["checkpoint"])
            final_step += int(on_policy["training"]["steps"])
        else:
            print("[demo] on-policy round: the expert completed no subtask from the policy's states; no fine-tune")

    e = cfg.eval
    suite = timed(
        "single tasks",
        evaluate_suite,
        run,
        trained_stage,
        checkpoint,
        "evaluate single tasks",
        "tasks",
        run.tasks,
        int(e.per_task),
        int(e.get("task_videos") or e.videos),
    )
    chains: dict[str, Any] = {}
    if int(e.chains) > 0:
        chains = timed(
            "chains",
            evaluate_standard_chains,
            run,
            trained_stage,
            checkpoint,
            run.folder / f"eval_{run.tag}" / "chains",
            int(e.chains),
            int(e.videos),
            f"evaluate {int(e.chains)} chains ({run.tag})",
        )
    curve: dict[str, Any] = {}
    if int(e.get("curve_chains", 0)) > 0 and chains:
        final = {
            "step": final_step,
            **first_chains(run.folder / f"eval_{run.tag}" / "chains", int(e.curve_chains)),
        }
        curve = timed("learning curve", learning_curve, run, main_stage, final)
    untrained: dict[str, Any] = {}
    others = [t for t in task_names() if t not in set(run.tasks)]
    if int(e.get("untrained_per_task", 0)) > 0 and others:
        untrained = timed(
            "untrained tasks",
            evaluate_suite,
            run,
            trained_stage,
            checkpoint,
            "evaluate untrained tasks",
            "untrained",
            others,
            int(e.untrained_per_task),
            0,
        )
    random: dict[str, Any] = {}
    if bool(e.random_baseline):
        from eval.evaluate import evaluate_tasks

        per_task = int(e.get("random_per_task") or e.per_task)
        rnd = Stage(
            "evaluate random policy", run.folder / "eval_random" / "tasks", {"per_task": per_task, "tasks": run.tasks}
        )
        settings = eval_settings(run, "random", rnd.folder, 0)
        random = timed(
            "random",
            rnd.run,
            lambda: evaluate_tasks(settings, tasks=run.tasks, per_task=per_task),
            resumable=True,
        )
    generation = timed("generation", generation_stage, run, trained_stage, train_cfg, checkpoint)
    return write_report(
        run,
        {
            "data": collected,
            "fast": fast_info,
            "vq": vq_report,
            "training": trained,
            "on_policy": on_policy,
            "suite": suite,
            "chains": chains,
            "curve": curve,
            "untrained": untrained,
            "random": random,
            "generation": generation,
            "stage_seconds": timings,
            "seconds": time.perf_counter() - t_start,
        },
    )


def first_chains(folder: Path, n: int) -> dict[str, Any]:
    """CALVIN's metrics over the first ``n`` standard chains of an evaluation folder (a curve point)."""
    from eval.results import metrics, read_folder

    return metrics([r for r in read_folder(folder) if r.chain_index < n])


def copy_if_exists(source: Path, target: Path) -> None:
    if source.is_file():
        shutil.copyfile(source, target)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
