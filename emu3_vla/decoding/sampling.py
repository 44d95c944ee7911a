"""Samplers: pick one token per row from masked logits (greedy, temperature, top-k, top-p).

Sampling uses the exponential-race form of the Gumbel-max trick: ``argmax(p_i / E_i)`` with
``E_i ~ Exp(1)`` draws ``i`` with probability ``p_i``. The noise of each row comes from that row's
own ``torch.Generator``, so a row's tokens depend only on its logits and its seed: the same prompt
gives the same tokens whether it runs alone or inside a batch, and whatever the other rows do.

Order of operations (matching common practice): temperature, then top-k, then top-p, all on the
logits the constraint already masked, so the filters choose among allowed tokens only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch


@dataclasses.dataclass(frozen=True)
class Sampler:
    """How the next token is chosen.

    Args:
        greedy: take the arg-max (temperature, top-k and top-p are then ignored).
        temperature: divide the logits by this (> 0); below 1 sharpens, above 1 flattens.
        top_k: keep only the k most likely tokens (None: no limit).
        top_p: keep the smallest set of most likely tokens whose probability reaches p (None: 1.0).
    """

    greedy: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if not self.greedy and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (got {self.temperature}); for arg-max decoding use greedy=True")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p}")

    def filter_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``(B, V)`` masked logits -> tempered logits with filtered-out tokens at ``-inf``."""
        x = logits.float() / self.temperature
        if self.top_k is not None and self.top_k < x.shape[-1]:
            kth = torch.topk(x, self.top_k, dim=-1).values[:, -1:]
            x = x.masked_fill(x < kth, float("-inf"))
        if self.top_p is not None and self.top_p < 1:
            sorted_x, order = torch.sort(x, dim=-1, descending=True)
            probs = sorted_x.softmax(dim=-1)
            before = probs.cumsum(dim=-1) - probs  # mass strictly above each token
            drop_sorted = before >= self.top_p  # the most likely token always stays
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            x = x.masked_fill(drop, float("-inf"))
        return x

    def __call__(self, logits: torch.Tensor, generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """``(B, V)`` masked logits -> ``(B,)`` token ids. Sampling needs one generator per row."""
        if self.greedy:
            return logits.argmax(dim=-1)
        if generators is None or len(generators) != logits.shape[0]:
            raise ValueError(
                f"sampling needs one torch.Generator per row: {logits.shape[0]} rows, "
                f"{0 if generators is None else len(generators)} generators (see row_generators)"
            )
        probs = self.filter_logits(logits).softmax(dim=-1)
        noise = torch.stack(
            [torch.empty(logits.shape[1], device=logits.device).exponential_(generator=g) for g in generators]
        )
        return (probs / noise).argmax(dim=-1)


GREEDY = Sampler(greedy=True)


def row_generators(seeds: int | Sequence[int], batch_size: int, device: torch.device | str) -> list[torch.Generator]:
    """One seeded generator per row: ``seeds`` per row, or an int ``s`` meaning ``s + row``."""
    if isinstance(seeds, int):
        seeds = [seeds + i for i in range(batch_size)]
    if len(seeds) != batch_size:
        raise ValueError(f"got {len(seeds)} seeds for {batch_size} rows; pass one per row or a single int")
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
