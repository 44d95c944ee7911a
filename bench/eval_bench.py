"""CALVIN-chain evaluation throughput: chains per hour with 1 vs. N environments and lazy vs. eager
camera rendering, all measured in the same run on the same chains.

    python bench/eval_bench.py                                  # scripted expert, 6 chains
    python bench/eval_bench.py --policy runs/demo/train_main/checkpoints/step_0002500/model --chains 4
    python bench/eval_bench.py --json bench/eval_bench.json

Configurations (each runs the first ``--chains`` standard chains from scratch into a temporary folder):

* ``1 env, eager``   the baseline: one simulator, both cameras rendered after every physics step
  (what calvin_env does);
* ``1 env, lazy``    cameras render only when the policy reads an image (the expert never does;
  the VLA reads every ``execute_steps``-th step);
* ``N envs, lazy``   N simulators stepped together in one process, the policy queried once for
  all of them (batched model calls for the VLA);
* ``N workers, lazy`` N processes with one simulator each (what ``--workers`` does).

Ratios are chains/hour over the baseline's. Average length is printed too: every configuration must
reach the same one (same chains, same seeds), which the bench checks.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(policy: str, chains: int, *, num_envs: int, workers: int, lazy: bool) -> dict[str, float]:
    from eval.evaluate import EvalSettings, evaluate_chains

    with tempfile.TemporaryDirectory() as tmp:
        settings = EvalSettings(
            policy=policy, out=Path(tmp), num_envs=num_envs, workers=workers, lazy_images=lazy, progress=False
        )
        t0 = time.perf_counter()
        result = evaluate_chains(settings, num_chains=chains)
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "chains_per_hour": 3600.0 * chains / seconds,
        "avg_len": float(result["avg_len"]),
        "malformed_decodes": int(result.get("malformed_decodes") or 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="expert", help="expert | random | a VLA checkpoint folder")
    parser.add_argument("--chains", type=int, default=6, help="standard chains per configuration")
    parser.add_argument("--n", type=int, default=2, help="N for the parallel configurations")
    parser.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(args.n, 1)))

    configs = {
        "1 env, eager": {"num_envs": 1, "workers": 1, "lazy": False},
        "1 env, lazy": {"num_envs": 1, "workers": 1, "lazy": True},
        f"{args.n} envs, lazy": {"num_envs": args.n, "workers": 1, "lazy": True},
        f"{args.n} workers, lazy": {"num_envs": 1, "workers": args.n, "lazy": True},
    }
    rows: dict[str, dict[str, float]] = {}
    for name, cfg in configs.items():
        rows[name] = measure(args.policy, args.chains, **cfg)
        print(f"  measured {name}: {rows[name]['seconds']:.1f} s", flush=True)
    base = rows["1 env, eager"]["chains_per_hour"]
    print(f"\npolicy {args.policy}, {args.chains} standard chains per configuration, {os.cpu_count()} CPUs")
    print(f"{'configuration':20s} {'chains/h':>9s} {'vs base':>8s} {'avg len':>8s} {'malformed':>9s}")
    for name, r in rows.items():
        print(
            f"{name:20s} {r['chains_per_hour']:9.0f} {r['chains_per_hour'] / base:7.2f}x "
            f"{r['avg_len']:8.2f} {r['malformed_decodes']:9d}"
        )
    lengths = {round(r["avg_len"], 6) for r in rows.values()}
    if len(lengths) != 1:
        print(f"WARNING: configurations disagree on average length: {sorted(lengths)}")
    if args.json:
        args.json.write_text(json.dumps({"policy": args.policy, "chains": args.chains, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
