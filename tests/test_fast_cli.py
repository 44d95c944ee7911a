"""``emu3-vla fast fit`` / ``inspect`` through the real CLI entry point."""

import json

import numpy as np
import pytest

from action_tokenizer import BinningTokenizer, FastTokenizer, load_action_tokenizer
from action_tokenizer.synthetic import calvin_like_trajectories
from emu3_vla.cli import main


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fast_cli")
    traj = calvin_like_trajectories(12, seed=2) * np.array([0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0])
    path = folder / "actions.npz"
    np.savez(path, actions=traj.reshape(-1, 7), episode_ends=np.arange(1, 13) * 200)
    return path


def test_fit_then_inspect(data_file, tmp_path, capsys):
    out = tmp_path / "tok"
    assert main(["fast", "fit", "--data", str(data_file), "--out", str(out), "--scale", "20", "--stride", "2"]) == 0
    tok = load_action_tokenizer(out)
    assert isinstance(tok, FastTokenizer) and tok.scale == 20 and tok.normalizer.passthrough_dims == (6,)
    assert "saved to" in capsys.readouterr().out

    assert main(["fast", "inspect", str(out), "--data", str(data_file), "--stride", "10"]) == 0
    printed = capsys.readouterr().out
    assert "compression" in printed and "token-length histogram" in printed
    report = json.loads((out / "inspect.json").read_text())
    assert report["chunks"] == 12 * 20  # windows start at 0, 10, ..., 190 in each 200-step episode
    assert len(report["rmse_per_dim"]) == 7
    assert report["rmse_normalized"] <= 0.5 / 20
    assert report["compression_ratio"] == pytest.approx(70 / report["tokens_per_chunk"]["mean"])
    assert sum(report["token_length_histogram"].values()) == report["chunks"]
    assert report["round_trip_malformed"]["malformed"] == 0
    assert (out / "inspect.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_binning_and_reference_mode(data_file, tmp_path):
    assert main(["fast", "fit", "--data", str(data_file), "--out", str(tmp_path / "b"), "--kind", "binning"]) == 0
    assert isinstance(load_action_tokenizer(tmp_path / "b"), BinningTokenizer)
    args = ["fast", "fit", "--data", str(data_file), "--out", str(tmp_path / "r"), "--mode", "reference"]
    assert main([*args, "--passthrough-dims", "none"]) == 0
    tok = load_action_tokenizer(tmp_path / "r")
    assert tok.mode == "reference" and tok.normalizer.passthrough_dims == ()
    out = tmp_path / "insp"
    assert main(["fast", "inspect", str(tmp_path / "b"), "--data", str(data_file), "--out", str(out)]) == 0
    assert (out / "inspect.json").is_file()


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["fast", "fit", "--data", str(tmp_path / "nope.npy"), "--out", str(tmp_path / "x")]) == 1
    assert "no such file" in capsys.readouterr().err
    np.save(tmp_path / "a.npy", np.zeros((30, 7)))
    bad = ["fast", "fit", "--data", str(tmp_path / "a.npy"), "--out", str(tmp_path / "x"), "--passthrough-dims", "x"]
    assert main(bad) == 1
    assert "--passthrough-dims" in capsys.readouterr().err
    assert main(["fast"]) == 2
