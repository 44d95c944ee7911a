"""One chunk broker: per-environment queues of actions cut from action chunks.

A chunk policy answers one observation with a whole chunk of actions; a simulator or robot wants
one action per step. The broker sits between them, for the local policy, the remote client and
the server alike:

* it keeps a queue per environment and asks its :class:`ChunkSource` for new chunks only for the
  environments whose queue ran dry (all of them in one call, so the source can batch them);
* it executes the first ``execute_steps`` actions of each chunk (n of m; all of them by default);
* a new instruction for an environment starts that environment over: its queue is dropped and the
  source forgets the environment's history (:meth:`ChunkSource.reset`).

:meth:`ChunkBroker.act` returns one action per environment (what a rollout steps with);
:meth:`ChunkBroker.chunks` returns each environment's executable chunk at once (what the server
answers a request with). Imports only numpy, so a robot-side client can use it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from policies.base import resolve_env_ids


class ChunkSource(Protocol):
    """Anything that answers observations with action chunks, one environment per row."""

    def reset(self, env_index: int | None = None) -> None:
        """Forget one environment's history (all environments' when ``env_index`` is None)."""

    def query(self, env_ids: list[int], observations: Sequence[Any], instructions: Sequence[str]) -> np.ndarray:
        """Chunks ``(len(env_ids), steps, action_dim)``; row ``k`` belongs to environment ``env_ids[k]``."""


class ChunkBroker:
    """Per-environment action queues over a :class:`ChunkSource` (see the module docstring)."""

    def __init__(self, source: ChunkSource, execute_steps: int | None = None) -> None:
        if execute_steps is not None and execute_steps < 1:
            raise ValueError(f"execute_steps must be >= 1, got {execute_steps}")
        self.source = source
        self.execute_steps = execute_steps
        self._queues: dict[int, deque] = {}
        self._instructions: dict[int, str] = {}

    def step(self, observation: Any, instruction: str) -> np.ndarray:
        """One action for a single environment (index 0)."""
        return self.act([observation], [instruction])[0]

    def reset(self, env_index: int | None = None) -> None:
        """Start one environment (or all) over: no queued actions, no history at the source."""
        if env_index is None:
            self._queues.clear()
            self._instructions.clear()
        else:
            self._queues.pop(env_index, None)
            self._instructions.pop(env_index, None)
        self.source.reset(env_index)

    def act(
        self, observations: Sequence[Any], instructions: Sequence[str], env_ids: Sequence[int] | None = None
    ) -> np.ndarray:
        """One action per environment ``(N, action_dim)``; environments with an empty queue query the source."""
        ids = self._start(observations, instructions, env_ids)
        rows = [k for k, i in enumerate(ids) if not self._queues.get(i)]
        if rows:
            chunks = self._query(
                [ids[k] for k in rows], [observations[k] for k in rows], [instructions[k] for k in rows]
            )
            for k, chunk in zip(rows, chunks, strict=True):
                self._queues[ids[k]] = deque(chunk)
        return np.stack([self._queues[i].popleft() for i in ids])

    def chunks(self, env_ids: Sequence[int], observations: Sequence[Any], instructions: Sequence[str]) -> np.ndarray:
        """One source query per environment: each one's executable chunk ``(N, n, action_dim)``."""
        ids = self._start(observations, instructions, env_ids)
        for i in ids:
            self._queues.pop(i, None)
        return self._query(ids, observations, instructions)

    def _start(
        self, observations: Sequence[Any], instructions: Sequence[str], env_ids: Sequence[int] | None
    ) -> list[int]:
        if len(observations) != len(instructions):
            raise ValueError(f"{len(observations)} observations but {len(instructions)} instructions")
        ids = resolve_env_ids(len(observations), env_ids)
        for i, text in zip(ids, instructions, strict=True):
            if self._instructions.get(i) != text:  # a new instruction starts a new window
                if i in self._instructions:
                    self._queues.pop(i, None)
                    self.source.reset(i)
                self._instructions[i] = text
        return ids

    def _query(self, ids: list[int], observations: Sequence[Any], instructions: Sequence[str]) -> np.ndarray:
        chunks = np.asarray(self.source.query(ids, observations, instructions))
        if chunks.ndim != 3 or len(chunks) != len(ids):
            raise ValueError(f"the chunk source returned shape {chunks.shape} for {len(ids)} environments")
        return chunks if self.execute_steps is None else chunks[:, : self.execute_steps]
