"""``emu3-vla fast``: fit and inspect action tokenizers from the command line.

Registered through the ``emu3_vla.commands`` entry point ``fast = "action_tokenizer.cli:register"``.

    emu3-vla fast fit --data actions.npz --out runs/fast            # FAST, scale 10, vocab 1,024
    emu3-vla fast fit --data chunks.npy --out runs/bins --kind binning --bins 256
    emu3-vla fast inspect runs/fast --data held_out.npz             # prints, writes inspect.json/.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from action_tokenizer.binning import BinningTokenizer
from action_tokenizer.data import load_chunks
from action_tokenizer.fast import FastTokenizer
from action_tokenizer.loading import load_action_tokenizer
from action_tokenizer.report import format_report, inspect_tokenizer, write_report

DATA_HELP = (
    "an .npy/.npz of chunks (N, T, D) or of actions (N, D); actions are cut into windows of --horizon "
    "steps every --stride steps, never across episode boundaries (an .npz array 'episode_ends' or "
    "--episode-ends: cumulative exclusive end index of each episode). Dataset folders need a registered "
    "action source (see action_tokenizer.data)."
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fast`` with its ``fit`` and ``inspect`` sub-commands to the ``emu3-vla`` parser."""
    fast = subparsers.add_parser(
        "fast",
        help="fit / inspect FAST (or binning) action tokenizers",
        description="FAST action tokenizer: DCT + byte-level BPE over action chunks (docs/design.md section 4).",
    )

    def show_help(_: argparse.Namespace) -> int:
        fast.print_help()
        return 2

    fast.set_defaults(func=show_help)
    sub = fast.add_subparsers(dest="fast_command", metavar="SUBCOMMAND")

    fit = sub.add_parser(
        "fit",
        help="fit a tokenizer on action data and save it as a folder",
        description="Fit the normaliser and the tokenizer on action chunks; save processor_config.json "
        "(+ tokenizer.json for FAST) to --out.",
    )
    _add_data_args(fit)
    fit.add_argument("--out", type=Path, required=True, help="output folder")
    fit.add_argument("--kind", choices=("fast", "binning"), default="fast", help="tokenizer kind (default: fast)")
    fit.add_argument("--scale", type=float, default=10.0, help="FAST coefficient scale (default: 10)")
    fit.add_argument("--vocab-size", type=int, default=1024, help="FAST BPE vocabulary (default: 1024)")
    fit.add_argument(
        "--mode",
        choices=("native", "reference"),
        default="native",
        help="native (ours, better compression) or reference (the public processor's format); default native",
    )
    fit.add_argument("--bins", type=int, default=256, help="bins per value for --kind binning (default: 256)")
    fit.add_argument(
        "--passthrough-dims",
        default="auto",
        help="comma-separated dims the normaliser leaves unchanged, e.g. '6' or '-1'; 'auto': the last dim "
        "of 7-d (CALVIN) actions; 'none': normalise all",
    )
    fit.add_argument("--no-normalize", action="store_true", help="the data is already in [-1, 1]: fit no normaliser")
    fit.set_defaults(func=run_fit)

    insp = sub.add_parser(
        "inspect",
        help="compression, reconstruction error and token lengths of a tokenizer on data",
        description="Encode and decode the data with a saved tokenizer; print a report and write "
        "inspect.json and inspect.png (to --out, default: the tokenizer folder).",
    )
    insp.add_argument("tokenizer", type=Path, help="a saved tokenizer folder (ours or a public FAST processor)")
    _add_data_args(insp)
    insp.add_argument("--out", type=Path, help="folder for inspect.json / inspect.png (default: the tokenizer folder)")
    insp.add_argument("--max-chunks", type=int, default=20000, help="inspect at most this many chunks (default 20000)")
    insp.add_argument("--seed", type=int, default=0, help="seed for sub-sampling beyond --max-chunks")
    insp.set_defaults(func=run_inspect)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help=DATA_HELP)
    p.add_argument("--key", help="actions array inside an .npz (default: 'actions', 'action' or the only one)")
    p.add_argument("--episode-ends", type=Path, help="an .npy of cumulative exclusive episode end indices")
    p.add_argument("--horizon", type=int, default=10, help="chunk length T in steps (default: 10)")
    p.add_argument("--stride", type=int, default=1, help="steps between chunk starts (default: 1)")


def _parse_dims(text: str) -> list[int] | None:
    if text == "auto":
        return None
    if text == "none":
        return []
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"--passthrough-dims takes 'auto', 'none' or comma-separated integers, not {text!r}") from None


def _load(args: argparse.Namespace) -> np.ndarray:
    return load_chunks(
        args.data, horizon=args.horizon, stride=args.stride, key=args.key, episode_ends=args.episode_ends
    )


def run_fit(args: argparse.Namespace) -> int:
    chunks = _load(args)
    normalizer = None if args.no_normalize else "fit"
    dims = _parse_dims(args.passthrough_dims)
    t0 = time.perf_counter()
    if args.kind == "fast":
        tokenizer = FastTokenizer.fit(
            chunks,
            scale=args.scale,
            vocab_size=args.vocab_size,
            mode=args.mode,
            normalizer=normalizer,
            passthrough_dims=dims,
        )
    else:
        tokenizer = BinningTokenizer.fit(chunks, n_bins=args.bins, normalizer=normalizer, passthrough_dims=dims)
    seconds = time.perf_counter() - t0
    tokenizer.save(args.out)
    lengths = [len(x) for x in tokenizer.encode(chunks[:5000])]
    print(f"fitted {tokenizer} on {len(chunks)} chunks in {seconds:.1f} s")
    print(f"mean tokens/chunk on the fit data: {np.mean(lengths):.2f} ({chunks.shape[1] * chunks.shape[2]} values)")
    print(f"saved to {args.out}")
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    chunks = _load(args)
    tokenizer = load_action_tokenizer(args.tokenizer, time_horizon=chunks.shape[1], action_dim=chunks.shape[2])
    if len(chunks) > args.max_chunks:
        pick = np.sort(np.random.default_rng(args.seed).choice(len(chunks), args.max_chunks, replace=False))
        chunks = chunks[pick]
    report = inspect_tokenizer(tokenizer, chunks)
    report["tokenizer_folder"] = str(args.tokenizer)
    report["data"] = str(args.data)
    print(format_report(report))
    json_path, png_path = write_report(report, args.out or args.tokenizer)
    print(f"wrote {json_path} and {png_path}")
    return 0


if __name__ == "__main__":  # handy without the entry point installed: python -m action_tokenizer.cli fast ...
    import sys

    parser = argparse.ArgumentParser(prog="action_tokenizer")
    register(parser.add_subparsers(dest="command"))
    parsed = parser.parse_args()
    if not getattr(parsed, "func", None):
        parser.print_help()
        sys.exit(2)
    sys.exit(int(parsed.func(parsed) or 0))
