"""The demo's results: ``results.json``, the plots and videos it collects, the printed summary.

One report per variant (``results.json`` for the recipe as it is, ``results_<ablation>.json`` for an
ablation), with a ``comparison`` of every variant evaluated in the same run folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

MEASURED = ("chains", "sr@1", "sr@2", "sr@3", "sr@4", "sr@5", "avg_len", "malformed_decodes")


def task_table(
    trained: list[str], suite: dict[str, Any], untrained: dict[str, Any], random: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """One row per CALVIN task (all 34, in CALVIN's order): whether the demo trained on it, the
    policy's success rate and episode count, and the random policy's rate where it was measured."""
    from envs import task_family, task_names

    rows: dict[str, dict[str, Any]] = {}
    for task in task_names():
        measured = (suite.get("per_task") or {}).get(task) or (untrained.get("per_task") or {}).get(task)
        rnd = ((random or {}).get("per_task") or {}).get(task)
        rows[task] = {
            "family": task_family(task),
            "trained": task in trained,
            "success_rate": None if measured is None else measured["success_rate"],
            "episodes": 0 if measured is None else measured["attempts"],
            "random_success_rate": None if rnd is None else rnd["success_rate"],
        }
    return rows


def family_table(table: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean success rate per task family over the measured tasks (articulated, lift, place, stack, push, rotate)."""
    from envs import TASK_FAMILIES

    out: dict[str, dict[str, Any]] = {}
    for family in TASK_FAMILIES:
        rates = [r["success_rate"] for r in table.values() if r["family"] == family and r["success_rate"] is not None]
        if rates:
            out[family] = {"tasks": len(rates), "success_rate": sum(rates) / len(rates)}
    return out


def _sr_rows(report: dict[str, Any]) -> dict[str, Any]:
    """``{variant: SR@1}`` of one report (plus ``random`` when it measured the random policy)."""
    tag = "main" if report.get("ablation") in ("none", "main", None) else str(report.get("ablation"))
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


def write_report(run: Any, parts: dict[str, Any]) -> dict[str, Any]:
    """``results.json`` (or ``results_<tag>.json``), plots and videos of one demo run; prints the summary."""
    from eval.plots import success_per_task_compare

    tag, folder = run.tag, run.folder
    suite, untrained, random, chains = parts["suite"], parts["untrained"], parts["random"], parts["chains"]
    table = task_table(run.tasks, suite, untrained, random)
    report = {
        "recipe": str(run.cfg.get("recipe_name", "")),
        "ablation": "none" if tag == "main" else tag,
        "tasks": run.tasks,
        "seconds": round(parts["seconds"], 1),
        "stage_seconds": parts["stage_seconds"],
        "data": parts["data"],
        "fast": parts["fast"],
        "vq": parts["vq"],
        "training": parts["training"],
        "on_policy": parts.get("on_policy") or None,
        "single_task": {
            "sr@1": suite.get("sr@1"),
            "per_task": suite.get("per_task"),
            "per_family": family_table({t: r for t, r in table.items() if r["trained"]}),
            "failures": suite.get("failures"),
            "malformed_decodes": suite.get("malformed_decodes"),
        },
        "untrained_tasks": {"sr@1": untrained.get("sr@1"), "per_task": untrained.get("per_task")}
        if untrained
        else None,
        "random_single_task": {"sr@1": random.get("sr@1"), "per_task": random.get("per_task")} if random else None,
        "table": table,
        "chains": {k: chains.get(k) for k in MEASURED} if chains else None,
        "learning_curve": parts["curve"] or None,
        "generation": parts["generation"] or None,
    }
    name = "results.json" if tag == "main" else f"results_{tag}.json"
    report["comparison"] = {**compare_runs(folder, skip=name), **_sr_rows(report)}
    (folder / name).write_text(json.dumps(report, indent=2, default=str) + "\n")
    suffix = "" if tag == "main" else f"_{tag}"
    loss_png = Path(parts["training"]["checkpoint"]).parents[2] / "loss.png"
    if loss_png.is_file():
        shutil.copyfile(loss_png, folder / f"loss{suffix}.png")
    bars = {tag: suite.get("per_task", {})}
    if random:
        bars["random"] = random.get("per_task", {})
    success_per_task_compare(bars, folder / f"success_per_task{suffix}.png")
    videos = folder / "videos"
    videos.mkdir(exist_ok=True)
    for kind in ("tasks", "chains"):
        source = folder / f"eval_{tag}" / kind / "videos"
        for mp4 in sorted(source.glob("*.mp4")) if source.is_dir() else []:
            shutil.copyfile(mp4, videos / f"{tag}_{kind}_{mp4.name}")
    print_summary(report, folder, name)
    return report


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f}%"


def print_summary(report: dict[str, Any], run_dir: Path, name: str) -> None:
    suite = report["single_task"]
    print("\n=== emu3-vla demo ===")
    tokens = report["fast"].get("mean_tokens_per_chunk", 0)
    psnr = report["vq"].get("psnr_static", float("nan"))
    print(
        f"data: {report['data'].get('episodes')} expert episodes; FAST {tokens:.1f} tokens/chunk; "
        f"VQ PSNR static {psnr:.1f} dB"
    )
    training = report["training"]
    print(
        f"training: {training.get('steps')} steps, final loss {training.get('final_loss')}, "
        f"action token accuracy {training.get('final_action_acc')}"
    )
    on_policy = report.get("on_policy") or {}
    if on_policy:
        data, tuned = on_policy["data"], on_policy.get("training") or {}
        print(
            f"on-policy round: {data.get('episodes')} expert episodes from the policy's states "
            f"{data.get('episodes_by_kind')}, then {tuned.get('steps', 0)} fine-tuning steps (evaluated below)"
        )
    rnd = report.get("random_single_task") or {}
    print(f"{'task':28s} {'family':>11s} {'trained':>7s} {'policy':>8s} {'random':>8s}")
    for task, row in report["table"].items():
        if row["success_rate"] is None:
            continue
        flag = "yes" if row["trained"] else ""
        print(
            f"{task:28s} {row['family']:>11s} {flag:>7s} {_pct(row['success_rate']):>8s} "
            f"{_pct(row['random_success_rate']):>8s}"
        )
    families = suite.get("per_family") or {}
    if len(families) > 1:
        print("per family: " + ", ".join(f"{f} {_pct(v['success_rate'])}" for f, v in families.items()))
    print(
        f"single-task SR@1 over the trained tasks: {100 * (suite.get('sr@1') or 0):.1f}%"
        + (f" (random: {100 * (rnd.get('sr@1') or 0):.1f}%)" if rnd else "")
    )
    if report.get("untrained_tasks"):
        print(f"untrained tasks SR@1: {100 * (report['untrained_tasks'].get('sr@1') or 0):.1f}%")
    failures = suite.get("failures") or {}
    if failures.get("counts"):
        print("block-task failures: " + ", ".join(f"{k} {v}" for k, v in failures["counts"].items()))
    gen = report.get("generation") or {}
    i2t = gen.get("i2t")
    if i2t:
        b, a = i2t["before_tuning"], i2t["after_tuning"]
        print(
            f"image-to-text on {a['frames']} held-out frames names the task: {100 * a['accuracy']:.0f}% after "
            f"caption tuning ({100 * b['accuracy']:.0f}% before; chance "
            f"{100 * max(a['chance_uniform'], a['chance_majority']):.0f}%)"
        )
    for note in gen.get("notes", []):
        print(f"generation: {note}")
    if len(report.get("comparison") or {}) > 1:
        print(
            "SR@1 over the trained tasks: "
            + ", ".join(f"{k} {100 * v:.1f}%" for k, v in report["comparison"].items() if v is not None)
        )
    if report.get("chains"):
        c = report["chains"]
        srs = " ".join(f"{_pct(c[f'sr@{i}'])}" for i in range(1, 6))
        print(f"CALVIN chains: {c['chains']} chains, avg len {c['avg_len']:.2f}, SR@1..5 {srs}")
    curve = report.get("learning_curve") or {}
    if curve.get("points"):
        print(
            f"learning curve ({curve['chains']} chains): "
            + ", ".join(f"step {p['step']}: {p['avg_len']:.2f}" for p in curve["points"])
        )
    print(f"files: {run_dir / name}, loss.png, success_per_task.png, videos/, eval_*/*/report.html")
    print(f"total {report['seconds'] / 60:.1f} min")
