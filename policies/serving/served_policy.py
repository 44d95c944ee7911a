"""The model side of the server: one :class:`~policies.emu3_policy.VLAWindows` per server, one
window per connection slot, behind the same :class:`~policies.chunk_broker.ChunkBroker` the local
policy uses.

A served client is one slot: the slot keeps that client's window (instruction, previous frame's
codes and action ids) between requests, and requests that arrive together are decoded as one
batch. Each request is one model query answered with the first ``execute_steps`` actions of the
chunk (:meth:`ChunkBroker.chunks`); the client executes them and sends its next observation. That
is exactly the schedule of the local policy, so a served model produces the same actions as a
local one for the same observations.

Observations may carry precomputed VQ codes (token mode); only the views that arrive as pixels go
through the VQ encoder (:meth:`VLAModel.tokenize` takes codes as they are).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emu3_vla.data.sequence import STATE
from emu3_vla.vla import Frame, VLAModel
from policies.chunk_broker import ChunkBroker
from policies.emu3_policy import PolicyStats, VLAWindows
from policies.serving.edge import vq_fingerprint
from policies.serving.protocol import ServedObservation


def served_frame(observation: ServedObservation) -> Frame:
    """A checked request's observation as the frame the model reads: codes where sent, else pixels."""
    frame: dict[str, np.ndarray] = {**observation.pixels, **observation.codes}
    if observation.state is not None:
        frame[STATE] = observation.state
    return frame


class ServedPolicy:
    """A :class:`VLAModel` answering requests slot by slot (one slot per connection)."""

    def __init__(
        self, vla: VLAModel, *, execute_steps: int | None = None, device: str = "cpu", decoder: str = "plain"
    ) -> None:
        chunk = vla.spec.chunk
        self.execute_steps = chunk if execute_steps is None else int(execute_steps)
        if not 1 <= self.execute_steps <= chunk:
            raise ValueError(f"execute_steps must be in [1, {chunk}] (the chunk length), got {execute_steps}")
        self.vla = vla.to(device)
        self.windows = VLAWindows(vla, served_frame, vla.action_decoding(decoder))
        self.broker = ChunkBroker(self.windows, self.execute_steps)  # one queue per connection slot

    @property
    def stats(self) -> PolicyStats:
        return self.windows.stats

    def reset(self, slot: int | None = None) -> None:
        self.broker.reset(slot)

    def query_chunks(
        self, slots: Sequence[int], observations: Sequence[ServedObservation], instructions: Sequence[str]
    ) -> np.ndarray:
        """One model query per slot: actions ``(len(slots), execute_steps, action_dim)``. A slot whose
        instruction changed starts a new window. Slots must be distinct (one request in flight each)."""
        if not (len(slots) == len(observations) == len(instructions)):
            raise ValueError(f"{len(slots)} slots, {len(observations)} observations, {len(instructions)} instructions")
        return self.broker.chunks(slots, observations, instructions)

    def fingerprint(self) -> str:
        """The served VQ tokenizer's fingerprint: token-mode clients must match it."""
        return vq_fingerprint(self.vla.bundle.vq)
