"""Plots of evaluation results (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def success_by_position(metrics: dict[str, Any], out: str | Path, title: str = "") -> Path:
    """SR@1..5: the share of chains that completed at least i subtasks."""
    n = len(metrics["by_position"])
    values = [100 * metrics[f"sr@{i}"] for i in range(1, n + 1)]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bars = ax.bar(range(1, n + 1), values, color="#3b7dd8")
    ax.bar_label(bars, fmt="%.0f%%")
    ax.set_xlabel("subtasks completed in a row (chain position)")
    ax.set_ylabel("chains (%)")
    ax.set_ylim(0, 105)
    ax.set_title(title or f"avg len {metrics['avg_len']:.2f} over {metrics['chains']} chains")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def success_per_task(per_task: dict[str, dict[str, float]], out: str | Path, title: str = "") -> Path:
    names = sorted(per_task)
    rates = [100 * per_task[t]["success_rate"] for t in names]
    fig, ax = plt.subplots(figsize=(7, 0.22 * len(names) + 1.2))
    ax.barh(range(len(names)), rates, color=["#2e9e4f" if r >= 60 else "#d8843b" for r in rates])
    ax.set_yticks(range(len(names)), labels=names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("success (%)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def success_per_task_compare(rows: dict[str, dict[str, dict[str, float]]], out: str | Path, title: str = "") -> Path:
    """Grouped bars: success of each task for several policies (e.g. the trained VLA vs. random)."""
    import numpy as np

    names = sorted({t for per in rows.values() for t in per})
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(names) + 2), 3.6))
    width = 0.8 / max(len(rows), 1)
    for k, (label, per) in enumerate(rows.items()):
        vals = [100 * per.get(t, {}).get("success_rate", 0.0) for t in names]
        ax.bar(np.arange(len(names)) + k * width, vals, width, label=label)
    ax.set_xticks(
        np.arange(len(names)) + width * (len(rows) - 1) / 2, labels=names, rotation=40, ha="right", fontsize=7
    )
    ax.set_ylim(0, 105)
    ax.set_ylabel("success (%)")
    ax.legend()
    ax.set_title(title or "single-task success")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)


def learning_curve_plot(points: list[dict], out: str | Path, title: str = "") -> Path:
    """Average length (left axis) and SR@1 (right axis) against training steps: does more compute pay?"""
    steps = [p["step"] for p in points]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(steps, [p["avg_len"] for p in points], "o-", color="#1f5fa8", label="average length")
    ax.set_xlabel("training step")
    ax.set_ylabel("average length (of 5)", color="#1f5fa8")
    ax.set_ylim(bottom=0)
    right = ax.twinx()
    right.plot(steps, [100 * p["sr@1"] for p in points], "s--", color="#d8843b", label="SR@1")
    right.set_ylabel("SR@1 (%)", color="#d8843b")
    right.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return Path(out)
