"""``emu3-vla serve`` as a real process and ``emu3-vla tokenize-client`` on image files."""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_policy import calvin_obs, tiny_vla

from policies.client import RemotePolicy, register_tokenize_client
from policies.server import register as register_serve
from policies.serving.edge import EdgeTokenizer
from policies.serving.served_policy import ServedPolicy

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("served") / "vla"
    tiny_vla().save(folder)
    return folder


def parse(register, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_tokenize_client_prints_and_saves_the_servers_codes(checkpoint, tmp_path, capsys):
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    pictures = {name: rng.integers(0, 256, (48, 40, 3), dtype=np.uint8) for name in ("a", "b")}
    for name, picture in pictures.items():
        Image.fromarray(picture).save(images / f"{name}.png")
    args = parse(
        register_tokenize_client,
        ["tokenize-client", "--checkpoint", str(checkpoint), "--input", str(images), "--out", str(tmp_path / "codes")],
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    served_fingerprint = ServedPolicy(tiny_vla()).fingerprint()
    assert f"VQ fingerprint {served_fingerprint}" in out and "codes (1, 4, 4)" in out
    with np.load(tmp_path / "codes.npz") as codes:
        assert sorted(codes.files) == ["a", "b"]
        edge = EdgeTokenizer.from_checkpoint(checkpoint)
        for name, picture in pictures.items():
            np.testing.assert_array_equal(codes[name][0], edge.encode("static", picture))


def test_tokenize_client_rejects_bad_inputs(checkpoint, tmp_path):
    np.savez(tmp_path / "float.npz", img=np.zeros((8, 8, 3), np.float32))
    args = parse(
        register_tokenize_client,
        ["tokenize-client", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "float.npz")],
    )
    with pytest.raises(ValueError, match=r"must be uint8 \(H, W, 3\)"):
        args.func(args)
    args = parse(
        register_tokenize_client,
        ["tokenize-client", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "float.npz"), "--view", "top"],
    )
    with pytest.raises(ValueError, match="no view 'top'.*gripper"):
        args.func(args)


def test_serve_parser_defaults_and_missing_checkpoint(tmp_path):
    args = parse(register_serve, ["serve", "--checkpoint", str(tmp_path / "nope")])
    assert args.port == 8000 and args.host == "127.0.0.1" and args.max_batch == 32
    with pytest.raises(FileNotFoundError, match="does not exist"):
        args.func(args)


def test_serve_runs_as_a_process_and_stops_on_sigterm(checkpoint):
    env = {**os.environ, "EMU3_VLA_API_KEY": "k", "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "policies.server",
        "--checkpoint",
        str(checkpoint),
        "--port",
        "0",
        "--threads",
        "1",
    ]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        port = None
        while port is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line and process.poll() is not None:
                pytest.fail(f"the server exited with {process.returncode}")
            found = re.search(r"serving .* on ws://127\.0\.0\.1:(\d+) \(API key required", line)
            port = int(found.group(1)) if found else None
        assert port is not None, "the server never printed its address"
        with RemotePolicy("127.0.0.1", port, api_key="k") as remote:
            assert remote.step(calvin_obs(0), "open the drawer").shape == (7,)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
        assert process.returncode == 0 and "stopped after 1 requests" in rest
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
