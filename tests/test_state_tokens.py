"""Proprioceptive state tokens: binning, their place in the sequence, training and the policy."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from conftest import tiny_train_overrides
from emu3_vla.data.sequence import STATE, SequenceBuilder, SequenceSpec
from emu3_vla.data.state_tokens import StateBinning
from emu3_vla.data.token_cache import TokenCache
from emu3_vla.text_tokenizer import TextTokenizer
from emu3_vla.training.config import ConfigError, load_config
from emu3_vla.training.trainer import train
from emu3_vla.vision import ViewSpec
from emu3_vla.vla import VLAModel
from emu3_vla.vocab import STATE_VOCAB_SIZE, TokenLayout, TokenRangeError

LAYOUT = TokenLayout(text_size=2048, codebook_size=1024)
DIMS = (0, 1, 2, 6)


def fitted_spec(**kw) -> SequenceSpec:
    rng = np.random.default_rng(0)
    binning = StateBinning.fit(rng.normal(size=(500, 15)), DIMS)
    return SequenceSpec(
        views=("static",), frames=2, chunk=10, state_dims=DIMS, state_low=binning.low, state_high=binning.high, **kw
    )


def obs(seed: int, with_state: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    out = {"static": rng.integers(0, 1024, (4, 4))}
    if with_state:
        out[STATE] = rng.normal(size=15).astype(np.float32)
    return out


def test_binning_covers_the_training_range_and_clips_outside():
    rng = np.random.default_rng(1)
    states = rng.uniform(-2, 3, size=(10_000, 8))
    binning = StateBinning.fit(states, (0, 3, 7))
    bins = binning.encode(states)
    assert bins.shape == (10_000, 3) and bins.min() == 0 and bins.max() == 255
    inside = (states[:, [0, 3, 7]] > binning.low) & (states[:, [0, 3, 7]] < binning.high)
    error = np.abs(binning.centers(bins) - states[:, [0, 3, 7]])[inside]
    width = (np.asarray(binning.high) - np.asarray(binning.low)) / 256
    assert error.max() <= width.max() / 2 + 1e-9  # inside the range: half a bin at most
    far = np.array([[-100.0] * 8, [100.0] * 8])
    assert binning.encode(far).tolist() == [[0, 0, 0], [255, 255, 255]]
    assert np.all(np.diff(binning.encode(np.linspace(-3, 4, 50)[:, None].repeat(8, 1))[:, 0]) >= 0)


def test_binning_rejects_missing_dims_and_bad_values():
    with pytest.raises(ValueError, match="index 15"):
        StateBinning.fit(np.zeros((10, 15)), (0, 15))
    binning = StateBinning.fit(np.random.default_rng(0).normal(size=(50, 15)), (0, 14))
    with pytest.raises(ValueError, match="robot_obs"):
        binning.encode(np.zeros(7))
    with pytest.raises(ValueError, match="NaN"):
        binning.encode(np.full(15, np.nan))


def test_state_ids_sit_just_below_the_action_ids():
    assert LAYOUT.state_range == range(1024 - STATE_VOCAB_SIZE, 1024)
    assert LAYOUT.state_to_id(0) == LAYOUT.action_range.start - 1
    ids = LAYOUT.state_to_id(np.arange(STATE_VOCAB_SIZE))
    assert set(ids.tolist()) == set(LAYOUT.state_range) and not LAYOUT.is_action_id(ids).any()
    with pytest.raises(TokenRangeError):
        LAYOUT.state_to_id(STATE_VOCAB_SIZE)
    with pytest.raises(TokenRangeError, match="state tokens need"):
        TokenLayout(text_size=1100, codebook_size=16).state_to_id(0)


def test_state_tokens_follow_each_frame_and_carry_no_loss():
    tok = TextTokenizer.builtin_for(LAYOUT)
    plain = SequenceBuilder(LAYOUT, tok, SequenceSpec(views=("static",), frames=2, chunk=10))
    with_state = SequenceBuilder(LAYOUT, tok, fitted_spec())
    observations, actions = [obs(0), obs(1)], [[1, 2, 3], [4, 5]]
    a = plain.build("open the drawer", observations, actions)
    b = with_state.build("open the drawer", observations, actions)
    assert len(b) == len(a) + 2 * len(DIMS)
    is_state = np.isin(b.input_ids, list(LAYOUT.state_range))
    # Each frame's state tokens come right after its (last) vision block's [EOV], then [BOA].
    eov = np.flatnonzero(b.input_ids == LAYOUT.eov_id)
    for e in eov:
        span = slice(e + 1, e + 1 + len(DIMS))
        assert np.all(is_state[span]) and np.all(b.loss_weights[span] == 0)
        assert b.input_ids[e + 1 + len(DIMS)] == LAYOUT.boa_id
    expected = LAYOUT.state_to_id(with_state.spec.state_binning().encode(observations[1][STATE]))
    assert b.input_ids[eov[1] + 1 : eov[1] + 1 + len(DIMS)].tolist() == expected.tolist()
    # The inference prompt is the training sequence up to the last frame's [BOA].
    prompt = with_state.prompt("open the drawer", [(observations[0], np.asarray(actions[0]))], observations[1])
    assert prompt.tolist() == b.input_ids[: len(prompt)].tolist() and prompt[-1] == LAYOUT.boa_id


def test_missing_or_unfitted_state_is_a_clear_error():
    tok = TextTokenizer.builtin_for(LAYOUT)
    builder = SequenceBuilder(LAYOUT, tok, fitted_spec())
    with pytest.raises(KeyError, match="proprioceptive state"):
        builder.build("open the drawer", [obs(0, False), obs(1, False)], [[1], [2]])
    unfitted = SequenceBuilder(LAYOUT, tok, SequenceSpec(views=("static",), state_dims=DIMS))
    with pytest.raises(ValueError, match="not fitted"):
        unfitted.prompt("open the drawer", [], obs(0))
    with pytest.raises(ValueError, match="reserved"):
        SequenceSpec(views=("static", STATE))


def test_spec_round_trips_through_json():
    spec = fitted_spec()
    back = SequenceSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back == spec and back.state_binning() == spec.state_binning()


def test_training_fits_saves_and_uses_the_state_range(tiny_dataset, tiny_vq_dir, tmp_path, capsys):
    overrides = tiny_train_overrides(
        tiny_dataset, tiny_vq_dir, tmp_path / "run", tmp_path / "cache", steps=2, **{"sequence.state_dims": "[0,1,2]"}
    )
    result = train(load_config("train", overrides))
    vla = VLAModel.load(result.run_dir / "model")
    assert vla.spec.state_dims == (0, 1, 2) and len(vla.spec.state_low) == 3
    cache = TokenCache(next(p for p in (tmp_path / "cache").iterdir() if (p / "manifest.json").is_file()))
    states = np.concatenate([ep.state for ep in cache.episodes()])
    assert states.shape[1] == 15
    np.testing.assert_allclose(vla.spec.state_low, np.quantile(states[:, :3], 0.01, axis=0), rtol=1e-6)
    from emu3_vla.cli import main

    assert main(["info", "--checkpoint", str(result.run_dir / "model")]) == 0
    assert "state dims [0, 1, 2]" in capsys.readouterr().out
    # The policy reads robot_obs and writes its bins into the prompt.
    from policies.emu3_policy import Emu3VLAPolicy

    policy = Emu3VLAPolicy(vla)
    rng = np.random.default_rng(0)
    base = {
        "rgb_obs": {
            "rgb_static": rng.integers(0, 255, (64, 64, 3), np.uint8),
            "rgb_gripper": rng.integers(0, 255, (32, 32, 3), np.uint8),
        },
        "robot_obs": states[0],
    }
    moved = {**base, "robot_obs": states[0] + np.array([0.5] * 3 + [0.0] * 12, np.float32)}
    frames = vla.tokenize([policy.windows.read_frame(o) for o in (base, moved)])
    prompts = [vla.builder().prompt("open the drawer", [], c) for c in frames]
    assert len(prompts[0]) == len(prompts[1]) and prompts[0].tolist() != prompts[1].tolist()
    action = policy.step(base, "open the drawer")
    assert action.shape == (7,) and np.isfinite(action).all()
    with pytest.raises(KeyError, match="robot_obs"):
        Emu3VLAPolicy(vla).step({"rgb_obs": base["rgb_obs"]}, "open the drawer")


def test_state_without_a_state_key_is_a_config_error(tiny_dataset, tiny_vq_dir, tmp_path):
    overrides = tiny_train_overrides(
        tiny_dataset,
        tiny_vq_dir,
        tmp_path / "run",
        tmp_path / "cache",
        **{"sequence.state_dims": "[0]", "data.state_key": "null"},
    )
    with pytest.raises(ConfigError, match="data.state_key"):
        train(load_config("train", overrides))


def state_vla() -> VLAModel:
    """The policy tests' tiny random VLA, reading tcp xyz and gripper width as state tokens."""
    from test_policy import tiny_vla

    vla = tiny_vla()
    states = np.random.default_rng(3).normal(size=(200, 15))
    binning = StateBinning.fit(states, (0, 1, 2, 6))
    vla.spec = dataclasses.replace(vla.spec, state_dims=binning.dims, state_low=binning.low, state_high=binning.high)
    return vla


def test_request_format_requires_and_checks_the_state():
    from policies.serving.protocol import STATE_KEY, RequestError, RequestFormat

    fmt = RequestFormat({"static": ViewSpec("static", 16, 16)}, 1024, state_size=7)
    base = {"prompt": "open the drawer", "observation/image": np.zeros((16, 16, 3), np.uint8)}
    assert fmt.describe()["state_used"] is True
    assert fmt.parse({**base, STATE_KEY: np.arange(15.0)}).observation.state.shape == (15,)
    with pytest.raises(RequestError, match="missing 'observation/state'"):
        fmt.parse(base)
    with pytest.raises(RequestError, match="has 3 values"):
        fmt.parse({**base, STATE_KEY: np.zeros(3)})
    with pytest.raises(RequestError, match="NaN"):
        fmt.parse({**base, STATE_KEY: np.full(15, np.nan)})
    image_only = RequestFormat({"static": ViewSpec("static", 16, 16)}, 1024)
    assert image_only.parse(base).observation.state is None and not image_only.describe()["state_used"]


def test_served_state_model_gives_the_local_actions():
    import torch
    from test_policy import calvin_obs

    from policies.client import RemotePolicy
    from policies.emu3_policy import Emu3VLAPolicy
    from policies.server import PolicyServer, ServerConfig, ServerThread
    from policies.serving.served_policy import ServedPolicy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        vla = state_vla()
        local = Emu3VLAPolicy(vla, execute_steps=5)
        rng = np.random.default_rng(0)
        with (
            ServerThread(PolicyServer(ServedPolicy(vla, execute_steps=5), ServerConfig(port=0))) as thread,
            RemotePolicy("127.0.0.1", thread.port) as remote,
        ):
            assert remote.metadata["state_used"] is True
            for t in range(10):
                obs = {**calvin_obs(t), "robot_obs": rng.normal(size=15).astype(np.float32)}
                np.testing.assert_array_equal(remote.step(obs, "open the drawer"), local.step(obs, "open the drawer"))
            no_state = RemotePolicy("127.0.0.1", thread.port, state_key=None)
            with pytest.raises(Exception, match="observation/state"):
                no_state.step(calvin_obs(0), "open the drawer")
            no_state.close()
    finally:
        torch.set_num_threads(threads)
