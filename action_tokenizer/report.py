"""``emu3-vla fast inspect``: how well a tokenizer compresses and reconstructs a set of chunks.

Everything is measured by actually encoding and decoding the chunks: tokens per chunk and their
histogram, compression ratio (values per chunk / mean tokens per chunk), reconstruction error per
dimension in action units and in normalised units (where FAST's rounding bound 0.5/scale applies),
how many coefficients fell outside the fitted range and were clamped, and throughput.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from action_tokenizer.binning import BinningTokenizer
from action_tokenizer.dct import quantize as raw_quantize
from action_tokenizer.dct import rounding_error_bound
from action_tokenizer.fast import FastTokenizer
from action_tokenizer.jsonfmt import dumps_readable

REPORT_JSON = "inspect.json"
REPORT_PNG = "inspect.png"


def _normalized(tokenizer: FastTokenizer | BinningTokenizer, chunks: np.ndarray) -> np.ndarray:
    return chunks if tokenizer.normalizer is None else tokenizer.normalizer.transform(chunks)


def inspect_tokenizer(tokenizer: FastTokenizer | BinningTokenizer, chunks: np.ndarray) -> dict[str, Any]:
    """Encode and decode ``chunks`` (N, T, D, action units) and summarise what happened."""
    n, horizon, dim = chunks.shape
    t0 = time.perf_counter()
    ids = tokenizer.encode(chunks)
    t1 = time.perf_counter()
    decoded = tokenizer.decode(ids, time_horizon=horizon, action_dim=dim)
    t2 = time.perf_counter()
    lengths = np.array([len(x) for x in ids])
    err = decoded.actions - chunks
    err_norm = _normalized(tokenizer, decoded.actions) - _normalized(tokenizer, chunks)
    values, counts = np.unique(lengths, return_counts=True)
    report: dict[str, Any] = {
        "tokenizer": repr(tokenizer),
        "chunks": n,
        "time_horizon": horizon,
        "action_dim": dim,
        "values_per_chunk": horizon * dim,
        "tokens_per_chunk": {
            "mean": float(lengths.mean()),
            "median": float(np.median(lengths)),
            "p95": float(np.percentile(lengths, 95)),
            "min": int(lengths.min()),
            "max": int(lengths.max()),
        },
        "compression_ratio": float(horizon * dim / lengths.mean()),
        "token_length_histogram": {int(v): int(c) for v, c in zip(values, counts, strict=True)},
        "distinct_ids_used": len({i for x in ids for i in x}),
        "vocab_size": tokenizer.vocab_size,
        "rmse": float(np.sqrt(np.mean(err**2))),
        "rmse_per_dim": np.sqrt(np.mean(err**2, axis=(0, 1))).tolist(),
        "max_abs_error_per_dim": np.abs(err).max(axis=(0, 1)).tolist(),
        "rmse_normalized": float(np.sqrt(np.mean(err_norm**2))),
        "rmse_normalized_per_dim": np.sqrt(np.mean(err_norm**2, axis=(0, 1))).tolist(),
        "round_trip_malformed": decoded.counts(),
        "encode_chunks_per_s": float(n / max(t1 - t0, 1e-9)),
        "decode_chunks_per_s": float(n / max(t2 - t1, 1e-9)),
    }
    if isinstance(tokenizer, FastTokenizer):
        bound = rounding_error_bound(horizon, dim, tokenizer.scale)
        report["scale"] = tokenizer.scale
        report["mode"] = tokenizer.mode
        report["rounding_rmse_bound_normalized"] = bound.rmse
        unclamped = raw_quantize(_normalized(tokenizer, chunks), tokenizer.scale)
        report["coefficients_clamped_fraction"] = float(np.mean(unclamped != tokenizer.quantize(chunks)))
    else:
        report["n_bins"] = tokenizer.n_bins
    return report


def format_report(report: dict[str, Any]) -> str:
    """The report as the plain text the CLI prints."""
    tok = report["tokens_per_chunk"]
    lines = [
        f"{report['tokenizer']} on {report['chunks']} chunks of {report['time_horizon']}x{report['action_dim']}",
        f"tokens/chunk: mean {tok['mean']:.2f}  median {tok['median']:g}  p95 {tok['p95']:g}  "
        f"min {tok['min']}  max {tok['max']}   compression {report['compression_ratio']:.2f}x "
        f"({report['values_per_chunk']} values/chunk)",
        f"RMSE (normalised units) {report['rmse_normalized']:.5f}"
        + (
            f"  (rounding bound {report['rounding_rmse_bound_normalized']:.5f})"
            if "rounding_rmse_bound_normalized" in report
            else ""
        ),
        "dim   RMSE (action units)   max |error|   RMSE (normalised)",
    ]
    for d, (r, m, rn) in enumerate(
        zip(report["rmse_per_dim"], report["max_abs_error_per_dim"], report["rmse_normalized_per_dim"], strict=True)
    ):
        lines.append(f"{d:>3d}   {r:19.6f}   {m:11.6f}   {rn:17.6f}")
    hist = report["token_length_histogram"]
    peak = max(hist.values())
    lines.append("token-length histogram:")
    for length, count in hist.items():
        lines.append(f"  {length:>4d} {count:>7d} {'#' * max(1, round(40 * count / peak))}")
    if "coefficients_clamped_fraction" in report:
        lines.append(f"coefficients clamped to the fitted range: {100 * report['coefficients_clamped_fraction']:.3f}%")
    mal = report["round_trip_malformed"]["malformed"]
    lines.append(
        f"round-trip malformed streams: {mal}   encode {report['encode_chunks_per_s']:.0f} chunks/s   "
        f"decode {report['decode_chunks_per_s']:.0f} chunks/s"
    )
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``inspect.json`` and ``inspect.png`` (length histogram, per-dimension error) to ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out_dir / REPORT_JSON, out_dir / REPORT_PNG
    json_path.write_text(dumps_readable(report) + "\n")
    fig, (ax_len, ax_err) = plt.subplots(1, 2, figsize=(10, 3.8))
    hist = report["token_length_histogram"]
    ax_len.bar(list(hist), list(hist.values()), width=0.9, color="tab:blue")
    ax_len.axvline(report["tokens_per_chunk"]["mean"], color="k", ls="--", label="mean")
    ax_len.set(xlabel="tokens per chunk", ylabel="chunks", title=f"compression {report['compression_ratio']:.2f}x")
    ax_len.legend()
    dims = np.arange(report["action_dim"])
    ax_err.bar(dims, report["rmse_normalized_per_dim"], color="tab:orange")
    if "rounding_rmse_bound_normalized" in report:
        bound = report["rounding_rmse_bound_normalized"]
        ax_err.axhline(bound, color="k", ls="--", label="bound 0.5/scale")
        ax_err.set_ylim(0, 1.3 * max(bound, *report["rmse_normalized_per_dim"]))
        ax_err.legend(loc="upper right")
    ax_err.set(xlabel="action dimension", ylabel="RMSE (normalised units)", title="reconstruction error")
    fig.suptitle(report["tokenizer"], fontsize=9)
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return json_path, png_path
