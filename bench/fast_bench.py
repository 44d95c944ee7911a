"""Rate-distortion and speed of FAST against the public processor's format and per-value binning.

    .venv/bin/python bench/fast_bench.py                       # synthetic CALVIN-like 10x7 chunks
    .venv/bin/python bench/fast_bench.py --data chunks.npy     # real chunks (N, T, D) or actions (N, D)

Prints one row per tokenizer: mean tokens per chunk, RMSE and max error in normalised units
(actions mapped to [-1, 1]; where FAST's rounding bound 0.5/scale applies), encode / decode
throughput (batched, chunks/s) and fit time. Every tokenizer is fitted on the same fit split and
measured on the same held-out split:

* FAST native     ours (zig-zag characters, unsplit byte-level BPE)
* FAST reference  the public FAST processor's format, fitted by our reference mode, whose token ids
                  are identical to the public processor's (tests/test_fast_reference.py)
* bins N          uniform per-value binning, T*D tokens per chunk

Then the ratios the issue asks for: native vs reference tokens at each scale (measured here, and
against the figures docs/design.md quotes: 14.6 tokens at scale 10, 33.5 at 50); tokens of FAST vs
binning at the RMSE of 64-bin binning (FAST refitted at the scale whose RMSE matches it, checked);
and our batched throughput vs the public processor's per-chunk loop, timed here too.

Synthetic data (action_tokenizer.synthetic): 6 dims of a few low-frequency sinusoids plus noise of
std 0.02, a -1/+1 gripper switching 1-3 times per 200 steps; 10-step windows of 200-step
trajectories; fit on stride-1 windows of one set of trajectories, measure on stride-10 windows of
others. Real data: contiguous split (first 80 % fit, last 20 % measured, so overlapping windows do
not leak), one normaliser fitted on the fit split and shared by all tokenizers.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from action_tokenizer import ActionNormalizer, BinningTokenizer, FastTokenizer, load_chunks
from action_tokenizer.synthetic import calvin_like_chunks

QUOTED_REFERENCE_TOKENS = {10: 14.6, 50: 33.5}  # docs/design.md section 4, public processor, comparable data
REQUIRED_BINNING_RATIO = 2.5


@dataclasses.dataclass
class Row:
    name: str
    tokens: float
    rmse: float
    max_error: float
    encode_per_s: float
    decode_per_s: float
    fit_s: float
    broken: int  # held-out chunks whose own encoding did not decode cleanly


def measure(name: str, tokenizer, held_out: np.ndarray, normalizer: ActionNormalizer | None, fit_s: float) -> Row:
    t0 = time.perf_counter()
    ids = tokenizer.encode(held_out)
    t1 = time.perf_counter()
    out = tokenizer.decode(ids)
    t2 = time.perf_counter()
    truth, recon = held_out, out.actions
    if normalizer is not None:
        truth, recon = normalizer.transform(truth), normalizer.transform(recon)
    err = recon - truth
    return Row(
        name=name,
        tokens=float(np.mean([len(x) for x in ids])),
        rmse=float(np.sqrt(np.mean(err**2))),
        max_error=float(np.abs(err).max()),
        encode_per_s=len(held_out) / (t1 - t0),
        decode_per_s=len(held_out) / (t2 - t1),
        fit_s=fit_s,
        broken=out.num_malformed,
    )


def fit_fast(
    fit: np.ndarray, scale: float, mode: str, normalizer: ActionNormalizer | None
) -> tuple[FastTokenizer, float]:
    t0 = time.perf_counter()
    tok = FastTokenizer.fit(fit, scale=scale, mode=mode, normalizer=normalizer)
    return tok, time.perf_counter() - t0


def public_processor_speed(fit: np.ndarray, held_out: np.ndarray, scale: float) -> tuple[float, float]:
    """Encode / decode chunks/s of the public processor's per-chunk loop (HF PreTrainedTokenizerFast)."""
    from scipy.fft import dct, idct
    from transformers import PreTrainedTokenizerFast

    ref = FastTokenizer.fit(fit, scale=scale, mode="reference", normalizer=None)
    hf = PreTrainedTokenizerFast(tokenizer_object=ref.bpe, clean_up_tokenization_spaces=False)
    min_token, (n, horizon, dim) = ref.config.min_token, held_out.shape
    t0 = time.perf_counter()
    coeffs = np.around(dct(held_out, axis=1, norm="ortho") * scale)
    ids = [hf("".join(map(chr, np.maximum(c.flatten() - min_token, 0).astype(int))))["input_ids"] for c in coeffs]
    t1 = time.perf_counter()
    for x in ids:
        values = np.array(list(map(ord, hf.decode(x)))) + min_token
        idct(values.reshape(horizon, dim) / scale, axis=0, norm="ortho")
    t2 = time.perf_counter()
    return n / (t1 - t0), n / (t2 - t1)


def matched_fast(fit, held_out, target_rmse, rows, normalizer) -> Row:
    """FAST at the smallest scale (refined up to 4 times) whose held-out RMSE does not exceed ``target_rmse``."""
    native = [r for r in rows if r.name.startswith("FAST native")]
    # RMSE is ~ 1 / (scale * sqrt(12)): start from the measured point closest to the target
    nearest = min(native, key=lambda r: abs(np.log(r.rmse / target_rmse)))
    scale = float(nearest.name.split("scale ")[1]) * nearest.rmse / target_rmse
    for _ in range(4):
        tok, fit_s = fit_fast(fit, scale, "native", normalizer)
        row = measure(f"FAST native scale {scale:.1f}", tok, held_out, normalizer, fit_s)
        if row.rmse <= target_rmse:
            return row
        scale *= 1.03 * row.rmse / target_rmse
    return row


def print_table(rows: list[Row]) -> None:
    head = ("tokens/chunk", "RMSE", "max err", "enc/s", "dec/s", "fit s", "broken")
    print(f"{'tokenizer':28s} {head[0]:>12s} " + " ".join(f"{h:>9s}" for h in head[1:]))
    for r in rows:
        print(
            f"{r.name:28s} {r.tokens:12.2f} {r.rmse:9.5f} {r.max_error:9.5f} "
            f"{r.encode_per_s:9.0f} {r.decode_per_s:9.0f} {r.fit_s:9.2f} {r.broken:9d}"
        )


def load_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, ActionNormalizer | None, str]:
    if args.data is None:
        fit = calvin_like_chunks(args.fit_trajectories, stride=1, seed=args.seed)
        held_out = calvin_like_chunks(args.eval_trajectories, stride=10, seed=args.seed + 1)
        desc = (
            f"synthetic CALVIN-like 10x7 chunks: fit {len(fit)} (stride-1 windows of {args.fit_trajectories} "
            f"trajectories), held out {len(held_out)}; already in [-1, 1], no normaliser"
        )
        return fit, held_out, None, desc
    chunks = load_chunks(args.data, horizon=args.horizon, stride=1)
    split = int(0.8 * len(chunks))
    fit, held_out = chunks[:split], chunks[split:]
    normalizer = ActionNormalizer.fit(fit)
    desc = f"{args.data}: {len(chunks)} chunks {chunks.shape[1:]}, fit on the first {split}, held out {len(held_out)}"
    return fit, held_out, normalizer, desc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, help="real chunks (N, T, D) or actions (N, D), .npy/.npz (default: synthetic)")
    p.add_argument("--horizon", type=int, default=10, help="window length when --data holds actions (default 10)")
    p.add_argument("--scales", default="10,25,50,100", help="FAST scales (default 10,25,50,100)")
    p.add_argument("--bins", default="64,128,256", help="binning sizes (default 64,128,256)")
    p.add_argument("--fit-trajectories", type=int, default=150, help="synthetic trajectories to fit on (default 150)")
    p.add_argument("--eval-trajectories", type=int, default=500, help="synthetic held-out trajectories (default 500)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    scales = [float(s) for s in args.scales.split(",")]
    bin_sizes = [int(b) for b in args.bins.split(",")]

    fit, held_out, normalizer, desc = load_data(args)
    print(desc)
    rows: list[Row] = []
    by_scale: dict[float, tuple[Row, Row]] = {}
    for scale in scales:
        pair = []
        for mode in ("native", "reference"):
            tok, fit_s = fit_fast(fit, scale, mode, normalizer)
            pair.append(measure(f"FAST {mode} scale {scale:g}", tok, held_out, normalizer, fit_s))
        rows += pair
        by_scale[scale] = (pair[0], pair[1])
    bin_rows = {}
    for n in bin_sizes:
        t0 = time.perf_counter()
        tok = BinningTokenizer.fit(fit, n_bins=n, normalizer=normalizer)
        bin_rows[n] = measure(f"bins {n}", tok, held_out, normalizer, time.perf_counter() - t0)
        rows.append(bin_rows[n])
    print()
    print_table(rows)

    failures: list[str] = []
    print("\nFAST native vs the public processor's format (tokens/chunk, lower is better):")
    for scale, (native, reference) in by_scale.items():
        line = (
            f"  scale {scale:>5g}: {native.tokens:6.2f} vs {reference.tokens:6.2f} measured here "
            f"-> {native.tokens / reference.tokens:.3f}x"
        )
        # the quoted figures were measured on synthetic data like ours; they say nothing about real data
        quoted = QUOTED_REFERENCE_TOKENS.get(int(scale)) if args.data is None and scale == int(scale) else None
        if quoted is not None:
            line += f";  vs {quoted} quoted in docs/design.md -> {native.tokens / quoted:.3f}x"
            if native.tokens >= quoted:
                failures.append(f"scale {scale:g}: not below the quoted {quoted}")
        if native.tokens >= reference.tokens:
            failures.append(f"scale {scale:g}: not below the reference format")
        print(line)

    if 64 in bin_rows and any(r.name.startswith("FAST native") for r in rows):
        target = bin_rows[64]
        matched = matched_fast(fit, held_out, target.rmse, rows, normalizer)
        ratio = target.tokens / matched.tokens
        if ratio < REQUIRED_BINNING_RATIO or matched.rmse > target.rmse:
            failures.append(f"only {ratio:.2f}x fewer tokens than 64-bin binning")
        print(
            f"\nAt the RMSE of 64-bin binning ({target.rmse:.5f}): {matched.name} reaches RMSE {matched.rmse:.5f} with "
            f"{matched.tokens:.2f} tokens/chunk vs {target.tokens:.0f} -> {ratio:.2f}x fewer "
            f"(required >= {REQUIRED_BINNING_RATIO}x)"
        )

    if args.data is None and 10.0 in by_scale:
        enc, dec = public_processor_speed(fit, held_out, 10.0)
        native = by_scale[10.0][0]
        print(
            f"\nSpeed at scale 10, same held-out chunks: public processor's per-chunk loop encode {enc:.0f} / decode "
            f"{dec:.0f} chunks/s; ours batched {native.encode_per_s:.0f} / {native.decode_per_s:.0f} -> "
            f"{native.encode_per_s / enc:.1f}x / {native.decode_per_s / dec:.1f}x"
        )
    # ours must round-trip every held-out chunk; the reference format may not
    failures += [f"{r.name}: {r.broken} broken" for r in rows if r.broken and not r.name.startswith("FAST reference")]
    print(
        "\n'broken': held-out chunks whose own tokens did not decode cleanly. The reference format loses a chunk "
        "whenever it contains a UTF-8 byte the fit data never produced (its BPE alphabet is chr(0..range), not bytes)."
    )
    print("\nall acceptance ratios hold" if not failures else "\nFAILED: " + "; ".join(failures))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
