"""The websocket policy server and RemotePolicy, on loopback with a tiny random VLA.

Every server runs in a background thread on a free port and is stopped at the end; every request
loop is bounded and every socket operation has a timeout.
"""

from __future__ import annotations

import http.client
import threading
import time

import numpy as np
import pytest
import torch
import websockets
from test_policy import calvin_obs, tiny_vla
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from emu3_vla.checkpoint import Emu3Bundle
from policies.client import RemotePolicy, RemotePolicyError, policy_from_uri
from policies.emu3_policy import Emu3VLAPolicy
from policies.server import PolicyServer, ServerConfig, ServerThread
from policies.serving.edge import EdgeTokenizer
from policies.serving.served_policy import ServedPolicy
from policies.wire import packb, unpackb

API_KEY = "test-key-123"
LIMIT = 256 * 1024  # CALVIN-size requests (~140 KB) fit
TIMEOUT = 60.0


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Server and test share 2 busy cores: oversubscribed intra-op threads make tiny models crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def vla():
    return tiny_vla()


@pytest.fixture(scope="module")
def served(vla):
    """One server with an API key and small limits, shared by the tests that do not need their own."""
    config = ServerConfig(port=0, api_key=API_KEY, max_message_bytes=LIMIT, batch_wait_ms=20.0, idle_timeout_s=60)
    with ServerThread(PolicyServer(ServedPolicy(vla, execute_steps=4), config)) as thread:
        yield thread


def open_raw(port: int, api_key: str | None = API_KEY):
    headers = {"Authorization": f"Api-Key {api_key}"} if api_key else None
    ws = connect(f"ws://127.0.0.1:{port}", compression=None, max_size=None, additional_headers=headers, proxy=None)
    return ws, unpackb(ws.recv(timeout=TIMEOUT))


def pixel_request(seed: int, prompt: str = "open the drawer", **extra) -> dict:
    obs = calvin_obs(seed)
    return {
        "prompt": prompt,
        "observation/image": obs["rgb_obs"]["rgb_static"],
        "observation/wrist_image": obs["rgb_obs"]["rgb_gripper"],
        "observation/state": obs["robot_obs"],
        **extra,
    }


def ask(ws, message) -> dict:
    ws.send(message if isinstance(message, bytes | str) else packb(message))
    reply = ws.recv(timeout=TIMEOUT)
    assert isinstance(reply, bytes), f"server answered with an error: {reply}"
    return unpackb(reply)


def expect_refusal(ws, message) -> tuple[str, int]:
    """openpi's error convention: a text frame with the explanation, then a close."""
    ws.send(message)
    text = ws.recv(timeout=TIMEOUT)
    assert isinstance(text, str)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        ws.recv(timeout=TIMEOUT)
    return text, closed.value.rcvd.code


def health(port: int) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# ------------------------------------------------------------------ round trip


def test_round_trip_metadata_chunk_timing_and_reset(served):
    ws, meta = open_raw(served.port)
    with ws:
        assert meta["server"] == "emu3-vla" and meta["action_horizon"] == 4 and meta["action_dim"] == 7
        assert meta["views"]["static"]["image_key"] == "observation/image"
        assert meta["views"]["gripper"]["code_shape"] == [2, 2]
        reply = ask(ws, pixel_request(0))
        actions = reply["actions"]
        assert actions.shape == (4, 7) and np.isfinite(actions).all()
        assert set(np.unique(actions[:, 6])) <= {-1.0, 1.0}
        assert reply["server_timing"]["infer_ms"] > 0 and reply["server_timing"]["batch_size"] == 1
        assert ask(ws, {"reset": True})["reset"] is True
        assert "prev_total_ms" in ask(ws, pixel_request(1))["server_timing"]
    assert health(served.port) == (200, b"OK\n")


def test_served_policy_gives_exactly_the_local_actions(served, vla):
    """Episodes of CALVIN-format observations: a reset between episodes, an instruction change inside one."""
    local = Emu3VLAPolicy(vla, execute_steps=4)
    with RemotePolicy("127.0.0.1", served.port, api_key=API_KEY) as remote:
        episodes = [
            ["open the drawer"] * 9,
            ["open the drawer"] * 5,
            ["turn on the led"] * 3 + ["push the sliding door to the left side"] * 6,
        ]
        for e, instructions in enumerate(episodes):
            local.reset(0)
            remote.reset(0)
            for t, text in enumerate(instructions):
                obs = calvin_obs(1000 * e + t)
                np.testing.assert_array_equal(remote.step(obs, text), local.step(obs, text))
        assert remote.requests == local.stats.queries == 3 + 2 + 3  # one request per model query


def test_the_fast_decoder_serves_the_local_policys_actions(vla):
    local = Emu3VLAPolicy(vla, execute_steps=4)
    policy = ServedPolicy(vla, execute_steps=4, decoder="static")
    with (
        ServerThread(PolicyServer(policy, ServerConfig(port=0))) as thread,
        RemotePolicy("127.0.0.1", thread.port) as remote,
    ):
        for t in range(10):
            text = "open the drawer" if t < 6 else "turn on the led"
            obs = calvin_obs(700 + t)
            np.testing.assert_array_equal(remote.step(obs, text), local.step(obs, text))


def test_remote_act_batches_environments_like_the_local_policy(served, vla):
    local = Emu3VLAPolicy(vla, execute_steps=4)
    instructions = ["open the drawer", "turn on the led", "lift the red block"]
    with RemotePolicy("127.0.0.1", served.port, api_key=API_KEY) as remote:
        for step in range(5):
            obs = [calvin_obs(50 * e + step) for e in range(3)]
            np.testing.assert_allclose(remote.act(obs, instructions), local.act(obs, instructions), atol=1e-6)
        assert remote.requests == 6
        # environment 1 has finished: the evaluator keeps querying 0 and 2 only
        for step in range(5, 9):
            obs = [calvin_obs(50 * e + step) for e in (2, 0)]
            texts = [instructions[2], instructions[0]]
            np.testing.assert_allclose(remote.act(obs, texts, [2, 0]), local.act(obs, texts, [2, 0]), atol=1e-6)
        assert remote.requests == 6 + 2
        with pytest.raises(ValueError, match="distinct"):
            remote.act(obs, texts, [0, 0])


def test_token_mode_skips_the_servers_vq_and_matches_pixels(vla, tmp_path):
    vla.save(tmp_path / "vla")
    policy = ServedPolicy(vla, execute_steps=5)
    encoded = []
    vision = policy.vla.vision()
    vq_encode = vision.encode_images
    vision.encode_images = lambda images, **kw: encoded.append(len(images)) or vq_encode(images, **kw)
    local = Emu3VLAPolicy(vla, execute_steps=5)
    with ServerThread(PolicyServer(policy, ServerConfig(port=0))) as thread:
        tokenizer = EdgeTokenizer.from_checkpoint(tmp_path / "vla")  # loads the VQ only
        with RemotePolicy("127.0.0.1", thread.port, tokenizer=tokenizer) as remote:
            for t in range(10):
                obs = calvin_obs(300 + t)
                np.testing.assert_array_equal(remote.step(obs, "open the drawer"), local.step(obs, "open the drawer"))
            assert remote.requests == 2
        assert encoded == []  # the server never ran its VQ encoder
        other = EdgeTokenizer(Emu3Bundle.from_preset("tiny", seed=7).vision_tokenizer(vla.views))
        with pytest.raises(ValueError, match="fingerprint"):
            RemotePolicy("127.0.0.1", thread.port, tokenizer=other)


def test_playtable_rollout_matches_the_local_policy(served, vla):
    env_module = pytest.importorskip("envs.playtable.env", reason="the PlayTable environment is not available")
    local = Emu3VLAPolicy(vla, execute_steps=4)
    with env_module.PlayTableEnv() as env, RemotePolicy("127.0.0.1", served.port, api_key=API_KEY) as remote:
        obs = env.reset()
        for _ in range(9):
            action = remote.step(obs, "open the drawer")
            np.testing.assert_array_equal(action, local.step(obs, "open the drawer"))
            obs, _, _, _ = env.step(action)
        assert remote.requests == 3


# -------------------------------------------------------------- bad input


def _request_bytes(**overrides) -> bytes:
    request = pixel_request(5)
    request.update(overrides)
    return packb({k: v for k, v in request.items() if v is not None})


BAD_REQUESTS = {
    "garbage bytes": (b"\x93\x01\xc1 not msgpack", "not valid msgpack", 1008),
    "text frame": ("hello", "binary frames", 1003),
    "wrong image dtype": (
        _request_bytes(**{"observation/image": np.zeros((32, 32, 3), np.float32)}),
        "must be uint8",
        1008,
    ),
    "wrong token dtype": (
        _request_bytes(**{"observation/image": None, "observation/image_tokens": np.zeros((4, 4), np.float64)}),
        "integer VQ codes",
        1008,
    ),
    "missing prompt": (_request_bytes(prompt=None), "missing 'prompt'", 1008),
    "missing view": (_request_bytes(**{"observation/wrist_image": None}), "missing camera view 'gripper'", 1008),
    "not a map": (packb([1, 2, 3]), "msgpack map", 1008),
    "oversized frame": (
        _request_bytes(**{"observation/state": np.zeros(LIMIT, np.uint8)}),
        f"exceeds the server's limit of {LIMIT} bytes",
        1009,
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_an_error_and_the_server_keeps_serving(served, case):
    raw, match, code = BAD_REQUESTS[case]
    good, _ = open_raw(served.port)
    bad, _ = open_raw(served.port)
    with good, bad:
        text, close_code = expect_refusal(bad, raw)
        assert match in text and close_code == code
        assert ask(good, pixel_request(9))["actions"].shape == (4, 7)


def test_frames_far_beyond_the_limit_are_cut_off_by_the_library(served):
    bad, _ = open_raw(served.port)
    with bad, pytest.raises(websockets.ConnectionClosed) as closed:
        bad.send(b"\x00" * (2 * LIMIT + 1))
        bad.recv(timeout=TIMEOUT)
    assert closed.value.rcvd.code == 1009
    assert health(served.port)[0] == 200


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_a_missing_or_wrong_api_key_gets_http_401(served, key):
    with pytest.raises(InvalidStatus) as refused:
        open_raw(served.port, api_key=key)
    assert refused.value.response.status_code == 401
    assert b"Authorization: Api-Key" in refused.value.response.body
    with pytest.raises(RemotePolicyError, match="refused the API key"):
        RemotePolicy("127.0.0.1", served.port, api_key=key or "", connect_timeout=5)


def test_unreachable_server_and_bad_uris_give_clear_errors():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    with pytest.raises(RemotePolicyError, match="no policy server answers.*emu3-vla serve"):
        RemotePolicy("127.0.0.1", free_port, connect_timeout=0.5)
    with pytest.raises(ValueError, match="remote://host:port"):
        policy_from_uri("http://127.0.0.1:1")


def test_policy_from_uri_connects(served):
    with policy_from_uri(f"remote://127.0.0.1:{served.port}", api_key=API_KEY) as remote:
        assert remote.action_horizon == 4


# ------------------------------------------------------------- concurrency


def test_32_concurrent_clients_are_answered_in_shared_batches(served):
    clients = 32
    barrier = threading.Barrier(clients, timeout=TIMEOUT)
    replies: dict[int, list[dict]] = {}
    errors: list[BaseException] = []

    def client(i: int) -> None:
        try:
            ws, _ = open_raw(served.port)
            with ws:
                got = []
                for step in range(2):
                    barrier.wait()
                    got.append(ask(ws, pixel_request(100 * i + step, prompt=f"task {i % 4}")))
                replies[i] = got
        except BaseException as err:
            errors.append(err)
            barrier.abort()

    before = sum(n * count for n, count in served.server.batch_sizes.items())
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT * 3)
    assert not errors, errors[:1]
    assert sorted(replies) == list(range(clients))
    assert all(r["actions"].shape == (4, 7) for got in replies.values() for r in got)
    assert max(r["server_timing"]["batch_size"] for got in replies.values() for r in got) > 1
    after = served.server.batch_sizes
    assert sum(n * count for n, count in after.items()) - before == 2 * clients
    assert max(after) > 1


class ScriptedPolicy(ServedPolicy):
    """The real policy, plus a gate that holds one model step and a prompt that makes a step fail."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hold = threading.Event()
        self.started = threading.Event()
        self.release = threading.Event()

    def query_chunks(self, slots, observations, instructions):
        if self.hold.is_set():
            self.hold.clear()
            self.started.set()
            assert self.release.wait(TIMEOUT), "the test never released the held model step"
        if "explode" in instructions:
            raise RuntimeError("scripted model failure")
        return super().query_chunks(slots, observations, instructions)


@pytest.fixture
def scripted(vla):
    policy = ScriptedPolicy(vla, execute_steps=2)
    with ServerThread(PolicyServer(policy, ServerConfig(port=0, batch_wait_ms=1.0))) as thread:
        yield thread, policy
        policy.release.set()


def _in_thread(fn):
    result: dict = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as err:
            result["error"] = err

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def test_health_checks_and_new_clients_are_answered_while_a_model_step_runs(scripted):
    thread, policy = scripted
    ws, _ = open_raw(thread.port, api_key=None)
    with ws:
        policy.hold.set()
        worker, result = _in_thread(lambda: ask(ws, pixel_request(1)))
        assert policy.started.wait(TIMEOUT)
        assert health(thread.port) == (200, b"OK\n")  # the model step is still held here
        other, meta = open_raw(thread.port, api_key=None)  # so is a whole new handshake
        other.close()
        assert meta["action_horizon"] == 2 and "value" not in result
        policy.release.set()
        worker.join(TIMEOUT)
        assert result["value"]["actions"].shape == (2, 7)


def test_a_failing_row_is_isolated_from_its_batch(scripted):
    """While one step is held, a failing and a good request queue up and share the next batch."""
    thread, policy = scripted
    first, _ = open_raw(thread.port, api_key=None)
    bad, _ = open_raw(thread.port, api_key=None)
    good, _ = open_raw(thread.port, api_key=None)
    with first, bad, good:
        policy.hold.set()
        held, held_result = _in_thread(lambda: ask(first, pixel_request(1)))
        assert policy.started.wait(TIMEOUT)
        failing, failing_result = _in_thread(lambda: expect_refusal(bad, packb(pixel_request(2, prompt="explode"))))
        fine, fine_result = _in_thread(lambda: ask(good, pixel_request(3)))
        deadline = time.monotonic() + TIMEOUT
        while thread.server.worker.pending < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        policy.release.set()
        for t in (held, failing, fine):
            t.join(TIMEOUT)
        text, code = failing_result["value"]
        assert "model step failed" in text and "scripted model failure" in text and code == 1011
        assert fine_result["value"]["actions"].shape == (2, 7)
        assert held_result["value"]["actions"].shape == (2, 7)
    assert thread.server.batch_sizes.get(2, 0) >= 1  # bad and good really were one batch


def test_client_limit_idle_timeout_and_transparent_reconnect(vla):
    config = ServerConfig(port=0, max_clients=2, idle_timeout_s=0.5)
    with ServerThread(PolicyServer(ServedPolicy(vla, execute_steps=2), config)) as thread:
        remote = RemotePolicy("127.0.0.1", thread.port)
        other, _ = open_raw(thread.port, api_key=None)
        with pytest.raises(InvalidStatus) as full:
            open_raw(thread.port, api_key=None)
        assert full.value.response.status_code == 503 and b"server full" in full.value.response.body
        text = other.recv(timeout=TIMEOUT)  # idle for 0.5 s: the server explains, then closes
        assert "idle" in text
        with pytest.raises(websockets.ConnectionClosed) as closed:
            other.recv(timeout=TIMEOUT)
        assert closed.value.rcvd.code == 1001
        # the remote policy's connection was closed for idleness too: it reconnects on its own
        assert remote.step(calvin_obs(0), "open the drawer").shape == (7,)
        assert remote.reconnections == 1
        remote.close()


def test_remote_policy_survives_a_server_restart(vla):
    first = ServerThread(PolicyServer(ServedPolicy(vla, execute_steps=1), ServerConfig(port=0))).start()
    port = first.port
    with RemotePolicy("127.0.0.1", port) as remote:
        try:
            assert remote.step(calvin_obs(0), "open the drawer").shape == (7,)
        finally:
            first.stop()
        with ServerThread(PolicyServer(ServedPolicy(vla, execute_steps=1), ServerConfig(port=port))):
            assert remote.step(calvin_obs(1), "open the drawer").shape == (7,)
        assert remote.reconnections == 1 and remote.requests == 2


def test_openpi_client_talks_to_the_server(served, vla):
    """openpi-client is not a dependency: this runs where it is installed (`pip install openpi-client`)."""
    websocket_client_policy = pytest.importorskip("openpi_client.websocket_client_policy")
    client = websocket_client_policy.WebsocketClientPolicy(host="127.0.0.1", port=served.port, api_key=API_KEY)
    assert client.get_server_metadata()["action_horizon"] == 4
    local = Emu3VLAPolicy(vla, execute_steps=4)
    reply = client.infer(pixel_request(11))
    expected = [local.step(calvin_obs(11), "open the drawer") for _ in range(4)]
    np.testing.assert_array_equal(reply["actions"], np.stack(expected))
    with pytest.raises(RuntimeError, match="missing camera view"):
        client.infer({"prompt": "open the drawer"})
