"""``emu3-vla demo``: the product's main job on CPU defaults, one command, every stage cached.

collect expert demonstrations -> fit FAST -> train the tiny VQ tokenizer -> build the token cache
-> train the tiny VLA -> evaluate it in closed loop (single-task suite over the trained tasks and
CALVIN chains) next to a random policy -> write ``results.json``, ``loss.png``,
``success_per_task.png`` and rollout mp4s into the run folder and print a summary.

Every stage writes ``stage.json`` with a key that hashes its settings and the keys of the stages it
reads. A rerun skips each stage whose key still matches (re-running is cheap), redoes a stage whose
settings changed (and therefore everything after it), and resumes a stage that was interrupted where
the stage supports it (training resumes from its last checkpoint, evaluation from its chain log).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class Stage:
    """A cached step of the pipeline: ``folder`` holds its output and ``stage.json`` its key."""

    def __init__(self, name: str, folder: Path, settings: dict[str, Any], upstream: list[Stage] = ()) -> None:
        self.name = name
        self.folder = folder
        payload = json.dumps({"settings": settings, "upstream": [u.key for u in upstream]}, sort_keys=True)
        self.key = hashlib.sha256(payload.encode()).hexdigest()[:16]
        self.settings = settings

    @property
    def marker(self) -> Path:
        return self.folder / "stage.json"

    def done(self) -> bool:
        if not self.marker.is_file():
            return False
        try:
            return json.loads(self.marker.read_text()).get("key") == self.key
        except json.JSONDecodeError:
            return False

    def run(self, work: Callable[[], dict[str, Any] | None], *, resumable: bool = False) -> dict[str, Any]:
        """Run ``work`` unless cached; a stale folder (other key) is wiped first unless ``resumable``
        says the stage continues its own partial output (only when the key is the one it had)."""
        if self.done():
            info = json.loads(self.marker.read_text())
            print(f"[demo] {self.name}: cached ({self.folder})")
            return info.get("result", {})
        started = self.folder / "stage.started.json"
        same_attempt = started.is_file() and json.loads(started.read_text()).get("key") == self.key
        if self.folder.exists() and not (resumable and same_attempt):
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        started.write_text(json.dumps({"key": self.key}) + "\n")
        print(f"[demo] {self.name}: running -> {self.folder}")
        t0 = time.perf_counter()
        result = work() or {}
        seconds = round(time.perf_counter() - t0, 1)
        self.marker.write_text(
            json.dumps(
                {"key": self.key, "settings": self.settings, "seconds": seconds, "result": result},
                indent=2,
                default=str,
            )
            + "\n"
        )
        print(f"[demo] {self.name}: done in {seconds:.0f} s")
        return result


def _views(cfg: DictConfig) -> dict[str, int]:
    return {"static": int(cfg.views.static), "gripper": int(cfg.views.gripper)}


def stage_collect(cfg: DictConfig, run_dir: Path) -> Stage:
    settings = {
        "tasks": list(cfg.tasks),
        "episodes_per_task": int(cfg.collect.episodes_per_task),
        "views": _views(cfg),
        "noise": float(cfg.collect.noise),
        "noise_kind": str(cfg.collect.noise_kind),
        "labels": str(cfg.collect.labels),
        "seed": int(cfg.seed),
    }
    return Stage("collect demonstrations", run_dir / "data", settings)


def run_collect(cfg: DictConfig, stage: Stage) -> dict[str, Any]:
    from eval.collect import CollectConfig, collect

    report = collect(
        CollectConfig(
            out=stage.folder / "collect",
            tasks=list(cfg.tasks),
            episodes_per_task=int(cfg.collect.episodes_per_task),
            workers=int(cfg.workers),
            seed=int(cfg.seed),
            static_size=int(cfg.views.static),
            gripper_size=int(cfg.views.gripper),
            noise=float(cfg.collect.noise),
            noise_kind=str(cfg.collect.noise_kind),
            labels=str(cfg.collect.labels),
            overwrite=True,
        )
    ).to_json()
    report.pop("episode_list", None)
    return {"episodes": report["episodes"], "lerobot_root": report["lerobot_root"], "report": report}


def train_overrides(cfg: DictConfig, run_dir: Path, data: Path, fast: Path, vq: Path, out: Path) -> list[str]:
    """The demo's training run as overrides of ``emu3_vla/configs/train.yaml``."""
    t = cfg.train
    values: dict[str, Any] = {
        "model": str(cfg.model),
        "model.vq": vq,
        "data.root": data,
        "data.action_tokenizer": fast,
        "data.cache_dir": run_dir / "token_cache",
        "data.frame_stride": int(t.frame_stride),
        "data.cameras.static.size": int(cfg.views.static),
        "data.cameras.gripper.size": int(cfg.views.gripper),
        "run_dir": out,
        "seed": int(cfg.seed),
        "steps": int(t.steps),
        "batch_size": int(t.batch_size),
        "optim.lr": float(t.lr),
        "schedule.warmup_steps": int(t.warmup_steps),
        "checkpoint.every": int(t.checkpoint_every),
        "ema.decay": float(t.get("ema_decay", 0.0)),
        "precision": str(t.get("precision", "auto")),
        "sequence.state_dims": "[" + ",".join(str(int(d)) for d in (t.get("state_dims") or ())) + "]",
        "wandb.mode": str(cfg.get("wandb", "disabled")),
        "log_every": 25,
    }
    if t.get("vision_weight") is not None:
        values["loss.vision_weight"] = float(t.vision_weight)
    if t.get("action_tokens") is not None:
        values["action_tokens"] = str(t.action_tokens)
        if str(t.action_tokens) == "binning":
            values["data.action_tokenizer"] = None
    ablation = str(cfg.ablation)
    if ablation == "no_vision_loss":
        values["loss.vision_weight"] = 0.0
    elif ablation == "vision_loss":
        values["loss.vision_weight"] = 0.5
    elif ablation == "one_frame":
        values["sequence.frames"] = 1
    elif ablation == "binning":
        values["action_tokens"] = "binning"
        values["data.action_tokenizer"] = None
    elif ablation == "blind":
        values["sequence.blind"] = "true"
    elif ablation != "none":
        raise ValueError(
            f"ablation must be none, vision_loss, no_vision_loss, one_frame, binning or blind; got {ablation!r}"
        )
    return [f"{k}={'null' if v is None else v}" for k, v in values.items()]


def run_generation(cfg: DictConfig, train_cfg: DictConfig, checkpoint: Path, out: Path) -> dict[str, Any]:
    """Emu3 is one model for every direction: ask the trained VLA for text and images.

    * image -> text: its captions of held-out episodes' frames before and after a short caption
      tuning on the training episodes (the VLA never had a loss on text), against chance;
    * text -> image: one static-camera frame generated from an instruction, decoded to ``t2i.png``.
    """
    from emu3_vla.data.token_cache import CacheSettings, TokenCache
    from emu3_vla.generation import text_to_image
    from emu3_vla.generation.caption_tuning import caption_examples, caption_report, score_examples, tune_captions
    from emu3_vla.generation.media import write_png
    from emu3_vla.training import data_prep
    from emu3_vla.vla import VLAModel
    from envs import task_instructions

    g = cfg.generation
    vla = VLAModel.load(checkpoint)
    vision = vla.vision()
    cache = TokenCache.build(
        data_prep.open_source(train_cfg),
        vision,
        vla.action_tokenizer,
        Path(train_cfg.data.cache_dir),
        settings=CacheSettings(chunk=vla.spec.chunk, frame_stride=int(train_cfg.data.frame_stride)),
        views=vla.spec.views,
        progress=False,
    )
    tasks = sorted(set(cfg.tasks))
    training, validation = task_instructions("training"), task_instructions("validation")
    task_of = {text: task for table in (training, validation) for task, texts in table.items() for text in texts}
    train, test = caption_examples(
        cache, frames_per_episode=int(g.frames_per_episode), seed=int(cfg.seed), task_of_instruction=task_of
    )
    train = [ex for ex in train if ex.task in tasks]
    test = [ex for ex in test if ex.task in tasks]
    phrases = {t: texts for t, texts in training.items() if t in tasks}

    view = vla.views["static"]
    prompt = instructions_for_eval_text(str(g.t2i_task))
    height, width = view.height // vision.spatial_factor, view.width // vision.spatial_factor
    image = text_to_image(vla.bundle, prompt, height=height, width=width, seed=0)
    pixels = vision.decode_images(image.images).numpy()[0]
    write_png(pixels, out / "t2i.png")

    before = score_examples(vla.bundle, test, tasks=tasks, phrases=phrases)
    losses = tune_captions(
        vla.bundle, train, steps=int(g.caption_steps), batch_size=int(g.batch_size), lr=float(g.lr), seed=int(cfg.seed)
    )
    after = score_examples(vla.bundle, test, tasks=tasks, phrases=phrases)
    report = {"t2i": {"prompt": prompt, "png": str(out / "t2i.png")}, "i2t": caption_report(before, after, losses)}
    (out / "generation.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def instructions_for_eval_text(task: str) -> str:
    from eval.evaluate import instructions_for_eval

    texts = instructions_for_eval()
    if task not in texts:
        raise ValueError(f"generation.t2i_task {task!r} is not a CALVIN task")
    return texts[task]


def main(cfg: DictConfig) -> dict[str, Any]:
    """Run (or resume) the demo described by ``cfg`` (the composed ``demo`` config)."""
    from action_tokenizer import FastTokenizer
    from emu3_vla.data.mapping import DataMapping
    from emu3_vla.data.sources import open_dataset
    from emu3_vla.training.config import load_config
    from emu3_vla.training.data_prep import all_chunks
    from emu3_vla.training.trainer import train
    from envs import task_names
    from eval.evaluate import EvalSettings, evaluate_chains, evaluate_tasks

    t_start = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "demo_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    collect = stage_collect(cfg, run_dir)
    collected = collect.run(lambda: run_collect(cfg, collect))
    data = Path(collected["lerobot_root"])
    mapping = DataMapping.calvin(static=int(cfg.views.static), gripper=int(cfg.views.gripper))

    fast = Stage("fit FAST", run_dir / "fast", {"scale": 10.0, "chunk": 10}, [collect])

    def fit_fast() -> dict[str, Any]:
        chunks = all_chunks(open_dataset(data, mapping), 10)
        tok = FastTokenizer.fit(chunks, scale=10.0)
        tok.save(fast.folder / "tokenizer")
        lengths = [len(ids) for ids in tok.encode(chunks[:: max(len(chunks) // 2000, 1)])]
        return {"chunks": len(chunks), "mean_tokens_per_chunk": sum(lengths) / len(lengths)}

    fast_info = fast.run(fit_fast)

    vq_cfg = OmegaConf.to_container(cfg.vq, resolve=True)
    vq = Stage(
        "train VQ tokenizer", run_dir / "vq", {**vq_cfg, "seed": int(cfg.seed), "model": str(cfg.model)}, [collect]
    )

    def train_vq() -> dict[str, Any]:
        from emu3_vla.cli import main as cli

        overrides = [
            f"data.root={data}",
            f"out={vq.folder}",
            f"data.cameras.static.size={cfg.views.static}",
            f"data.cameras.gripper.size={cfg.views.gripper}",
            f"seed={cfg.seed}",
            f"preset={cfg.model}",
            f"device={cfg.device}",
            *(f"{k}={v}" for k, v in vq_cfg.items()),
        ]
        if cli(["train-vq", *overrides]) != 0:
            raise RuntimeError("train-vq failed")
        return json.loads((vq.folder / "report.json").read_text())

    vq_report = vq.run(train_vq)

    ablation = str(cfg.ablation)
    tag = "main" if ablation == "none" else ablation
    overrides = train_overrides(cfg, run_dir, data, fast.folder / "tokenizer", vq.folder, run_dir / f"train_{tag}")
    train_stage = Stage(f"train VLA ({tag})", run_dir / f"train_{tag}", {"overrides": overrides}, [collect, fast, vq])

    def train_vla() -> dict[str, Any]:
        result = train(load_config("train", overrides))
        last = result.metrics[-1] if result.metrics else {}
        return {
            "checkpoint": str(result.final_checkpoint),
            "final_loss": last.get("loss"),
            "final_action_acc": last.get("action_acc"),
        }

    trained = train_stage.run(train_vla, resumable=True)
    checkpoint = Path(trained["checkpoint"])

    e = cfg.eval
    device = str(cfg.device)
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    execute = e.get("execute_steps")
    policy_settings = {} if execute is None else {"execute_steps": int(execute)}
    eval_common = {
        "num_envs": int(e.envs),
        "workers": int(cfg.workers),
        "seed": int(cfg.seed),
        "progress": True,
        "device": device,
    }

    def policy_eval(out: Path, videos: int) -> EvalSettings:
        """Evaluation settings for the trained VLA (writing to ``out``)."""
        return EvalSettings(
            policy=str(checkpoint),
            out=out,
            decoder=str(e.decoder),
            videos=videos,
            execute_steps=execute,
            **eval_common,
        )

    def task_stage(name: str, folder: str, tasks: list[str], per_task: int, videos: int) -> dict[str, Any]:
        stage = Stage(
            f"{name} ({tag})",
            run_dir / f"eval_{tag}" / folder,
            {"per_task": per_task, "tasks": tasks, "decoder": str(e.decoder), **policy_settings},
            [train_stage],
        )
        return stage.run(
            lambda: evaluate_tasks(policy_eval(stage.folder, videos), tasks=tasks, per_task=per_task),
            resumable=True,
        )

    suite_result = task_stage("evaluate single tasks", "tasks", list(cfg.tasks), int(e.per_task), int(e.videos))
    chains = Stage(
        f"evaluate chains ({tag})",
        run_dir / f"eval_{tag}" / "chains",
        {"chains": int(e.chains), "decoder": str(e.decoder), **policy_settings},
        [train_stage],
    )
    chain_result = (
        chains.run(
            lambda: evaluate_chains(policy_eval(chains.folder, int(e.videos)), num_chains=int(e.chains)),
            resumable=True,
        )
        if int(e.chains) > 0
        else {}
    )
    untrained_result: dict[str, Any] = {}
    untrained_tasks = [t for t in task_names() if t not in set(cfg.tasks)]
    if int(e.get("untrained_per_task", 0)) > 0 and untrained_tasks:
        untrained_result = task_stage(
            "evaluate untrained tasks", "untrained", untrained_tasks, int(e.untrained_per_task), 0
        )
    random_result: dict[str, Any] = {}
    if bool(e.random_baseline):
        rnd = Stage(
            "evaluate random policy",
            run_dir / "eval_random" / "tasks",
            {"per_task": int(e.per_task), "tasks": list(cfg.tasks)},
            [],
        )
        random_result = rnd.run(
            lambda: evaluate_tasks(
                EvalSettings(policy="random", out=rnd.folder, **eval_common),
                tasks=list(cfg.tasks),
                per_task=int(e.per_task),
            ),
            resumable=True,
        )
    generation: dict[str, Any] = {}
    if int(cfg.generation.caption_steps) > 0:
        gen = Stage(
            f"generate text and images ({tag})",
            run_dir / f"generation_{tag}",
            OmegaConf.to_container(cfg.generation, resolve=True),
            [train_stage],
        )
        generation = gen.run(lambda: run_generation(cfg, load_config("train", overrides), checkpoint, gen.folder))
        if (gen.folder / "t2i.png").is_file():
            shutil.copyfile(gen.folder / "t2i.png", run_dir / ("t2i.png" if tag == "main" else f"t2i_{tag}.png"))
    return write_report(
        cfg,
        run_dir,
        tag,
        collected,
        fast_info,
        vq_report,
        trained,
        suite_result,
        chain_result,
        random_result,
        untrained_result,
        generation,
        time.perf_counter() - t_start,
    )


def task_table(
    trained: list[str], suite: dict[str, Any], untrained: dict[str, Any], random: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """One row per CALVIN task (all 34, in CALVIN's order): whether the demo trained on it, the
    policy's success rate and episode count, and the random policy's rate where it was measured."""
    from envs import task_names

    rows: dict[str, dict[str, Any]] = {}
    for task in task_names():
        measured = (suite.get("per_task") or {}).get(task) or (untrained.get("per_task") or {}).get(task)
        rnd = ((random or {}).get("per_task") or {}).get(task)
        rows[task] = {
            "trained": task in trained,
            "success_rate": None if measured is None else measured["success_rate"],
            "episodes": 0 if measured is None else measured["attempts"],
            "random_success_rate": None if rnd is None else rnd["success_rate"],
        }
    return rows


def _sr_rows(report: dict[str, Any]) -> dict[str, Any]:
    """``{variant: SR@1}`` of one report (plus ``random`` when it measured the random policy)."""
    tag = "main" if report.get("ablation") == "none" else str(report.get("ablation"))
    rows = {tag: (report.get("single_task") or {}).get("sr@1")}
    if report.get("random_single_task"):
        rows["random"] = report["random_single_task"].get("sr@1")
    return rows


def compare_runs(run_dir: Path, skip: str | None = None) -> dict[str, Any]:
    """SR@1 over the trained tasks of every variant evaluated in this run folder (the main run and
    each ablation, next to the random policy), read from the ``results*.json`` files but ``skip``."""
    rows: dict[str, Any] = {}
    for path in sorted(run_dir.glob("results*.json")):
        if path.name == skip:
            continue
        try:
            rows.update(_sr_rows(json.loads(path.read_text())))
        except json.JSONDecodeError:
            continue
    return rows


def write_report(
    cfg,
    run_dir: Path,
    tag: str,
    collected,
    fast_info,
    vq_report,
    trained,
    suite,
    chains,
    random,
    untrained,
    generation,
    seconds: float,
) -> dict[str, Any]:
    from eval.plots import success_per_task_compare

    report = {
        "ablation": str(cfg.ablation),
        "tasks": list(cfg.tasks),
        "seconds": round(seconds, 1),
        "data": collected,
        "fast": fast_info,
        "vq": vq_report,
        "training": trained,
        "single_task": {
            "sr@1": suite.get("sr@1"),
            "per_task": suite.get("per_task"),
            "malformed_decodes": suite.get("malformed_decodes"),
        },
        "untrained_tasks": {"sr@1": untrained.get("sr@1"), "per_task": untrained.get("per_task")}
        if untrained
        else None,
        "random_single_task": {"sr@1": random.get("sr@1"), "per_task": random.get("per_task")} if random else None,
        "table": task_table(list(cfg.tasks), suite, untrained, random),
        "generation": generation or None,
        "chains": {
            k: chains.get(k) for k in ("chains", "sr@1", "sr@2", "sr@3", "sr@4", "sr@5", "avg_len", "malformed_decodes")
        }
        if chains
        else None,
    }
    name = "results.json" if tag == "main" else f"results_{tag}.json"
    report["comparison"] = {**compare_runs(run_dir, skip=name), **_sr_rows(report)}
    (run_dir / name).write_text(json.dumps(report, indent=2, default=str) + "\n")
    loss_png = Path(trained["checkpoint"]).parents[2] / "loss.png"
    if loss_png.is_file():
        shutil.copyfile(loss_png, run_dir / ("loss.png" if tag == "main" else f"loss_{tag}.png"))
    bars = {tag: suite.get("per_task", {})}
    if random:
        bars["random"] = random.get("per_task", {})
    success_per_task_compare(
        bars, run_dir / ("success_per_task.png" if tag == "main" else f"success_per_task_{tag}.png")
    )
    videos = run_dir / "videos"
    videos.mkdir(exist_ok=True)
    for folder in (run_dir / f"eval_{tag}" / "tasks" / "videos", run_dir / f"eval_{tag}" / "chains" / "videos"):
        for mp4 in sorted(folder.glob("*.mp4")) if folder.is_dir() else []:
            shutil.copyfile(mp4, videos / f"{tag}_{folder.parent.name}_{mp4.name}")
    print_summary(report, run_dir, name)
    return report


def print_summary(report: dict[str, Any], run_dir: Path, name: str) -> None:
    suite = report["single_task"]
    print("\n=== emu3-vla demo ===")
    tokens = report["fast"].get("mean_tokens_per_chunk", 0)
    psnr = report["vq"].get("psnr_static", float("nan"))
    print(
        f"data: {report['data'].get('episodes')} expert episodes; FAST {tokens:.1f} tokens/chunk; "
        f"VQ PSNR static {psnr:.1f} dB"
    )
    print(
        f"training: final loss {report['training'].get('final_loss')}, action token accuracy "
        f"{report['training'].get('final_action_acc')}"
    )
    rnd = report.get("random_single_task") or {}
    print(f"{'task':28s} {'trained':>7s} {'policy':>8s} {'random':>8s}")
    for task, row in report["table"].items():
        if row["success_rate"] is None:
            continue

        def pct(v: float | None) -> str:
            return "" if v is None else f"{100 * v:.0f}%"

        flag = "yes" if row["trained"] else ""
        print(f"{task:28s} {flag:>7s} {pct(row['success_rate']):>8s} {pct(row['random_success_rate']):>8s}")
    print(
        f"single-task SR@1 over the trained tasks: {100 * (suite.get('sr@1') or 0):.1f}%"
        + (f" (random: {100 * (rnd.get('sr@1') or 0):.1f}%)" if rnd else "")
    )
    if report.get("untrained_tasks"):
        print(f"untrained tasks SR@1: {100 * (report['untrained_tasks'].get('sr@1') or 0):.1f}%")
    i2t = (report.get("generation") or {}).get("i2t")
    if i2t:
        b, a = i2t["before_tuning"], i2t["after_tuning"]
        print(
            f"image-to-text on {a['frames']} held-out frames names the task: {100 * a['accuracy']:.0f}% after "
            f"caption tuning ({100 * b['accuracy']:.0f}% before; chance "
            f"{100 * max(a['chance_uniform'], a['chance_majority']):.0f}%)"
        )
    if len(report.get("comparison") or {}) > 1:
        print(
            "SR@1 over the trained tasks: "
            + ", ".join(f"{k} {100 * v:.1f}%" for k, v in report["comparison"].items() if v is not None)
        )
    if report.get("chains"):
        c = report["chains"]
        print(f"CALVIN chains: {c['chains']} chains, avg len {c['avg_len']:.2f}, SR@1 {100 * c['sr@1']:.0f}%")
    print(f"files: {run_dir / name}, {run_dir / 'loss.png'}, {run_dir / 'success_per_task.png'}, {run_dir / 'videos'}/")
    print(f"total {report['seconds'] / 60:.1f} min")
