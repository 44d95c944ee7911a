"""Throughput and latency of ``emu3-vla serve`` for 1, 8 and 32 clients, pixels vs. token mode.

    .venv/bin/python bench/server_bench.py                          # tiny random VLA, CALVIN-size frames
    .venv/bin/python bench/server_bench.py --checkpoint runs/x/checkpoint --device cuda

The server runs as its own process (``python -m policies.server``) on 127.0.0.1 and a free port;
the clients are threads of this process, each with its own websocket connection (one episode
each), all starting together. A client sends the same CALVIN-format observation (200x200 static
and 84x84 wrist views) as openpi-style msgpack, either as pixels or, in token mode, as VQ codes
computed beforehand with the checkpoint's VQ on the client side (the per-observation cost of that
client-side encoding is printed separately). Per scenario: requests/s over the whole run, p50 / p99
round-trip latency, and the mean batch size the server reported; every row's throughput is also
given as a ratio to 1 client with pixels, measured in the same run.

Bounded: each client sends at most ``--requests`` requests and stops starting new ones after
``--seconds``; every receive has a timeout; the server is stopped at the end (also on errors).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from websockets.sync.client import connect

from policies.serving.edge import EdgeTokenizer
from policies.wire import packb, unpackb

REPO = Path(__file__).resolve().parents[1]


def tiny_checkpoint(folder: Path) -> Path:
    """The random 'tiny' VLA the tests use (32x32 / 16x16 views, FAST fitted on smooth chunks)."""
    from action_tokenizer import FastTokenizer
    from emu3_vla.checkpoint import Emu3Bundle
    from emu3_vla.data.sequence import SequenceSpec
    from emu3_vla.vision import ViewSpec
    from emu3_vla.vla import VLAModel

    rng = np.random.default_rng(0)
    t = np.arange(10)[None, :, None]
    arm = 0.5 * np.sin(t / 4 + rng.uniform(0, 6, (200, 1, 6)))
    gripper = np.sign(rng.normal(size=(200, 1, 1))) * np.ones((1, 10, 1))
    tokenizer = FastTokenizer.fit(np.concatenate([arm, gripper], axis=2))
    views = {"static": ViewSpec("static", 32, 32), "gripper": ViewSpec("gripper", 16, 16)}
    spec = SequenceSpec(views=("static", "gripper"), frames=2, chunk=10)
    VLAModel(Emu3Bundle.from_preset("tiny", seed=0), tokenizer, spec, views).save(folder)
    return folder


class ServerProcess:
    """``python -m policies.server`` on a free loopback port; its output is drained in a thread."""

    def __init__(self, checkpoint: Path, device: str, threads: int | None, max_batch: int, decoder: str) -> None:
        command = [sys.executable, "-m", "policies.server", "--checkpoint", str(checkpoint), "--port", "0"]
        command += ["--decoder", decoder]
        command += ["--device", device, "--max-batch", str(max_batch), "--idle-timeout", "0"]
        if threads:
            command += ["--threads", str(threads)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("EMU3_VLA_API_KEY", None)
        self.process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self.port = self._wait_for_port(timeout=180)
        threading.Thread(target=self._drain, daemon=True).start()

    def _wait_for_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                raise RuntimeError("the server exited:\n" + "".join(self.lines[-20:]))
            self.lines.append(line)
            found = re.search(r"on ws://127\.0\.0\.1:(\d+)", line)
            if found:
                return int(found.group(1))
        raise RuntimeError(f"the server did not start within {timeout} s")

    def _drain(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclasses.dataclass
class Result:
    mode: str
    clients: int
    requests: int
    seconds: float
    latencies_ms: list[float]
    batch_sizes: list[int]

    @property
    def per_s(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))


def observations(count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "static": rng.integers(0, 256, (200, 200, 3), dtype=np.uint8),
            "gripper": rng.integers(0, 256, (84, 84, 3), dtype=np.uint8),
            "state": rng.normal(size=15).astype(np.float32),
        }
        for _ in range(count)
    ]


def payloads(frames, meta: dict, edge: EdgeTokenizer | None) -> list[bytes]:
    out = []
    for frame in frames:
        message = {"prompt": "open the drawer", meta["state_key"]: frame["state"]}
        for view, info in meta["views"].items():
            if edge is None:
                message[info["image_key"]] = frame[view]
            else:
                message[info["tokens_key"]] = edge.encode(view, frame[view])
        out.append(packb(message))
    return out


def run_scenario(port: int, mode: str, clients: int, messages: list[bytes], args) -> Result:
    stop_at: list[float] = []  # set once, by the barrier, before any client is released
    barrier = threading.Barrier(
        clients + 1, action=lambda: stop_at.append(time.monotonic() + args.seconds), timeout=120
    )
    latencies: list[float] = []
    batches: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        try:
            with connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None, proxy=None) as ws:
                unpackb(ws.recv(timeout=60))
                barrier.wait()
                for k in range(args.requests):
                    if time.monotonic() > stop_at[0]:
                        break
                    started = time.perf_counter()
                    ws.send(messages[(index + k) % len(messages)])
                    reply = ws.recv(timeout=args.seconds + 120)
                    if isinstance(reply, str):
                        raise RuntimeError(f"server error: {reply}")
                    elapsed = (time.perf_counter() - started) * 1e3
                    timing = unpackb(reply)["server_timing"]
                    with lock:
                        latencies.append(elapsed)
                        batches.append(int(timing["batch_size"]))
        except BaseException as err:
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = stop_at[0] - args.seconds
    for t in threads:
        t.join(args.seconds + 180)
    elapsed = time.monotonic() - started
    if errors:
        raise RuntimeError(f"{mode} x{clients}: {errors[0]}") from errors[0]
    return Result(mode, clients, len(latencies), elapsed, latencies, batches)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a VLA checkpoint (default: a tiny random one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--decoder", default="plain", choices=["plain", "static", "parallel"], help="server decoder")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=10, help="at most this many requests per client")
    parser.add_argument("--seconds", type=float, default=20.0, help="no new requests after this long")
    parser.add_argument("--threads", type=int, default=1, help="server torch threads (default: 1; 0: torch's)")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.seconds <= 0:
        parser.error("--requests must be >= 1 and --seconds > 0")
    torch.set_num_threads(1)  # the client side (token-mode VQ) must not crowd out the server's cores

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or tiny_checkpoint(Path(tmp) / "vla")
        edge = EdgeTokenizer.from_checkpoint(checkpoint)
        frames = observations(4)
        for view in edge.views:  # warm-up: the first call allocates
            edge.encode(view, frames[0][view])
        started = time.perf_counter()
        for frame in frames:
            for view in edge.views:
                edge.encode(view, frame[view])
        client_vq_ms = (time.perf_counter() - started) * 1e3 / len(frames)

        server = ServerProcess(checkpoint, args.device, args.threads or None, max(args.clients), args.decoder)
        try:
            with connect(f"ws://127.0.0.1:{server.port}", compression=None, max_size=None, proxy=None) as ws:
                meta = unpackb(ws.recv(timeout=60))
                if edge.fingerprint != meta["vq_fingerprint"]:
                    raise RuntimeError("the client's VQ is not the server's")
                ws.send(payloads(frames[:1], meta, None)[0])  # warm-up: first-call allocations
                ws.recv(timeout=300)
            modes = {"pixels": payloads(frames, meta, None), "tokens": payloads(frames, meta, edge)}
            results = [
                run_scenario(server.port, mode, clients, messages, args)
                for clients in args.clients
                for mode, messages in modes.items()
            ]
        finally:
            server.stop()

    sizes = {mode: len(messages[0]) for mode, messages in modes.items()}
    print(
        f"checkpoint: {args.checkpoint or 'tiny random VLA'} on {args.device}, {args.decoder} decoder; server threads: "
        f"{args.threads or 'default'}; up to {args.requests} requests/client, {args.seconds:g} s/scenario"
    )
    print(
        f"request size: pixels {sizes['pixels']:,} B, tokens {sizes['tokens']:,} B; client-side VQ of both "
        f"views (token mode, 1 thread, not in the latencies): {client_vq_ms:.1f} ms/observation"
    )
    baseline = next((r.per_s for r in results if r.mode == "pixels" and r.clients == min(args.clients)), None)
    header = f"{'clients':>7} {'mode':>7} {'requests':>8} {'req/s':>8} {'x base':>7} {'p50 ms':>8} {'p99 ms':>8} "
    print(header + f"{'mean batch':>10}")
    for r in results:
        ratio = r.per_s / baseline if baseline else float("nan")
        print(
            f"{r.clients:>7} {r.mode:>7} {r.requests:>8} {r.per_s:>8.2f} {ratio:>7.2f} {r.percentile(50):>8.1f} "
            f"{r.percentile(99):>8.1f} {np.mean(r.batch_sizes):>10.2f}"
        )
    print(f"x base: requests/s relative to {min(args.clients)} client(s) with pixels, same run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
