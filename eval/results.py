"""Chain results on disk (append-only JSONL, resumable, shardable) and the CALVIN metrics.

Every finished chain is one JSON line, flushed and fsync'ed before the next chain starts, so a
killed evaluation loses at most the chain it was running. A rerun with the same output folder reads
the lines already there and skips those chains; a torn last line (killed mid-write) is dropped.
Shards (``--shard i/n``) write ``chains-<i>of<n>.jsonl`` in the same folder; :func:`merge` reads
every ``chains*.jsonl`` there, checks that no chain appears twice with different outcomes, and
computes the metrics over the union.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
NUM_SUBTASKS = 5


@dataclasses.dataclass
class ChainResult:
    """One chain: its index in the chain list, seed, start state, tasks and how far it got."""

    chain_index: int
    seed: int
    state: dict[str, Any]
    tasks: list[str]
    successes: list[bool]  # one entry per attempted subtask (the last is False unless all 5 succeeded)
    steps: list[int]  # environment steps spent on each attempted subtask
    malformed: int = 0  # malformed action streams the policy decoded during the chain
    seconds: float = 0.0
    failure: str | None = None  # why the failed subtask failed, for block tasks (eval.failures)

    @property
    def completed(self) -> int:
        """Subtasks completed in a row from the start (the chain stops at its first failure)."""
        n = 0
        for ok in self.successes:
            if not ok:
                break
            n += 1
        return n

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChainResult:
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in fields})


class ResultLog:
    """An append-only JSONL file of :class:`ChainResult` lines."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_tail()

    def _repair_tail(self) -> None:
        """Drop a torn last line left by a process killed while writing it."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            log.warning("dropping a partly written result line at the end of %s", self.path)
            with self.path.open("r+b") as f:
                f.truncate(cut)

    def read(self) -> list[ChainResult]:
        if not self.path.is_file():
            return []
        out = []
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(ChainResult.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as err:
                raise ValueError(f"{self.path}:{n} is not a chain result ({err}); remove the line to continue") from err
        return out

    def done(self) -> set[int]:
        return {r.chain_index for r in self.read()}

    def append(self, result: ChainResult) -> None:
        with self.path.open("a") as f:
            f.write(result.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())


def shard_file(shard: int, num_shards: int) -> str:
    return "chains.jsonl" if num_shards == 1 else f"chains-{shard}of{num_shards}.jsonl"


def read_folder(folder: str | Path) -> list[ChainResult]:
    """All chain results in a folder (every shard), each chain once."""
    by_index: dict[int, ChainResult] = {}
    for path in sorted(Path(folder).glob("chains*.jsonl")):
        for r in ResultLog(path).read():
            old = by_index.get(r.chain_index)
            if old is not None and (old.successes != r.successes or old.seed != r.seed):
                raise ValueError(
                    f"chain {r.chain_index} appears twice in {folder} with different outcomes "
                    f"({old.successes} vs {r.successes}); were two different policies written to one folder?"
                )
            by_index[r.chain_index] = r
    return [by_index[i] for i in sorted(by_index)]


def metrics(results: Sequence[ChainResult], num_subtasks: int = NUM_SUBTASKS) -> dict[str, Any]:
    """SR@1..5 (share of chains with at least i subtasks completed), average length, per-task success."""
    n = len(results)
    completed = [r.completed for r in results]
    sr = {f"sr@{i}": (sum(c >= i for c in completed) / n if n else 0.0) for i in range(1, num_subtasks + 1)}
    per_task: dict[str, dict[str, float]] = {}
    for r in results:
        for task, ok in zip(r.tasks, r.successes, strict=False):
            entry = per_task.setdefault(task, {"attempts": 0, "successes": 0})
            entry["attempts"] += 1
            entry["successes"] += int(ok)
    for entry in per_task.values():
        entry["success_rate"] = entry["successes"] / entry["attempts"]
    by_position = [
        {
            "position": p + 1,
            "attempts": sum(len(r.successes) > p for r in results),
            "successes": sum(len(r.successes) > p and r.successes[p] for r in results),
        }
        for p in range(num_subtasks)
    ]
    return {
        "chains": n,
        **sr,
        "avg_len": (sum(completed) / n) if n else 0.0,
        "per_task": dict(sorted(per_task.items())),
        "by_position": by_position,
        "malformed_decodes": sum(r.malformed for r in results),
        "steps": sum(sum(r.steps) for r in results),
        "seconds": sum(r.seconds for r in results),
    }


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)


def format_summary(m: dict[str, Any]) -> str:
    srs = "  ".join(f"SR@{i} {100 * m[f'sr@{i}']:5.1f}%" for i in range(1, NUM_SUBTASKS + 1))
    return f"{m['chains']} chains  {srs}  avg len {m['avg_len']:.2f}  malformed decodes {m['malformed_decodes']}"


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    if not text:
        return 0, 1
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ValueError(f"--shard {text}: need 0 <= i < n")
    return i, n


def shard_indices(indices: Iterable[int], shard: int, num_shards: int) -> list[int]:
    return [i for i in indices if i % num_shards == shard]
