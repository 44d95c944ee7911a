"""The README's "Using your own LeRobot dataset" section, run as written on a dataset made with lerobot's
own ``LeRobotDataset.create``: two video cameras under non-CALVIN names and sizes (front 96x96, wrist
64x64), an 8-d state, a 6-d action, 15 fps (:func:`lerobot_made.make_own_dataset`).

The bash block's commands run verbatim from a folder holding the dataset at ``data/my_dataset``; the
only additions are appended sizing overrides (the last hydra override / argparse flag wins): a few
training steps instead of thousands, and a free port instead of 8000. The served model is then
queried with no extra flags, by an openpi-protocol client written here from openpi's wire format, and
by the README's own Python client block.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import msgpack
import numpy as np
import pytest
from lerobot_made import (
    OWN_ACTION_DIM,
    OWN_FPS,
    OWN_STATE_DIM,
    OWN_TASKS,
    code_blocks,
    make_own_dataset,
    readme_section,
    shell_commands,
)

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "Using your own LeRobot dataset"
README_PORT = "8000"
# appended to the README's commands so that CI trains for seconds, not hours
SIZING = {
    "train-vq": ["steps=2", "batch_size=4", "max_frames=40", "progress=false"],
    "train": ["steps=2", "batch_size=2", "checkpoint.every=2", "progress=false", "wandb.mode=disabled"],
}
CAMERAS = {"front": "observation.images.front", "wrist": "observation.images.wrist"}

pytestmark = pytest.mark.timeout(600)


def cli() -> list[str]:
    """The ``emu3-vla`` console script of this interpreter's environment (else ``python -m emu3_vla.cli``)."""
    script = Path(sys.executable).with_name("emu3-vla")
    return [str(script)] if script.exists() else [sys.executable, "-m", "emu3_vla.cli"]


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled"}


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    assert command[0] == "emu3-vla", command
    done = subprocess.run([*cli(), *command[1:]], cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def readme_commands() -> list[list[str]]:
    (block,) = code_blocks(readme_section(README, SECTION), "bash")
    return shell_commands(block)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A user's folder: the dataset at data/my_dataset, made by lerobot itself."""
    root = tmp_path_factory.mktemp("own")
    make_own_dataset(root / "data" / "my_dataset")
    return root


@pytest.fixture(scope="module")
def trained(workdir) -> tuple[Path, dict[str, str]]:
    """The README's train-vq and train commands, run as written (plus SIZING); their output by command."""
    outputs = {}
    for command in readme_commands():
        if command[1] in SIZING:
            outputs[command[1]] = run([*command, *SIZING[command[1]]], workdir).stdout
    return workdir, outputs


@pytest.fixture(scope="module")
def served(trained):
    """The README's serve command as written (on a free port): yields the port."""
    workdir, _ = trained
    (serve,) = [c for c in readme_commands() if c[1] == "serve"]
    port = free_port()
    log = workdir / "serve.log"
    with log.open("w") as sink:  # a file, not a pipe: a full pipe would block the server
        proc = subprocess.Popen(
            [*cli(), *serve[1:], "--port", str(port)], cwd=workdir, env=child_env(), stdout=sink, stderr=sink
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"emu3-vla serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("emu3-vla serve did not answer /healthz within 180 s")
            time.sleep(0.5)
        yield port
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------------- the block itself
def test_readme_block_is_train_vq_train_serve_with_one_camera_override():
    commands = readme_commands()
    assert [c[:2] for c in commands] == [
        ["emu3-vla", "train-vq"],
        ["emu3-vla", "train"],
        ["emu3-vla", "serve"],
    ]
    for command in commands[:2]:
        assert "data=lerobot" in command and "data.root=data/my_dataset" in command
        cameras = [a for a in command if a.startswith("data.cameras")]
        assert len(cameras) == 1 and cameras[0].startswith("data.cameras={"), cameras
    assert "--checkpoint" in commands[2] and "runs/my_policy/model" in commands[2]


def test_one_override_replaces_the_camera_map():
    """data=lerobot has no cameras to merge with: the override is the whole map; PlayTable's config
    keeps its views (the demo overrides their sizes key by key)."""
    from emu3_vla.training.config import load_config

    override = next(a for a in readme_commands()[1] if a.startswith("data.cameras"))
    cfg = load_config("train", ["data=lerobot", override])
    assert {v: c["key"] for v, c in cfg.data.cameras.items()} == CAMERAS
    assert load_config("train", ["data=lerobot"]).data.cameras is None
    assert set(load_config("train").data.cameras) == {"static", "gripper"}
    assert set(load_config("demo").train.data.cameras) == {"static", "gripper"}


def test_no_cameras_is_an_error_with_an_override_to_paste(workdir):
    from emu3_vla.data.mapping import DataMapping, MissingCamerasError

    with pytest.raises(MissingCamerasError) as err:
        DataMapping.from_dict({"cameras": None, "root": str(workdir / "data" / "my_dataset")})
    text = str(err.value)
    assert "observation.images.front (video, 96x96)" in text and "observation.images.wrist (video, 64x64)" in text
    assert (
        "'data.cameras={front: {key: observation.images.front, size: 96}, "
        "wrist: {key: observation.images.wrist, size: 64}}'" in text
    )


def test_gripper_dims_are_found_in_the_data():
    """Only dims that are -1/+1 throughout are a binary gripper: a 2-d PushT target and a continuous
    7-d arm get none (nothing of theirs is binarised); the playtable config keeps CALVIN's default."""
    from emu3_vla.training.config import ConfigError, load_config
    from emu3_vla.training.data_prep import gripper_dims

    rng = np.random.default_rng(0)
    cfg = load_config("train", ["data=lerobot"])
    pusht = rng.uniform(0, 512, size=(20, 5, 2))
    arm7 = rng.uniform(-1, 1, size=(20, 5, 7))
    calvin = arm7.copy()
    calvin[..., 6] = np.sign(calvin[..., 6])
    assert gripper_dims(cfg, pusht) == ()
    assert gripper_dims(cfg, arm7) == ()
    assert gripper_dims(cfg, calvin) == (6,)
    assert gripper_dims(load_config("train"), calvin) is None  # the tokenizer's default: last of 7
    assert gripper_dims(load_config("train", ["data=lerobot", "data.gripper_dims=[-1]"]), arm7) == (6,)
    with pytest.raises(ConfigError):
        gripper_dims(load_config("train", ["data=lerobot", "data.gripper_dims=[7]"]), arm7)


# --------------------------------------------------------------------------------- train and serve
def test_the_checkpoint_carries_its_inputs(trained):
    workdir, outputs = trained
    assert "psnr_front" in outputs["train-vq"] and "psnr_wrist" in outputs["train-vq"]
    assert "trained 2 steps" in outputs["train"]
    meta = json.loads((workdir / "runs/my_policy/model/emu3_vla.json").read_text())["extra"]["vla"]
    inputs = meta["inputs"]
    assert inputs["view_keys"] == CAMERAS
    assert inputs["state_key"] == "observation.state" and inputs["state_size"] == OWN_STATE_DIM
    assert inputs["action_key"] == "action" and inputs["action_dim"] == OWN_ACTION_DIM
    assert len(inputs["action_low"]) == len(inputs["action_high"]) == OWN_ACTION_DIM
    assert inputs["action_low"][-1] == -1.0 and inputs["action_high"][-1] == 1.0
    assert meta["views"] == {"front": [96, 96], "wrist": [64, 64]}
    assert meta["spec"]["chunk"] == round(0.5 * OWN_FPS)
    tokenizer = json.loads(next((workdir / "runs/my_policy/action_tokenizer").glob("*config*.json")).read_text())
    assert tokenizer["gripper_dims"] == [OWN_ACTION_DIM - 1]  # the -1/+1 dim, found in the data


def test_the_python_policy_needs_no_keys(trained):
    """Emu3VLAPolicy reads an observation keyed like the dataset, keys from the checkpoint."""
    from policies.emu3_policy import Emu3VLAPolicy

    workdir, _ = trained
    policy = Emu3VLAPolicy.from_checkpoint(workdir / "runs/my_policy/model")
    assert policy.obs_keys == {**CAMERAS, "state": "observation.state"}
    obs = {
        "observation.images.front": np.zeros((96, 96, 3), np.uint8),
        "observation.images.wrist": np.zeros((64, 64, 3), np.uint8),
        "observation.state": np.zeros(OWN_STATE_DIM, np.float32),
    }
    action = policy.step(obs, OWN_TASKS[0])
    assert action.shape == (OWN_ACTION_DIM,) and abs(action[-1]) == 1.0


def _pack(obj):
    """openpi_client.msgpack_numpy.pack_array: the wire format of openpi's WebsocketClientPolicy."""
    if isinstance(obj, np.ndarray):
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    return obj


def _unpack(obj):
    """openpi_client.msgpack_numpy.unpack_array."""
    if b"__ndarray__" in obj:
        return np.ndarray(buffer=obj[b"data"], dtype=np.dtype(obj[b"dtype"]), shape=obj[b"shape"])
    if b"__npgeneric__" in obj:
        return np.dtype(obj[b"dtype"]).type(obj[b"data"])
    return obj


def test_served_with_no_flags_to_an_openpi_client(served, trained):
    """What openpi-client's WebsocketClientPolicy does: read the metadata, send one observation under
    the keys it names, get (horizon, action_dim) actions of the dataset's dimension."""
    from websockets.sync.client import connect

    workdir, _ = trained
    inputs = json.loads((workdir / "runs/my_policy/model/emu3_vla.json").read_text())["extra"]["vla"]["inputs"]
    with connect(f"ws://127.0.0.1:{served}", compression=None, max_size=None) as ws:
        meta = msgpack.unpackb(ws.recv(), object_hook=_unpack)
        assert meta["action_dim"] == OWN_ACTION_DIM
        assert meta["inputs"]["view_keys"] == CAMERAS and meta["state_used"] is True
        views = meta["views"]
        assert {v: views[v]["image_key"] for v in views} == {
            "front": "observation/front_image",
            "wrist": "observation/wrist_image",
        }
        rng = np.random.default_rng(0)
        request = {
            "prompt": OWN_TASKS[0],
            views["front"]["image_key"]: rng.integers(0, 255, (96, 96, 3), dtype=np.uint8),
            views["wrist"]["image_key"]: rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
            meta["state_key"]: np.zeros(OWN_STATE_DIM, np.float32),
        }
        for _ in range(2):  # the second request sees the first one's frame in its window
            ws.send(msgpack.packb(request, default=_pack))
            reply = msgpack.unpackb(ws.recv(), object_hook=_unpack)
            actions = reply["actions"]
            assert actions.shape == (meta["action_horizon"], OWN_ACTION_DIM)
            assert np.all(np.isin(actions[:, -1], (-1.0, 1.0)))  # the gripper dim, binarised
            low, high = np.asarray(inputs["action_low"]), np.asarray(inputs["action_high"])
            assert np.all(actions >= low - 1e-6) and np.all(actions <= high + 1e-6)


def test_the_readme_python_client(served):
    """The README's Python block, run with the served port in place of 8000."""
    blocks = code_blocks(readme_section(README, SECTION), "python")
    assert len(blocks) == 1 and README_PORT in blocks[0]
    out = StringIO()
    with redirect_stdout(out):
        exec(compile(blocks[0].replace(README_PORT, str(served)), "README.md", "exec"), {})
    printed = out.getvalue()
    assert f"({OWN_ACTION_DIM},)" in printed and "'front': 'observation.images.front'" in printed
