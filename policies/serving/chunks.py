"""The local policy, driven one whole action chunk per request, for any set of connection slots.

A served client is one row ("slot") of a single :class:`~policies.emu3_policy.Emu3VLAPolicy`: the
slot keeps that client's sliding window (instruction, previous frame's codes and action ids)
between requests, and requests that arrive together are decoded as one batch. Each request is one
model query and returns the first ``execute_steps`` actions of the decoded chunk; the client
executes them and sends its next observation. That is exactly the schedule of the local policy's
``act`` (query, then execute the queued chunk), so a served model produces the same actions as a
local one for the same observations.

Observations may carry precomputed VQ codes (token mode); only the views that arrive as pixels go
through the VQ encoder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from emu3_vla.data.sequence import STATE
from policies.base import Observation
from policies.emu3_policy import Emu3VLAPolicy
from policies.serving.edge import vq_fingerprint
from policies.serving.protocol import ServedObservation


class ChunkedPolicy(Emu3VLAPolicy):
    """:class:`Emu3VLAPolicy` with a chunk-per-call entry point for the server's model worker."""

    def query_chunks(
        self, slots: Sequence[int], observations: Sequence[Observation], instructions: Sequence[str]
    ) -> np.ndarray:
        """One model query per slot; returns actions ``(len(slots), execute_steps, action_dim)``.

        A slot whose instruction changed starts a new window, as in :meth:`act`. Slots must be
        distinct (one request in flight per connection).
        """
        if not (len(slots) == len(observations) == len(instructions)):
            raise ValueError(f"{len(slots)} slots, {len(observations)} observations, {len(instructions)} instructions")
        if len(set(slots)) != len(slots):
            raise ValueError(f"slots must be distinct within one batch, got {list(slots)}")
        for slot, text in zip(slots, instructions, strict=True):
            if self._env(slot).instruction != text:
                self.reset(slot)
                self._envs[slot].instruction = text
            self._envs[slot].queue.clear()
        self._query(list(slots), observations)
        chunks = []
        for slot in slots:
            queue = self._envs[slot].queue
            chunks.append(np.stack(list(queue)))
            queue.clear()
        return np.stack(chunks)

    def encode_observations(self, observations: Sequence[Observation]) -> list[dict[str, np.ndarray]]:
        """VQ codes per view; views that arrived as codes are passed through untouched."""
        if not all(isinstance(o, ServedObservation) for o in observations):
            return super().encode_observations(observations)
        codes: list[dict[str, np.ndarray]] = [dict(o.codes) for o in observations]
        for view in self.vla.spec.views:
            todo = [k for k, o in enumerate(observations) if view not in o.codes]
            if not todo:
                continue
            # clients may send different image sizes: resize each to the view first, then one VQ batch
            prepare = self.vision.prepare_view
            prepared = torch.stack([prepare(observations[k].pixels[view][None], view)[0] for k in todo])
            encoded = self.vision.encode_images(prepared).numpy()
            for row, k in enumerate(todo):
                codes[k][view] = encoded[row]
        if self.vla.spec.uses_state:
            for k, o in enumerate(observations):
                codes[k][STATE] = o.state
        return codes

    def fingerprint(self) -> str:
        """The served VQ tokenizer's fingerprint: token-mode clients must match it."""
        return vq_fingerprint(self.vla.bundle.vq)
