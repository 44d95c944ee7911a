"""Draft tokens for speculative verification, from each row's own token history, on the device.

FAST streams of consecutive chunks of one episode share most of their tokens (the low-frequency DCT
coefficients of a smooth motion change little in 10 steps), and the previous chunk's stream sits in
the prompt. So the draft for the next ``k`` tokens is a *lookup*: find the latest earlier place in
the row's history (prompt + tokens generated so far) whose last ``ngram`` tokens equal the current
ones, and propose what followed it there. If the continuation runs into the present (a repeating
pattern of period ``p < k``), it repeats with that period.

Where nothing matches, the draft is the previous verification's predictions beyond the accepted
prefix: a Jacobi iteration, whose guesses converge because each forward pass fixes at least the
first of them.

Drafts only decide how many tokens one forward pass can confirm; the tokens themselves are always
the model's greedy choices, so a bad draft costs speed, never correctness. Everything here is tensor
arithmetic without host synchronisation, so it runs inside a captured CUDA graph.
"""

from __future__ import annotations

import torch


def lookup_drafts(
    tokens: torch.Tensor, pos: torch.Tensor, fallback: torch.Tensor, *, ngram: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drafts ``(B, k)`` for the tokens after slot ``pos`` and whether each row found a match.

    Args:
        tokens: (B, W) token of each slot; slots ``[0, pos]`` are the row's history.
        pos: (B,) slot of each row's latest token.
        fallback: (B, k) drafts to use where no earlier context matches (e.g. Jacobi guesses).
        ngram: longest context compared; the best match is the latest among the longest.
    """
    batch, width = tokens.shape
    k = fallback.shape[1]
    slots = torch.arange(width, device=tokens.device).expand(batch, width)
    candidate = slots < pos[:, None]  # strictly earlier than the present
    run = candidate
    score = torch.zeros_like(slots)
    for r in range(ngram):
        earlier = torch.roll(tokens, shifts=r, dims=1)  # earlier[:, j] = tokens[:, j - r]
        current = tokens.gather(1, (pos - r).clamp(min=0)[:, None])
        run = run & (earlier == current) & (slots >= r) & (pos[:, None] >= r)
        score = score + run.long()
    best = (score * width + slots).argmax(dim=1)  # longest match, latest among equals
    found = score.gather(1, best[:, None]).squeeze(1) > 0
    period = (pos - best).clamp(min=1)
    steps = torch.arange(k, device=tokens.device)
    source = best[:, None] + 1 + steps[None, :] % period[:, None]
    drafts = tokens.gather(1, source.clamp(max=width - 1))
    return torch.where(found[:, None], drafts, fallback), found
