"""The closed-loop Emu3 policy on a tiny random model (the same code path as a trained one)."""

from __future__ import annotations

import numpy as np
import pytest

from action_tokenizer import FastTokenizer
from emu3_vla.checkpoint import Emu3Bundle
from emu3_vla.data.sequence import SequenceSpec
from emu3_vla.vision import ViewSpec
from emu3_vla.vla import VLAModel
from policies.base import RandomPolicy
from policies.calvin_adapter import CalvinModel
from policies.emu3_policy import Emu3VLAPolicy


def tiny_vla(seed: int = 0) -> VLAModel:
    rng = np.random.default_rng(seed)
    t = np.arange(10)[None, :, None]
    arm = 0.5 * np.sin(t / 4 + rng.uniform(0, 6, (200, 1, 6)))
    gripper = np.sign(rng.normal(size=(200, 1, 1))) * np.ones((1, 10, 1))
    chunks = np.concatenate([arm, gripper], axis=2)
    tok = FastTokenizer.fit(chunks)
    bundle = Emu3Bundle.from_preset("tiny", seed=seed)
    views = {"static": ViewSpec("static", 32, 32), "gripper": ViewSpec("gripper", 16, 16)}
    return VLAModel(bundle, tok, SequenceSpec(views=("static", "gripper"), frames=2, chunk=10), views)


def calvin_obs(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "rgb_obs": {
            "rgb_static": rng.integers(0, 255, (200, 200, 3), dtype=np.uint8),
            "rgb_gripper": rng.integers(0, 255, (84, 84, 3), dtype=np.uint8),
        },
        "robot_obs": np.zeros(15, np.float32),
        "scene_obs": np.zeros(24, np.float32),
    }


@pytest.fixture(scope="module")
def vla():
    return tiny_vla()


def test_actions_are_valid_and_chunks_are_executed(vla):
    policy = Emu3VLAPolicy(vla)
    actions = np.stack([policy.step(calvin_obs(s), "open the drawer") for s in range(25)])
    assert actions.shape == (25, 7) and np.isfinite(actions).all()
    assert np.abs(actions).max() <= 1.0 and set(np.unique(actions[:, 6])) <= {-1.0, 1.0}
    assert policy.stats.queries == 3  # steps 0, 10, 20
    assert policy.stats.tokens > 0 and policy.stats.malformed >= 0
    assert sum(policy.stats.issues.values()) >= policy.stats.malformed


def test_second_query_sees_the_previous_frame_and_its_actions(vla):
    policy = Emu3VLAPolicy(vla, execute_steps=1)
    policy.step(calvin_obs(0), "open the drawer")
    history = policy.windows._history[0]
    assert len(history) == 1
    codes, fast_ids = history[0]
    builder = vla.builder()
    prompt = builder.prompt("open the drawer", history, codes)
    first = builder.prompt("open the drawer", [], codes)
    assert len(prompt) == len(first) + len(builder.observation_ids(codes)) + len(fast_ids) + 2
    policy.reset(0)
    assert not policy.windows._history.get(0)


def test_batched_environments_match_separate_rollouts(vla):
    batched = Emu3VLAPolicy(vla)
    singles = [Emu3VLAPolicy(vla) for _ in range(3)]
    instructions = ["open the drawer", "turn on the led", "lift the red block from the sliding cabinet"]
    for step in range(12):
        obs = [calvin_obs(100 * e + step) for e in range(3)]
        together = batched.act(obs, instructions)
        apart = np.stack([singles[e].step(obs[e], instructions[e]) for e in range(3)])
        np.testing.assert_allclose(together, apart, atol=1e-6)


def test_new_instruction_restarts_the_window(vla):
    policy = Emu3VLAPolicy(vla)
    policy.step(calvin_obs(0), "open the drawer")
    policy.step(calvin_obs(1), "close the drawer")
    assert policy.stats.queries == 2


def test_execute_steps_is_bounded_by_the_chunk(vla):
    with pytest.raises(ValueError, match=r"execute_steps must be in \[1, 10\]"):
        Emu3VLAPolicy(vla, execute_steps=11)


def test_calvin_interface_and_random_policy(vla):
    model = CalvinModel(Emu3VLAPolicy(vla))
    model.reset()
    assert model.step(calvin_obs(3), "open the drawer").shape == (7,)
    rnd = RandomPolicy(seed=1).act([calvin_obs(0)] * 4, ["x"] * 4)
    assert rnd.shape == (4, 7) and set(np.unique(rnd[:, 6])) <= {-1.0, 1.0}


def test_saved_vla_policy_loads_and_acts_identically(vla, tmp_path):
    vla.save(tmp_path / "vla")
    loaded = Emu3VLAPolicy.from_checkpoint(tmp_path / "vla")
    original = Emu3VLAPolicy(vla)
    obs = calvin_obs(7)
    np.testing.assert_array_equal(loaded.step(obs, "open the drawer"), original.step(obs, "open the drawer"))


def test_exact_length_streams_always_decode_to_whole_chunks(vla):
    """A random model writes streams of the wrong length when free; with the length constraint
    (default) every stream holds exactly T*D coefficients, and the fast decoders (static, parallel
    with drafts) produce exactly the plain decoder's tokens under it."""
    counts = vla.action_tokenizer.coefficients_per_token()
    free = Emu3VLAPolicy(vla, exact_length=False, execute_steps=1)
    for s in range(12):
        free.step(calvin_obs(s), "open the drawer")
    length_issues = ("empty", "too_short", "too_long")
    assert sum(free.stats.issues[k] for k in length_issues) > 0, "the random model should slip when free"
    streams = {}
    for decoder in ("plain", "static", "parallel"):
        policy = Emu3VLAPolicy(vla, decoder=decoder, execute_steps=1)
        assert policy.decoding.exact_length
        streams[decoder] = []
        for s in range(12):
            policy.step(calvin_obs(s), "open the drawer")
            stream = policy.windows._history[0][-1][1]
            assert counts[stream].sum() == 70
            streams[decoder].append(stream.tolist())
        assert policy.stats.queries == 12 and sum(policy.stats.issues[k] for k in length_issues) == 0
    assert streams["static"] == streams["plain"] and streams["parallel"] == streams["plain"]
