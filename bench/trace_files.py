"""Which of the package's files does one observation pass through on its way to an action?

Runs one closed-loop step of the Emu3 policy (a tiny random model, a CALVIN-format observation,
the chunk queue empty so the model is queried) under ``sys.setprofile`` and records every call
that crosses from one of our files into another. Prints the files in the order they are first
entered and how often each is entered from a different file, for each decoder:

    python bench/trace_files.py                 # plain and parallel
    python bench/trace_files.py --decoder plain
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if "--root" in sys.argv:  # trace another checkout (e.g. `git worktree add /tmp/before <commit>`) with this venv
    ROOT = Path(sys.argv[sys.argv.index("--root") + 1]).resolve()
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
PACKAGES = ("action_tokenizer", "envs", "emu3_vla", "policies", "eval")


def ours(filename: str) -> str | None:
    path = Path(filename).resolve()
    try:
        rel = path.relative_to(ROOT)
    except ValueError:
        return None
    return str(rel) if rel.parts and rel.parts[0] in PACKAGES else None


def trace(decoder: str) -> tuple[list[str], Counter[str]]:
    import numpy as np
    from test_policy import calvin_obs, tiny_vla

    from policies.emu3_policy import Emu3VLAPolicy

    policy = Emu3VLAPolicy(tiny_vla(), decoder=decoder)
    obs = calvin_obs(0)
    policy.step(obs, "open the drawer")  # warm up: lazy imports, caches
    policy.reset()
    order: list[str] = []
    entries: Counter[str] = Counter()
    edges: Counter[tuple[str, str]] = Counter()
    stack: list[str | None] = []

    def profile(frame, event, arg):
        if event == "call":
            here = ours(frame.f_code.co_filename)
            caller = stack[-1] if stack else None
            stack.append(here or caller)
            if here and here != caller:
                entries[here] += 1
                edges[(caller or "(rollout)", here)] += 1
                if here not in order:
                    order.append(here)
        elif event == "return" and stack:
            stack.pop()

    sys.setprofile(profile)
    try:
        action = policy.act([obs], ["open the drawer"])
    finally:
        sys.setprofile(None)
    assert np.isfinite(action).all()
    return order, entries, edges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoder", choices=["plain", "static", "parallel"], action="append")
    parser.add_argument("--root", type=Path, help="the checkout to trace (default: this one)")
    args = parser.parse_args()
    for decoder in args.decoder or ["plain", "parallel"]:
        order, entries, edges = trace(decoder)
        print(f"\n{decoder}: {len(order)} files")
        for k, name in enumerate(order, 1):
            callers = ", ".join(f"{a} {n}x" for (a, b), n in edges.items() if b == name)
            print(f"  {k:2d}. {name:40s} entered {entries[name]:3d}x  from {callers}")


if __name__ == "__main__":
    main()
