"""Keys and values of prompt prefixes that recur, e.g. ``[BOS] instruction`` across an episode's steps.

Every policy query of an episode starts with the same ``[BOS] instruction`` tokens, and causal
attention makes their keys/values independent of whatever follows. They are computed once (as part
of the first prompt that carries them) and copied into each later prompt's cache slots ``[0, P)``;
prefill then starts at position ``P``. Entries are evicted least-recently-used.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch


class PrefixCache:
    """``tuple(prefix ids) -> (layers, 2, kv_heads, P, D)`` tensor, at most ``max_entries`` of them."""

    def __init__(self, max_entries: int = 32) -> None:
        if max_entries < 0:
            raise ValueError(f"max_entries must be >= 0, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[int, ...], torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, prefix: Sequence[int]) -> torch.Tensor | None:
        key = tuple(int(t) for t in prefix)
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, prefix: Sequence[int], kv: torch.Tensor) -> None:
        if self.max_entries == 0:
            return
        key = tuple(int(t) for t in prefix)
        self._entries[key] = kv
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry (needed after the model's weights change)."""
        self._entries.clear()
