"""A served policy as a local one: :class:`RemotePolicy` and ``emu3-vla tokenize-client``.

:class:`RemotePolicy` implements the :class:`~policies.base.Policy` protocol over the websocket
protocol of :mod:`policies.server`, so an evaluator drives a served model exactly like a local
:class:`~policies.emu3_policy.Emu3VLAPolicy`: ``step`` / ``act`` return one action per environment
step, from the same :class:`~policies.chunk_broker.ChunkBroker`. Each environment index gets its own
connection (the server keeps one episode window per connection); when an environment's action
chunk is used up the policy sends its current observation and queues the returned chunk. In
``act`` every environment that needs a chunk sends its request before any reply is read, so the
server decodes them as one batch.

This module is the robot side: it needs numpy, websockets and msgpack only (no torch, no
transformers), so it runs on a robot computer. Which observation keys feed which of the model's
inputs comes from the server's metadata (the dataset keys the model was trained on); ``obs_keys``
overrides them. Images travel as they are and the server resizes them exactly as a local policy
would; ``resize=True`` resizes on this side first (smaller requests; Pillow's filter, so the
pixels, and possibly the actions, differ slightly from a local policy's).

Token mode (``tokenizer=EdgeTokenizer`` or a checkpoint path; needs torch): camera views are
VQ-encoded here and only the codes travel; the VQ fingerprint in the server's metadata must match.

``policy_from_uri("remote://host:port")`` is what ``emu3-vla eval --policy remote://host:port``
uses. The API key comes from ``api_key=`` or the ``EMU3_VLA_API_KEY`` environment variable.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import websockets
from websockets.exceptions import InvalidStatus
from websockets.frames import CloseCode
from websockets.sync.client import ClientConnection, connect

from emu3_vla.cli_args import add_command
from policies.base import STATE_INPUT, Observation, get_path, observation_keys
from policies.chunk_broker import ChunkBroker
from policies.wire import WireError, packb, unpackb

log = logging.getLogger(__name__)

API_KEY_ENV = "EMU3_VLA_API_KEY"
DEFAULT_PORT = 8000
# close codes after which a fresh connection may succeed (idle timeout, restart, server full)
RETRYABLE_CLOSES = {CloseCode.GOING_AWAY, CloseCode.SERVICE_RESTART, CloseCode.TRY_AGAIN_LATER}
FROM_SERVER = "from-server"  # a key default: what the server's metadata says
# what a server that predates the inputs in its metadata was trained on
CALVIN_INPUTS = {
    "view_keys": {"static": "observation.images.static", "gripper": "observation.images.gripper"},
    "state_key": "observation.state",
}


class RemotePolicyError(RuntimeError):
    """The server refused a request, answered nonsense, or cannot be reached."""


class _Refused(Exception):
    """The server sent an error text frame, then closed with ``code``."""

    def __init__(self, text: str, code: int | None) -> None:
        super().__init__(text)
        self.text = text
        self.code = code


class ServerChunks:
    """The server as a :class:`~policies.chunk_broker.ChunkSource`: one connection per environment."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        api_key: str | None = None,
        *,
        obs_keys: Mapping[str, str] | None = None,
        state_key: str | None = FROM_SERVER,
        tokenizer: Any = None,
        resize: bool = False,
        connect_timeout: float = 30.0,
        request_timeout: float = 300.0,
        reconnects: int = 2,
    ) -> None:
        """``obs_keys``: model view -> where it is in an observation (default: from the server's
        metadata); ``state_key``: where the robot state is (default: likewise; None: never send it); ``tokenizer``: an
        ``EdgeTokenizer`` or a checkpoint folder for token mode."""
        self.uri = host if host.startswith(("ws://", "wss://")) else f"ws://{host}:{port}"
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        if isinstance(tokenizer, str | Path):
            from policies.serving.edge import EdgeTokenizer  # torch: only in token mode

            tokenizer = EdgeTokenizer.from_checkpoint(tokenizer)
        self.tokenizer = tokenizer
        self.resize = resize
        self.connect_timeout = connect_timeout
        self.request_timeout = request_timeout
        self.reconnects = reconnects
        self.requests = 0
        self.reconnections = 0
        self._links: dict[int, ClientConnection | None] = {}
        self._pending_reset: set[int] = set()
        self._metadata: dict[str, Any] = {}
        self._links[0] = self._connect()  # fail fast: a wrong address or key shows up here
        inputs = self._metadata.get("inputs") or CALVIN_INPUTS
        self.obs_keys = observation_keys(inputs["view_keys"], inputs.get("state_key"))
        self.obs_keys.update(obs_keys or {})
        if state_key is None:
            self.obs_keys.pop(STATE_INPUT, None)
        elif state_key != FROM_SERVER:
            self.obs_keys[STATE_INPUT] = state_key

    @property
    def metadata(self) -> dict[str, Any]:
        return self._metadata

    def close(self) -> None:
        for i, link in self._links.items():
            if link is not None:
                link.close()
                self._links[i] = None

    def query(self, env_ids: list[int], observations: Sequence[Observation], instructions: Sequence[str]) -> np.ndarray:
        """One request per environment, all sent before any reply is read: chunks ``(N, horizon, D)``."""
        payloads = self._payloads(env_ids, observations, instructions)
        return np.stack(self._exchange_all(env_ids, payloads))

    def reset(self, env_index: int | None = None) -> None:
        """The server starts the environment's window over with its next request (no extra round trip)."""
        self._pending_reset.update(self._links if env_index is None else [env_index])

    # ------------------------------------------------------------- requests
    def _payloads(
        self, need: list[int], observations: Sequence[Observation], instructions: Sequence[str]
    ) -> list[bytes]:
        """One request per environment ``need[k]``, from ``observations[k]`` and ``instructions[k]``."""
        messages: list[dict[str, Any]] = [{"prompt": text} for text in instructions]
        for view, info in self._metadata["views"].items():
            if view not in self.obs_keys:
                raise ValueError(f"the server needs camera view {view!r}; pass obs_keys={{{view!r}: 'path.in.obs'}}")
            images = [np.asarray(get_path(obs, self.obs_keys[view])) for obs in observations]
            for message, image in zip(messages, images, strict=True):
                if self.tokenizer is not None:
                    message[info["tokens_key"]] = self.tokenizer.encode(view, _writable(image))
                elif self.resize and image.ndim == 3 and image.dtype == np.uint8:
                    message[info["image_key"]] = resize_image(image, *info["image_size"])
                else:
                    message[info["image_key"]] = image
        for message, i, obs in zip(messages, need, observations, strict=True):
            if STATE_INPUT in self.obs_keys:
                with contextlib.suppress(KeyError):  # the model ignores the state; send it when there is one
                    message[self._metadata["state_key"]] = np.asarray(get_path(obs, self.obs_keys[STATE_INPUT]))
            if i in self._pending_reset:
                message["reset"] = True
        return [packb(m) for m in messages]

    def _exchange_all(self, need: list[int], payloads: list[bytes]) -> list[np.ndarray]:
        """Send every request, then read every reply (so the server can batch them); retry failures."""
        results: dict[int, np.ndarray] = {}
        failed: dict[int, BaseException] = {}
        sent: list[int] = []
        try:
            for i, payload in zip(need, payloads, strict=True):
                try:
                    self._link(i).send(payload)
                    sent.append(i)
                except (websockets.ConnectionClosed, OSError) as err:
                    failed[i] = err
            for i in sent:
                try:
                    results[i] = self._receive(i)
                except (websockets.ConnectionClosed, OSError, _Refused) as err:
                    failed[i] = err
        except BaseException:
            for i in sent:  # a reply still in flight would be read as the answer to the next request
                if i not in results and i not in failed:
                    self._drop(i)
            raise
        for i, payload in zip(need, payloads, strict=True):
            if i in failed:
                results[i] = self._retry(i, payload, failed[i])
        self._pending_reset.difference_update(need)
        self.requests += len(need)
        return [results[i] for i in need]

    def _retry(self, i: int, payload: bytes, error: BaseException) -> np.ndarray:
        for attempt in range(self.reconnects + 1):
            self._drop(i)
            if isinstance(error, _Refused) and error.code not in RETRYABLE_CLOSES:
                raise RemotePolicyError(f"the policy server at {self.uri} refused the request: {error.text}")
            if attempt == self.reconnects:
                break
            log.warning(
                "env %d lost its connection to %s (%s); reconnecting (its window starts over)",
                i,
                self.uri,
                _describe(error),
            )
            self.reconnections += 1
            try:
                self._link(i).send(payload)
                return self._receive(i)
            except (websockets.ConnectionClosed, OSError, _Refused) as err:
                error = err
        raise RemotePolicyError(
            f"lost the connection to the policy server at {self.uri} {self.reconnects + 1} times: {_describe(error)}"
        )

    def _receive(self, i: int) -> np.ndarray:
        link = self._link(i)
        try:
            message = link.recv(timeout=self.request_timeout)
        except TimeoutError:
            self._drop(i)
            raise RemotePolicyError(
                f"no reply from {self.uri} within {self.request_timeout} s (request_timeout); the server may be "
                "overloaded or stuck"
            ) from None
        if isinstance(message, str):
            raise _Refused(message, _close_code(link))
        try:
            reply = unpackb(message)
        except WireError as err:
            raise RemotePolicyError(f"unreadable reply from {self.uri}: {err}") from None
        return self._check_actions(reply)

    def _check_actions(self, reply: Any) -> np.ndarray:
        actions = reply.get("actions") if isinstance(reply, dict) else None
        expected = (int(self._metadata["action_horizon"]), int(self._metadata["action_dim"]))
        if not isinstance(actions, np.ndarray) or actions.shape != expected:
            raise RemotePolicyError(f"the server's reply has no 'actions' array of shape {expected}: {reply!r:.200}")
        return actions

    # ---------------------------------------------------------- connections
    def _link(self, i: int) -> ClientConnection:
        if self._links.get(i) is None:
            self._links[i] = self._connect()
        return self._links[i]

    def _drop(self, i: int) -> None:
        link = self._links.get(i)
        self._links[i] = None
        if link is not None:
            link.close()

    def _connect(self) -> ClientConnection:
        headers = {"Authorization": f"Api-Key {self.api_key}"} if self.api_key else None
        deadline = time.monotonic() + self.connect_timeout
        delay = 0.1
        while True:
            try:
                link = connect(
                    self.uri,
                    compression=None,
                    max_size=None,
                    additional_headers=headers,
                    open_timeout=max(1.0, min(10.0, deadline - time.monotonic())),
                    proxy=None,
                )
                first = link.recv(timeout=max(1.0, deadline - time.monotonic()))
                if isinstance(first, str):
                    raise _Refused(first, _close_code(link))
                metadata = unpackb(first)
                break
            except InvalidStatus as err:
                status = err.response.status_code
                body = err.response.body.decode(errors="replace").strip() if err.response.body else ""
                if status == 401:
                    raise RemotePolicyError(f"the policy server at {self.uri} refused the API key: {body}") from None
                if status != 503 or time.monotonic() > deadline:
                    raise RemotePolicyError(f"the policy server at {self.uri} answered HTTP {status}: {body}") from None
                error: BaseException = err
            except _Refused as err:
                if err.code not in RETRYABLE_CLOSES or time.monotonic() > deadline:
                    raise RemotePolicyError(f"the server at {self.uri} refused the connection: {err.text}") from None
                error = err
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed) as err:
                if time.monotonic() > deadline:
                    raise RemotePolicyError(
                        f"no policy server answers at {self.uri} ({_describe(err)}) after {self.connect_timeout} s; "
                        "start one with `emu3-vla serve --checkpoint <folder> --port <port>`"
                    ) from None
                error = err
            log.info("waiting for the policy server at %s (%s)", self.uri, _describe(error))
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
        try:
            self._check_metadata(metadata)
        except BaseException:
            link.close()
            raise
        return link

    def _check_metadata(self, metadata: Any) -> None:
        if not isinstance(metadata, dict) or "views" not in metadata or "action_horizon" not in metadata:
            raise RemotePolicyError(
                f"{self.uri} is not an emu3-vla policy server (its metadata lacks views / action_horizon)"
            )
        if self._metadata and metadata.get("vq_fingerprint") != self._metadata.get("vq_fingerprint"):
            raise RemotePolicyError(f"the policy server at {self.uri} now serves a different model; start over")
        if self.tokenizer is not None:
            if metadata.get("vq_fingerprint") != self.tokenizer.fingerprint:
                raise ValueError(
                    f"token mode: this client's VQ tokenizer (fingerprint {self.tokenizer.fingerprint}) is not the "
                    f"server's ({metadata.get('vq_fingerprint')}); tokenize with the served checkpoint's VQ"
                )
            for view, info in metadata["views"].items():
                spec = self.tokenizer.views.get(view)
                shape = spec.code_shape(self.tokenizer.vision.spatial_factor) if spec else None
                if shape is None or list(shape) != list(info["code_shape"]):
                    raise ValueError(
                        f"token mode: view {view!r} needs codes of shape {info['code_shape']} but this client's "
                        f"tokenizer makes {shape}; build it from the served checkpoint"
                    )
        self._metadata = metadata


class RemotePolicy(ChunkBroker):
    """A policy served by ``emu3-vla serve``, usable wherever a local policy is: the server's chunks
    (:class:`ServerChunks`) behind the chunk broker (``act``, ``step``, ``reset`` are the broker's)."""

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, api_key: str | None = None, **kwargs: Any):
        """Keyword arguments go to :class:`ServerChunks` (``obs_keys``, ``state_key``, ``tokenizer``,
        ``resize``, timeouts, ``reconnects``)."""
        self.server = ServerChunks(host, port, api_key, **kwargs)
        super().__init__(self.server)  # the server already cut each chunk to its action horizon

    @property
    def uri(self) -> str:
        return self.server.uri

    @property
    def metadata(self) -> dict[str, Any]:
        """What the server sent on connect (action horizon, views, keys, inputs, limits)."""
        return self.server.metadata

    @property
    def action_horizon(self) -> int:
        return int(self.server.metadata["action_horizon"])

    @property
    def obs_keys(self) -> dict[str, str]:
        return self.server.obs_keys

    @property
    def requests(self) -> int:
        return self.server.requests

    @property
    def reconnections(self) -> int:
        return self.server.reconnections

    def close(self) -> None:
        self.server.close()

    def __enter__(self) -> RemotePolicy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def resize_image(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(H, W, 3) uint8`` -> ``(height, width, 3)`` with Pillow's antialiased bilinear filter."""
    if image.shape[:2] == (height, width):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def _writable(value: Any) -> np.ndarray:
    """Simulators may hand out read-only frames; torch (resize, VQ) wants writable arrays."""
    array = np.asarray(value)
    return array if array.flags.writeable else array.copy()


def _close_code(link: ClientConnection) -> int | None:
    """After an error text frame the server closes; read the close code that tells whether to retry."""
    try:
        link.recv(timeout=5.0)
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    except TimeoutError:
        pass
    link.close()
    return None


def _describe(err: BaseException) -> str:
    if isinstance(err, _Refused):
        return f"server said: {err.text} (close code {err.code})"
    return f"{type(err).__name__}: {err}"


def policy_from_uri(uri: str, **kwargs: Any) -> RemotePolicy:
    """``remote://host:port`` (or ``ws://host:port``) -> :class:`RemotePolicy`; kwargs go to it."""
    parts = urlsplit(uri)
    if parts.scheme not in ("remote", "ws", "wss") or not parts.hostname:
        raise ValueError(f"not a remote policy address: {uri!r}; use remote://host:port (e.g. remote://127.0.0.1:8000)")
    port = parts.port or DEFAULT_PORT
    if parts.scheme == "wss":
        return RemotePolicy(f"wss://{parts.hostname}:{port}", **kwargs)
    return RemotePolicy(parts.hostname, port, **kwargs)


# ---------------------------------------------------------------------- tokenize-client
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def register_tokenize_client(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "tokenize-client",
        run_tokenize_client,
        help="VQ-encode images on this machine (token mode for emu3-vla serve)",
        description="Tokenise camera images with a checkpoint's VQ tokenizer only (no decoder is loaded), "
        "as a robot or simulator does in token mode: the codes, not pixels, are sent to the server "
        "('observation/image_tokens' etc.). Input: an image file, a folder of images, or an .npz/.npy "
        "of uint8 (H, W, 3) or (N, H, W, 3) arrays. Prints the code shapes and the VQ fingerprint (it "
        "must equal the server's 'vq_fingerprint'); --out saves the codes as .npz.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="the served VLA checkpoint (only vq/ is loaded)")
    p.add_argument("--input", type=Path, required=True, help="image file, folder of images, or .npz / .npy")
    p.add_argument("--view", default="static", help="camera view whose size the images are resized to")
    p.add_argument("--out", type=Path, default=None, help="write the codes here (.npz, one array per input)")
    p.add_argument("--device", default="cpu")


def read_images(path: Path) -> dict[str, np.ndarray]:
    """Named uint8 image batches ``(N, H, W, 3)`` from an image file, a folder of them, or .npz / .npy."""
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"{path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return {f.stem: _read_image(f)[None] for f in files}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    elif path.suffix == ".npy":
        arrays = {path.stem: np.load(path, allow_pickle=False)}
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        arrays = {path.stem: _read_image(path)}
    else:
        raise ValueError(f"{path}: expected an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a folder, .npz or .npy")
    batches = {}
    for name, array in arrays.items():
        batch = array[None] if array.ndim == 3 else array
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            raise ValueError(f"{path}:{name} must be uint8 (H, W, 3) or (N, H, W, 3), got {array.dtype} {array.shape}")
        batches[name] = batch
    return batches


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def run_tokenize_client(args: argparse.Namespace) -> int:
    from policies.serving.edge import EdgeTokenizer

    tokenizer = EdgeTokenizer.from_checkpoint(args.checkpoint, device=args.device)
    if args.view not in tokenizer.views:
        raise ValueError(f"the checkpoint has no view {args.view!r}; its views: {sorted(tokenizer.views)}")
    batches = read_images(args.input)
    spec = tokenizer.views[args.view]
    print(f"VQ fingerprint {tokenizer.fingerprint}; view {args.view!r} at {spec.height}x{spec.width}")
    codes: dict[str, np.ndarray] = {}
    for name, batch in batches.items():
        started = time.perf_counter()
        codes[name] = tokenizer.encode(args.view, batch)
        ms = (time.perf_counter() - started) * 1e3 / len(batch)
        preview = " ".join(str(c) for c in codes[name][0, 0, :8])
        print(f"{name}: {tuple(batch.shape)} -> codes {tuple(codes[name].shape)} ({ms:.1f} ms/image)  [{preview} ...]")
    if args.out is not None:
        out = args.out if args.out.suffix == ".npz" else args.out.with_name(args.out.name + ".npz")
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **codes)
        print(f"wrote {len(codes)} code arrays to {out}")
    return 0
