"""ActionNormalizer: quantile scaling to [-1, 1], pass-through gripper, inverse, persistence."""

import numpy as np
import pytest

from action_tokenizer import ActionNormalizer, binarize_gripper, default_gripper_dims


def _actions(n: int = 5000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cont = rng.normal(np.array([0, 1, -1, 0, 5, 0]), [0.01, 0.02, 0.5, 1.0, 2.0, 3.0], size=(n, 6))
    grip = rng.choice([-1.0, 1.0], size=(n, 1))
    return np.concatenate([cont, grip], axis=1)


def test_fit_maps_percentiles_to_unit_range_and_clips():
    acts = _actions()
    norm = ActionNormalizer.fit(acts)
    q1, q99 = np.percentile(acts[:, :6], [1, 99], axis=0)
    np.testing.assert_allclose(norm.low[:6], q1)
    np.testing.assert_allclose(norm.high[:6], q99)
    out = norm.transform(acts)
    assert out.min() >= -1 and out.max() <= 1
    # about 1 % of the values sit beyond each percentile and are clipped exactly onto the bound
    clipped = np.mean(np.abs(out[:, :6]) == 1.0)
    assert 0.01 < clipped < 0.03
    np.testing.assert_allclose(norm.transform(np.r_[q1, 1.0])[:6], -1)
    np.testing.assert_allclose(norm.transform(np.r_[q99, 1.0])[:6], 1)


def test_default_passthrough_is_the_calvin_gripper_only():
    acts = _actions()
    norm = ActionNormalizer.fit(acts)
    assert norm.passthrough_dims == (6,)
    np.testing.assert_array_equal(norm.transform(acts)[:, 6], acts[:, 6])
    assert default_gripper_dims(7) == (6,)
    assert default_gripper_dims(6) == ()
    assert ActionNormalizer.fit(acts[:, :6]).passthrough_dims == ()


def test_passthrough_dims_are_configurable_and_negative_indices_resolve():
    acts = _actions()
    norm = ActionNormalizer.fit(acts, passthrough_dims=[-1, 0])
    assert norm.passthrough_dims == (0, 6)
    np.testing.assert_array_equal(norm.transform(acts)[:, 0], acts[:, 0])
    assert ActionNormalizer.fit(acts, passthrough_dims=()).passthrough_dims == ()
    with pytest.raises(ValueError, match="out of range for 7-d"):
        ActionNormalizer.fit(acts, passthrough_dims=[7])


def test_inverse_undoes_transform_inside_the_range():
    acts = _actions()
    norm = ActionNormalizer.fit(acts)
    inside = np.clip(acts, norm.low, norm.high)
    np.testing.assert_allclose(norm.inverse(norm.transform(inside)), inside, atol=1e-12)


def test_constant_dimension_maps_to_zero_and_back_to_its_value():
    acts = _actions()
    acts[:, 2] = 0.25
    norm = ActionNormalizer.fit(acts)
    assert np.all(norm.transform(acts)[:, 2] == 0)
    np.testing.assert_allclose(norm.inverse(np.full((3, 7), 0.7))[:, 2], 0.25)


def test_round_trips_through_a_dict():
    norm = ActionNormalizer.fit(_actions(), passthrough_dims=[6], lower_percentile=2, upper_percentile=98)
    again = ActionNormalizer.from_dict(norm.to_dict())
    assert again == norm
    assert again.lower_percentile == 2 and again.upper_percentile == 98


def test_bad_inputs_say_what_is_wrong():
    acts = _actions()
    norm = ActionNormalizer.fit(acts)
    with pytest.raises(ValueError, match="fitted on 7-d actions"):
        norm.transform(acts[:, :5])
    bad = acts.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ActionNormalizer.fit(bad)
    with pytest.raises(ValueError, match="zero actions"):
        ActionNormalizer.fit(np.zeros((0, 7)))
    with pytest.raises(ValueError, match="lack"):
        ActionNormalizer.from_dict({"low": [0.0]})


def test_binarize_gripper_is_sign_with_zero_open():
    chunk = np.zeros((2, 3, 7))
    chunk[..., 6] = [[-0.3, 0.0, 0.2], [-1e-9, 5.0, -5.0]]
    chunk[..., 0] = -0.5
    out = binarize_gripper(chunk)
    np.testing.assert_array_equal(out[..., 6], [[-1, 1, 1], [-1, 1, -1]])
    np.testing.assert_array_equal(out[..., 0], chunk[..., 0])  # other dims untouched
    np.testing.assert_array_equal(chunk[0, 0, 6], -0.3)  # input not modified
