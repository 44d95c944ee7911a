"""The policy's decoder hook: ``decoder="static"`` / ``"parallel"`` act exactly like the default."""

from __future__ import annotations

import numpy as np
import pytest

from action_tokenizer import FastTokenizer
from emu3_vla.checkpoint import Emu3Bundle
from emu3_vla.data.sequence import SequenceSpec
from emu3_vla.vision import ViewSpec
from emu3_vla.vla import VLAModel
from policies.emu3_policy import Emu3VLAPolicy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def vla() -> VLAModel:
    rng = np.random.default_rng(0)
    t = np.arange(10)[None, :, None]
    arm = 0.5 * np.sin(t / 4 + rng.uniform(0, 6, (200, 1, 6)))
    gripper = np.sign(rng.normal(size=(200, 1, 1))) * np.ones((1, 10, 1))
    tokenizer = FastTokenizer.fit(np.concatenate([arm, gripper], axis=2))
    views = {"static": ViewSpec("static", 32, 32), "gripper": ViewSpec("gripper", 16, 16)}
    spec = SequenceSpec(views=("static", "gripper"), frames=2, chunk=10)
    return VLAModel(Emu3Bundle.from_preset("tiny", seed=0), tokenizer, spec, views)


def observation(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "rgb_obs": {
            "rgb_static": rng.integers(0, 255, (200, 200, 3), dtype=np.uint8),
            "rgb_gripper": rng.integers(0, 255, (84, 84, 3), dtype=np.uint8),
        }
    }


def test_fast_decoders_act_exactly_like_plain_decoding(vla):
    instructions = ["open the drawer", "turn on the led", "lift the red block from the sliding cabinet"]
    policies = {name: Emu3VLAPolicy(vla, execute_steps=5, decoder=name) for name in ("plain", "static", "parallel")}
    for step in range(15):  # queries at steps 0, 5, 10: the later ones carry the previous chunk
        obs = [observation(100 * e + step) for e in range(3)]
        actions = {name: p.act(obs, instructions) for name, p in policies.items()}
        np.testing.assert_array_equal(actions["static"], actions["plain"])
        np.testing.assert_array_equal(actions["parallel"], actions["plain"])
    plain = policies["plain"].stats.as_dict()
    assert plain["queries"] == 9 and plain["tokens"] > 0
    for name in ("static", "parallel"):
        assert policies[name].stats.as_dict() == plain
        assert policies[name].decoding.fast.prefix_cache.hits == 6  # the instruction of each env, queries 2 and 3


def test_decoder_choice_is_checked(vla):
    with pytest.raises(ValueError, match="unknown decoder 'beam'"):
        Emu3VLAPolicy(vla, decoder="beam")
    with pytest.raises(ValueError, match="decoder_options apply"):
        Emu3VLAPolicy(vla, decoder_options={"draft_tokens": 3})
    policy = Emu3VLAPolicy(vla, decoder="parallel", decoder_options={"draft_tokens": 3})
    assert policy.decoding.fast.draft == 3 and policy.decoding.decoder == "parallel"
