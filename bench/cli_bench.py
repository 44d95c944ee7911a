"""How fast does ``emu3-vla --help`` (and every ``emu3-vla <command> --help``) answer?

Each measurement is a fresh interpreter running the command line of a source tree, exactly as the
installed ``emu3-vla`` script does, except that the sub-commands come from that tree's own
``pyproject.toml`` entry points (so an older checkout can be measured with this venv too). The
median of ``--repeats`` runs is printed per command, with the ratio against ``--baseline`` (another
checkout, e.g. ``git worktree add /tmp/before <commit>``) when one is given, and whether the output
carried a third-party banner (pybullet's build line, transformers' progress bars).

    python bench/cli_bench.py                         # this tree
    python bench/cli_bench.py --baseline /tmp/before  # this tree against an older checkout
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BANNERS = ("pybullet build time", "Loading weights", "could not be loaded")

CHILD = """
import sys
from importlib import metadata

root, argv = sys.argv[1], sys.argv[2:]
sys.path.insert(0, root)
import tomllib
groups = tomllib.load(open(root + "/pyproject.toml", "rb"))["project"]["entry-points"]
eps = [metadata.EntryPoint(name, value, "emu3_vla.commands") for name, value in groups["emu3_vla.commands"].items()]
real = metadata.entry_points
metadata.entry_points = lambda **kw: eps if kw.get("group") == "emu3_vla.commands" else real(**kw)
import emu3_vla.cli
emu3_vla.cli.entry_points = metadata.entry_points
try:
    emu3_vla.cli.main(argv)
except SystemExit:
    pass
"""


def commands(root: Path) -> list[str]:
    groups = tomllib.loads((root / "pyproject.toml").read_text())["project"]["entry-points"]
    return ["info", "smoke", *sorted(groups["emu3_vla.commands"])]


def measure(root: Path, argv: list[str], repeats: int) -> tuple[float, bool]:
    times, banner = [], False
    for _ in range(repeats):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(root), *argv], capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        banner |= any(b in out.stdout + out.stderr for b in BANNERS)
    return statistics.median(times), banner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs per command; the median is reported")
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with (same venv)")
    args = parser.parse_args()
    names = commands(ROOT)
    rows = [("--help", ["--help"])] + [(f"{c} --help", [c, "--help"]) for c in names]
    print(f"{'command':26s} {'this tree':>10s}" + (f" {'baseline':>10s} {'speed-up':>9s}" if args.baseline else ""))
    worst = 0.0
    for label, argv in rows:
        now, banner = measure(ROOT, argv, args.repeats)
        worst = max(worst, now)
        line = f"{label:26s} {now:9.2f}s" + (" (banner)" if banner else "")
        if args.baseline:
            before, old_banner = measure(args.baseline, argv, args.repeats)
            line += f" {before:9.2f}s{' (banner)' if old_banner else '':9s} {before / now:8.1f}x"
        print(line, flush=True)
    print(f"slowest: {worst:.2f} s (target: every --help under 1.5 s)")


if __name__ == "__main__":
    main()
