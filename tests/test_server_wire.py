"""The wire format (openpi-compatible msgpack + numpy) and the request checks of the policy server."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from emu3_vla.vision import ViewSpec
from policies.serving.protocol import Limits, RequestError, RequestFormat
from policies.wire import WireError, packb, unpackb

# ------------------------------------------------------------------------------- wire


def test_round_trip_keeps_values_dtypes_and_shapes():
    message = {
        "prompt": "open the drawer",
        "observation/image": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3),
        "observation/state": np.linspace(-1, 1, 15, dtype=np.float32),
        "nested": {"codes": np.array([[1, 2], [3, 4]], dtype=np.int16), "flags": np.array([True, False])},
        "empty": np.zeros((0, 7)),
        "zero_d": np.array(3.5),
        "scalar": np.float32(1.25),
        "list": [1, "two", b"three"],
    }
    out = unpackb(packb(message))
    assert out["prompt"] == "open the drawer" and out["list"] == [1, "two", b"three"]
    for key in ("observation/image", "observation/state", "empty", "zero_d"):
        assert out[key].dtype == message[key].dtype and out[key].shape == message[key].shape
        np.testing.assert_array_equal(out[key], message[key])
    np.testing.assert_array_equal(out["nested"]["codes"], message["nested"]["codes"])
    assert out["nested"]["flags"].dtype == np.bool_
    assert isinstance(out["scalar"], np.float32) and out["scalar"] == np.float32(1.25)
    out["observation/image"][0, 0, 0] = 7  # decoded arrays are writable (torch.as_tensor needs that)


def test_encoding_is_openpis_layout():
    """openpi-client reads b"__ndarray__", b"data", b"dtype" (numpy's dtype.str) and b"shape"."""
    array = np.arange(6, dtype="<f4").reshape(2, 3)
    raw = msgpack.unpackb(packb({"a": array}), raw=False)
    encoded = raw["a"]
    assert set(encoded) == {b"__ndarray__", b"data", b"dtype", b"shape"}
    assert encoded[b"__ndarray__"] is True and encoded[b"dtype"] == "<f4" and list(encoded[b"shape"]) == [2, 3]
    assert encoded[b"data"] == array.tobytes()


def test_hand_written_str_marker_keys_and_big_endian_arrays_decode():
    array = np.arange(4, dtype=">i4")
    message = msgpack.packb(
        {"x": {"__ndarray__": True, "data": array.tobytes(), "dtype": array.dtype.str, "shape": [4]}},
        use_bin_type=True,
    )
    out = unpackb(message)["x"]
    np.testing.assert_array_equal(out, [0, 1, 2, 3])
    assert out.dtype.isnative


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
def test_any_numeric_array_round_trips_bit_exactly(array):
    out = unpackb(packb({"a": array}))["a"]
    assert out.dtype == array.dtype and out.shape == array.shape
    assert out.tobytes() == np.ascontiguousarray(array).tobytes()


def _fake_array(**fields):
    return msgpack.packb({"x": {b"__ndarray__": True, **fields}}, use_bin_type=True)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\xc1\xff garbage", "not valid msgpack"),
        (packb({"a": 1})[:-1], "not valid msgpack"),
        (_fake_array(data=b"\x00" * 5, dtype="<f4", shape=[2]), "needs 8 bytes but carries 5"),
        (_fake_array(data=b"\x00" * 8, dtype="|O", shape=[1]), "object dtype"),
        (_fake_array(data=b"\x00" * 8, dtype="not-a-dtype", shape=[1]), "unknown dtype"),
        (_fake_array(data=b"\x00" * 8, dtype="<f4", shape=[-2]), "non-negative"),
        (_fake_array(data="text", dtype="<f4", shape=[1]), "must be bytes"),
        (_fake_array(dtype="<f4", shape=[1]), "missing its 'data'"),
    ],
)
def test_malformed_bytes_raise_a_clear_wire_error(raw, match):
    with pytest.raises(WireError, match=match):
        unpackb(raw)


def test_object_arrays_and_python_objects_are_refused_when_packing():
    with pytest.raises(WireError, match="object dtype"):
        packb({"a": np.array([{"x": 1}], dtype=object)})
    with pytest.raises(WireError, match="cannot send a set"):
        packb({"a": {1, 2}})


# --------------------------------------------------------------------------- requests

VIEWS = {"static": ViewSpec("static", 32, 32), "gripper": ViewSpec("gripper", 16, 16)}


@pytest.fixture
def fmt():
    return RequestFormat(VIEWS, codebook_size=1024, limits=Limits(max_image_side=256, max_prompt_chars=50))


def good_request(**overrides):
    request = {
        "prompt": "open the drawer",
        "observation/image": np.zeros((200, 200, 3), np.uint8),
        "observation/wrist_image": np.zeros((84, 84, 3), np.uint8),
        "observation/state": np.zeros(15),
        "unknown/extra": "ignored",
    }
    request.update(overrides)
    return {k: v for k, v in request.items() if v is not None}


def test_a_good_request_parses_to_pixels_and_a_prompt(fmt):
    request = fmt.parse(good_request())
    assert not request.reset and request.prompt == "open the drawer"
    assert set(request.observation.pixels) == {"static", "gripper"} and not request.observation.codes


def test_token_mode_request_parses_to_int64_codes(fmt):
    codes = np.full((4, 4), 1023, np.uint16)
    request = fmt.parse(good_request(**{"observation/image": None, "observation/image_tokens": codes}))
    assert request.observation.codes["static"].dtype == np.int64
    assert set(request.observation.pixels) == {"gripper"}


def test_reset_alone_and_reset_with_an_observation(fmt):
    assert fmt.parse({"reset": True}).observation is None
    both = fmt.parse(good_request(reset=True))
    assert both.reset and both.observation is not None


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"prompt": None}, "missing 'prompt'"),
        ({"prompt": "  "}, "non-empty string"),
        ({"prompt": "x" * 51}, "at most 50"),
        ({"observation/wrist_image": None}, "missing camera view 'gripper'.*observation/wrist_image_tokens"),
        ({"observation/image": np.zeros((32, 32, 3), np.float32)}, "must be uint8"),
        ({"observation/image": np.zeros((3, 32, 32), np.uint8)}, "channels first"),
        ({"observation/image": np.zeros((300, 32, 3), np.uint8)}, "1..256 pixels"),
        ({"observation/image": [[1, 2, 3]]}, "must be a numpy array"),
        ({"observation/image_tokens": np.zeros((4, 4), np.int64)}, "not both"),
        ({"observation/image": None, "observation/image_tokens": np.zeros((5, 5), np.int64)}, r"shape \(4, 4\)"),
        ({"observation/image": None, "observation/image_tokens": np.full((4, 4), 1024)}, "codebook has 1024"),
        ({"observation/image": None, "observation/image_tokens": np.zeros((4, 4), np.float32)}, "integer VQ"),
        ({"reset": 1}, "true or false"),
    ],
)
def test_bad_requests_name_the_key_and_the_fix(fmt, overrides, match):
    with pytest.raises(RequestError, match=match):
        fmt.parse(good_request(**overrides))


def test_a_request_must_be_a_map_with_string_keys(fmt):
    with pytest.raises(RequestError, match="msgpack map"):
        fmt.parse([1, 2])
    with pytest.raises(RequestError, match="keys must be strings"):
        fmt.parse({1: "x"})
