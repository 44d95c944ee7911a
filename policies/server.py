"""``emu3-vla serve``: a websocket policy server that speaks openpi's protocol.

Protocol (the one ``openpi-client``'s ``WebsocketClientPolicy`` speaks, see docs/design.md section 7):

1. the client opens a websocket (optionally with ``Authorization: Api-Key <key>``);
2. the server sends its metadata, a msgpack map: action dimension and horizon, the request keys
   for every camera view, image sizes, code shapes, the VQ fingerprint for token mode, limits;
3. each request is a msgpack map with numpy arrays (:mod:`policies.wire`) holding one observation
   (:mod:`policies.serving.protocol` lists the keys); each reply is
   ``{"actions": (H, D), "server_timing": {...}}``. One request is one model query and ``actions``
   is the whole chunk to execute (``H = execute_steps`` rows): the client runs all H actions and
   then sends its next observation, as openpi clients do. The connection keeps the episode's
   sliding window; ``{"reset": True}`` (alone, or inside a request) starts a new episode;
4. a bad request (garbage bytes, wrong dtype, missing key, oversized frame) or a failed model step
   is answered with a text frame that explains it, then the connection is closed; the server keeps
   serving everyone else. A missing or wrong API key is refused with HTTP 401 before the handshake.

``GET /healthz`` answers ``200 OK`` (no key needed), also while a model step runs: the model runs in
its own thread (:mod:`policies.serving.batcher`), and requests from concurrent clients that arrive
together are decoded as one batch.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hmac
import http
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from emu3_vla import __version__
from emu3_vla.cli_args import add_command, add_decoder_argument, add_device_argument, add_dtype_argument
from policies.serving.protocol import Limits, RequestError, RequestFormat
from policies.wire import WireError, packb, unpackb

if TYPE_CHECKING:  # the model side imports torch: loaded only when a server is built
    from policies.serving.served_policy import ServedPolicy

log = logging.getLogger(__name__)

API_KEY_ENV = "EMU3_VLA_API_KEY"
HEALTH_PATH = "/healthz"
PARSE_IN_THREAD_BYTES = 256 * 1024  # bigger requests are decoded off the event loop


@dataclasses.dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port (see PolicyServer.port)
    api_key: str | None = None
    max_clients: int = 64
    max_message_bytes: int = 16 * 2**20
    idle_timeout_s: float | None = 300.0
    max_batch: int = 32
    batch_wait_ms: float = 5.0
    limits: Limits = dataclasses.field(default_factory=Limits)

    def __post_init__(self) -> None:
        if self.max_clients < 1 or self.max_batch < 1 or self.max_message_bytes < 1024:
            raise ValueError("max_clients and max_batch must be >= 1 and max_message_bytes >= 1024")
        if self.api_key is not None and not self.api_key.strip():
            raise ValueError("the API key must not be empty (leave it unset to serve without one)")


class PolicyServer:
    """Serves a :class:`ServedPolicy` to any number of websocket clients (one episode each)."""

    def __init__(self, policy: ServedPolicy, config: ServerConfig | None = None) -> None:
        from policies.serving.batcher import BatchWorker

        self.policy = policy
        self.config = config or ServerConfig()
        vision = policy.vla.vision()
        self.format = RequestFormat(
            {v: policy.vla.views[v] for v in policy.vla.spec.views},
            vision.codebook_size,
            spatial_factor=vision.spatial_factor,
            limits=self.config.limits,
            state_size=max(policy.vla.spec.state_dims) + 1 if policy.vla.spec.uses_state else None,
        )
        self.metadata = self._build_metadata()
        self.worker = BatchWorker(
            policy,
            max_batch=self.config.max_batch,
            max_wait_s=self.config.batch_wait_ms / 1e3,
            expected_jobs=lambda: self.active_connections,
        )
        self.active_connections = 0
        self.requests_served = 0
        self._free_slots: list[int] = []
        self._next_slot = 0
        self._server: Server | None = None

    def _build_metadata(self) -> dict[str, Any]:
        policy = self.policy
        return {
            "server": "emu3-vla",
            "version": __version__,
            "protocol": "openpi websocket, msgpack + numpy",
            "action_dim": policy.vla.action_dim,
            "action_horizon": policy.execute_steps,
            "model_chunk": policy.vla.spec.chunk,
            "window_frames": policy.vla.spec.frames,
            "reply": "{'actions': (action_horizon, action_dim), 'server_timing': {...}}; execute all rows, then "
            "send the next observation",
            "vq_fingerprint": policy.fingerprint(),
            # where the model's views and state came from in its training data, so a client can map
            # its own observation keys (policies.base.observation_keys)
            "inputs": policy.vla.model_inputs().to_dict(),
            "max_message_bytes": self.config.max_message_bytes,
            "idle_timeout_s": self.config.idle_timeout_s,
            **self.format.describe(),
        }

    # --------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def batch_sizes(self) -> dict[int, int]:
        """How many model batches of each size ran (a size above 1 means clients were batched)."""
        return dict(self.worker.batch_sizes)

    async def start(self) -> None:
        self.worker.start()
        limit = self.config.max_message_bytes
        self._server = await serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            compression=None,
            # frames up to twice the limit are read and refused with an explanation; beyond that the
            # websockets library closes the connection itself (code 1009) without buffering it
            max_size=2 * limit,
            max_queue=4,
        )
        log.info("serving on ws://%s:%d (health check: GET %s)", self.config.host, self.port, HEALTH_PATH)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        await self.worker.stop()

    async def serve_forever(self, stop: asyncio.Event | None = None) -> None:
        await self.start()
        stop = stop or asyncio.Event()
        try:
            await stop.wait()
        finally:
            await self.close()

    # ------------------------------------------------------------- handshake
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path == HEALTH_PATH:
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        if self.config.api_key is not None:
            expected = f"Api-Key {self.config.api_key}".encode()
            values = request.headers.get_all("Authorization")
            sent = values[0].encode() if len(values) == 1 else b""
            if not hmac.compare_digest(sent, expected):
                log.warning("refused %s: missing or wrong API key", connection.remote_address)
                response = connection.respond(
                    http.HTTPStatus.UNAUTHORIZED,
                    "missing or wrong API key: send the header 'Authorization: Api-Key <key>' "
                    f"(RemotePolicy(api_key=...) or the {API_KEY_ENV} environment variable)\n",
                )
                response.headers["WWW-Authenticate"] = "Api-Key"
                return response
        if self.active_connections >= self.config.max_clients:
            return connection.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, self._full_message() + "\n")
        return None

    def _full_message(self) -> str:
        return (
            f"server full: {self.active_connections} clients connected, at most {self.config.max_clients} "
            "(--max-clients); retry later"
        )

    # ------------------------------------------------------------ connection
    async def _handle(self, ws: ServerConnection) -> None:
        if self.active_connections >= self.config.max_clients:  # handshakes that raced past the check
            await self._refuse(ws, self._full_message(), CloseCode.TRY_AGAIN_LATER)
            return
        self.active_connections += 1
        slot = self._acquire_slot()
        log.info("connection %s opened (slot %d, %d active)", ws.remote_address, slot, self.active_connections)
        try:
            await ws.send(packb(self.metadata))
            await self._serve(ws, slot)
        except websockets.ConnectionClosed:
            pass
        except Exception as err:  # a bug here must not take other connections down
            log.exception("connection %s failed", ws.remote_address)
            await self._refuse(ws, f"internal server error: {type(err).__name__}: {err}", CloseCode.INTERNAL_ERROR)
        finally:
            self.active_connections -= 1
            log.info("connection %s closed (slot %d)", ws.remote_address, slot)
            with contextlib.suppress(RuntimeError):  # the worker is gone only when shutting down
                await self.worker.reset(slot)  # nobody may inherit this episode's window
                self._free_slots.append(slot)

    async def _serve(self, ws: ServerConnection, slot: int) -> None:
        prev_total_ms: float | None = None
        idle = self.config.idle_timeout_s
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), idle) if idle else await ws.recv()
            except TimeoutError:
                await self._refuse(
                    ws,
                    f"no request for {idle:g} s: closing the idle connection (reconnect to continue; the "
                    "episode's window starts over)",
                    CloseCode.GOING_AWAY,
                )
                return
            started = time.perf_counter()
            error = self._check_frame(raw)
            if error is not None:
                await self._refuse(ws, *error)
                return
            try:
                if len(raw) > PARSE_IN_THREAD_BYTES:
                    request = await asyncio.to_thread(self._parse, raw)
                else:
                    request = self._parse(raw)
            except (WireError, RequestError) as err:
                await self._refuse(ws, f"bad request: {err}", CloseCode.POLICY_VIOLATION)
                return
            if request.reset:
                await self.worker.reset(slot)
            timing: dict[str, float] = {}
            if request.observation is None:
                reply: dict[str, Any] = {"reset": True}
            else:
                try:
                    result = await self.worker.infer(slot, request.observation, request.prompt)
                except Exception as err:
                    await self._refuse(ws, f"model step failed: {type(err).__name__}: {err}", CloseCode.INTERNAL_ERROR)
                    return
                reply = {"actions": result.actions}
                timing = {"infer_ms": result.infer_ms, "queue_ms": result.queue_ms, "batch_size": result.batch_size}
            timing["total_ms"] = (time.perf_counter() - started) * 1e3
            if prev_total_ms is not None:
                timing["prev_total_ms"] = prev_total_ms
            reply["server_timing"] = timing
            await ws.send(packb(reply))
            self.requests_served += 1
            prev_total_ms = (time.perf_counter() - started) * 1e3

    def _check_frame(self, raw: str | bytes) -> tuple[str, CloseCode] | None:
        if isinstance(raw, str):
            return (
                "requests must be binary frames holding a msgpack map; got a text frame",
                CloseCode.UNSUPPORTED_DATA,
            )
        if len(raw) > self.config.max_message_bytes:
            return (
                f"request of {len(raw)} bytes exceeds the server's limit of {self.config.max_message_bytes} bytes "
                "(--max-message-mb); resize images to the sizes in the server metadata or send VQ codes "
                "(token mode)",
                CloseCode.MESSAGE_TOO_BIG,
            )
        return None

    def _parse(self, raw: bytes):
        return self.format.parse(unpackb(raw))

    async def _refuse(self, ws: ServerConnection, message: str, code: CloseCode) -> None:
        """openpi's error convention: the explanation as a text frame, then a close."""
        log.warning("closing %s: %s", ws.remote_address, message)
        with contextlib.suppress(websockets.ConnectionClosed):
            await ws.send(message)
        reason = message if len(message.encode()) <= 120 else message.encode()[:117].decode(errors="ignore") + "..."
        await ws.close(code, reason)

    def _acquire_slot(self) -> int:
        if self._free_slots:
            self._free_slots.sort()
            return self._free_slots.pop(0)
        self._next_slot += 1
        return self._next_slot - 1


class ServerThread:
    """A :class:`PolicyServer` on its own event loop in a background thread (tests, benchmarks, notebooks)."""

    def __init__(self, server: PolicyServer) -> None:
        self.server = server
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"ws://{self.server.config.host}:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerThread:
        self._thread = threading.Thread(target=self._run, name="emu3-vla-server", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError(f"the policy server did not start within {timeout} s")
        if self._error is not None:
            raise RuntimeError(f"the policy server failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            try:
                await self.server.start()
            except BaseException as err:
                self._error = err
                self._started.set()
                return
            self._started.set()
            try:
                await self._stop.wait()
            finally:
                await self.server.close()

        asyncio.run(main())

    def stop(self, timeout: float = 60.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"the policy server did not stop within {timeout} s")

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------- CLI
def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub,
        "serve",
        run_serve,
        help="serve a trained VLA over websockets (openpi protocol) to simulators and robots",
        description="Serve a VLA checkpoint as a websocket policy server speaking openpi's protocol "
        "(msgpack + numpy). Each request is one observation and is answered with the whole action "
        "chunk to execute. Clients may send pixels or VQ codes (token mode; see `emu3-vla "
        "tokenize-client`). GET /healthz answers 200. Connect with policies.client.RemotePolicy or "
        "openpi-client's WebsocketClientPolicy.",
    )
    add_server_arguments(p)


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    defaults = ServerConfig()
    p.add_argument("--checkpoint", type=Path, required=True, help="a VLA checkpoint folder (emu3-vla train)")
    p.add_argument("--host", default=defaults.host, help="address to bind (default: %(default)s; 0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=defaults.port, help="port (default: %(default)s; 0 picks a free one)")
    add_device_argument(p)
    add_dtype_argument(p)
    p.add_argument("--execute-steps", type=int, default=None, help="actions per reply (default: the chunk length)")
    add_decoder_argument(p)
    p.add_argument(
        "--api-key",
        default=None,
        help=f"require 'Authorization: Api-Key <key>' (default: the {API_KEY_ENV} environment variable, if set)",
    )
    p.add_argument("--max-clients", type=int, default=defaults.max_clients, help="default: %(default)s")
    p.add_argument(
        "--max-message-mb", type=float, default=defaults.max_message_bytes / 2**20, help="default: %(default)s"
    )
    p.add_argument(
        "--idle-timeout", type=float, default=defaults.idle_timeout_s, help="seconds; 0 disables (default: %(default)s)"
    )
    p.add_argument("--max-batch", type=int, default=defaults.max_batch, help="default: %(default)s")
    p.add_argument(
        "--batch-wait-ms",
        type=float,
        default=defaults.batch_wait_ms,
        help="how long a request may wait for others to share its batch (default: %(default)s)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host,
        port=args.port,
        api_key=args.api_key if args.api_key is not None else os.environ.get(API_KEY_ENV) or None,
        max_clients=args.max_clients,
        max_message_bytes=int(args.max_message_mb * 2**20),
        idle_timeout_s=args.idle_timeout or None,
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
    )


def load_policy(
    checkpoint: Path,
    *,
    device: str = "cpu",
    dtype: str | None = None,
    execute_steps: int | None = None,
    decoder: str = "plain",
) -> ServedPolicy:
    import torch

    from emu3_vla.vla import VLAModel
    from policies.serving.served_policy import ServedPolicy

    if not checkpoint.is_dir():
        raise FileNotFoundError(f"checkpoint folder {checkpoint} does not exist")
    vla = VLAModel.load(checkpoint, device=device, dtype=getattr(torch, dtype) if dtype else None)
    return ServedPolicy(vla, execute_steps=execute_steps, device=device, decoder=decoder)


def run_serve(args: argparse.Namespace) -> int:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = config_from_args(args)
    policy = load_policy(
        args.checkpoint, device=args.device, dtype=args.dtype, execute_steps=args.execute_steps, decoder=args.decoder
    )
    server = PolicyServer(policy, config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await server.start()
        auth = "API key required" if config.api_key else "no API key"
        print(
            f"serving {args.checkpoint} on ws://{config.host}:{server.port} ({auth}; health: "
            f"http://{config.host}:{server.port}{HEALTH_PATH}); Ctrl-C stops",
            flush=True,
        )
        try:
            await stop.wait()
        finally:
            await server.close()

    asyncio.run(main())
    print(f"stopped after {server.requests_served} requests; batch sizes {server.batch_sizes}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m policies.server --checkpoint ...`` (the same as ``emu3-vla serve``)."""
    parser = argparse.ArgumentParser(prog="python -m policies.server", description="emu3-vla policy server")
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_serve(args)


if __name__ == "__main__":
    sys.exit(main())
