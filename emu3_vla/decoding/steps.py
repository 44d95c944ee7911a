"""Device-resident decoding state and the two step functions that advance it without host syncs.

Everything a step reads or writes lives in :class:`DecodeBuffers`, allocated once per
(batch bucket, capacity) and updated in place, so a CUDA graph captured once replays every later
step of every later call. A step takes no arguments and returns nothing:

* :func:`sequential_step` feeds each row's latest token and appends the greedy next one;
* :func:`verify_step` writes ``k`` draft tokens after the latest one, runs all ``k + 1`` through
  the model in one pass, and keeps the greedy predictions up to the first draft the model disagrees
  with: ``m`` accepted drafts give ``m + 1`` tokens, each exactly what sequential greedy decoding
  would have produced, since prediction ``i`` saw only the (accepted, hence correct) tokens before it.

The allowed-token rule is that of a :class:`~emu3_vla.decoding.TokenSetConstraint`, fused into the
step: the head scores only the allowed ids (:class:`~emu3_vla.decoding.weights.ActionHead`), the
stop id is masked while fewer than ``min_new_tokens`` tokens exist, arg-max picks, a row that wrote
the stop id or reached ``max_new_tokens`` is done and stops advancing. With an
:class:`~emu3_vla.decoding.ActionLengthConstraint` each row also carries how many coefficients it
has written (``filled``); ids wider than what is left are masked and the stop id waits for a full
chunk. Drafts are checked under the state they would reach, so verification stays exact.
"""

from __future__ import annotations

import dataclasses

import torch

from emu3_vla.decoding.drafting import lookup_drafts
from emu3_vla.decoding.forward import DecoderForward
from emu3_vla.decoding.layers import LayerFunctions


@dataclasses.dataclass
class DecodeBuffers:
    """State of ``batch`` rows with room for ``capacity`` slots each (prompt + generated + drafts)."""

    kv: torch.Tensor  # (layers, 2, B, kv_heads, C, D) the static KV cache
    tokens: torch.Tensor  # (B, C) token of each slot; drafts are written after the latest token
    pos: torch.Tensor  # (B,) slot of the latest token (produced, not yet fed to the model)
    generated: torch.Tensor  # (B,) tokens produced so far
    done: torch.Tensor  # (B,) bool: stopped or out of budget; done rows no longer change
    stopped: torch.Tensor  # (B,) bool: produced the stop id
    out: torch.Tensor  # (B, C + 1) produced tokens; the last column absorbs writes of done rows
    guesses: torch.Tensor  # (B, k) Jacobi guesses: the last verification's predictions past the accepted ones
    max_new: torch.Tensor  # (1,) budget of this call (a tensor, so graphs need not be recaptured)
    all_done: torch.Tensor  # () bool
    rows: torch.Tensor  # (B, 1) row index, for the cache write
    offsets: torch.Tensor  # (k + 1,) 0 .. k
    filled: torch.Tensor  # (B,) coefficients written so far (length-constrained rules only)

    @classmethod
    def allocate(cls, forward: DecoderForward, batch: int, capacity: int, draft: int) -> DecodeBuffers:
        g, w = forward.weights.geometry, forward.weights
        device = w.device
        kv = torch.zeros(g.layers, 2, batch, g.kv_heads, capacity, g.head_dim, dtype=w.dtype, device=device)

        def longs(*shape: int) -> torch.Tensor:
            return torch.zeros(shape, dtype=torch.long, device=device)

        return cls(
            kv=kv,
            tokens=longs(batch, capacity),
            pos=longs(batch),
            generated=longs(batch),
            done=torch.zeros(batch, dtype=torch.bool, device=device),
            stopped=torch.zeros(batch, dtype=torch.bool, device=device),
            out=longs(batch, capacity + 1),
            guesses=longs(batch, max(draft, 1)),
            max_new=torch.full((1,), capacity, dtype=torch.long, device=device),
            all_done=torch.zeros((), dtype=torch.bool, device=device),
            rows=torch.arange(batch, device=device)[:, None],
            offsets=torch.arange(draft + 1, device=device),
            filled=longs(batch),
        )

    @property
    def batch(self) -> int:
        return int(self.tokens.shape[0])

    @property
    def capacity(self) -> int:
        return int(self.tokens.shape[1])

    @property
    def draft(self) -> int:
        return int(self.offsets.shape[0]) - 1


@dataclasses.dataclass(frozen=True)
class GreedyRule:
    """The fused constraint: arg-max over the head's ids, stop id masked before ``min_new_tokens``.

    With ``widths`` (coefficients each vocabulary id writes, ``(V,)``) and ``total``, an id is
    allowed only while it fits in ``total - filled`` and the stop id only when ``filled == total``.
    """

    ids: torch.Tensor  # (A,) vocabulary id of each head row
    stop_mask: torch.Tensor  # (A,) bool, True at the stop id's row
    stop_id: int
    min_new_tokens: int
    widths: torch.Tensor | None = None  # (V,) coefficients per vocabulary id (0: not an action id)
    total: int = 0

    @property
    def length_constrained(self) -> bool:
        return self.widths is not None

    def width_of(self, tokens: torch.Tensor) -> torch.Tensor:
        """Coefficients written by vocabulary ids ``tokens`` (any shape); zeros when unconstrained."""
        if self.widths is None:
            return torch.zeros_like(tokens)
        return self.widths[tokens.clamp(0, self.widths.shape[0] - 1)]

    def pick(
        self, logits: torch.Tensor, produced_before: torch.Tensor, filled_before: torch.Tensor | None = None
    ) -> torch.Tensor:
        """logits (B, T, A); produced_before / filled_before (B, T): tokens and coefficients that
        precede each prediction -> ids (B, T)."""
        if self.min_new_tokens > 0:
            early = (produced_before < self.min_new_tokens)[..., None] & self.stop_mask
            logits = logits.masked_fill(early, float("-inf"))
        if self.widths is not None and filled_before is not None:
            head_widths = self.widths[self.ids]  # (A,)
            left = (self.total - filled_before)[..., None]
            blocked = ~self.stop_mask & ((head_widths > left) | (head_widths == 0))
            blocked = blocked | (self.stop_mask & (left != 0))
            logits = logits.masked_fill(blocked, float("-inf"))
        return self.ids[logits.argmax(dim=-1)]


def _commit(buf: DecodeBuffers, rule: GreedyRule, preds: torch.Tensor, drafts: torch.Tensor | None) -> None:
    """Append each row's accepted predictions; advance its position and counters."""
    length = preds.shape[1]
    index = buf.offsets[:length]
    if drafts is None:
        emit = torch.ones_like(buf.pos)
    else:
        emit = (drafts == preds[:, :-1]).long().cumprod(dim=1).sum(dim=1) + 1
    first_stop = torch.where(preds == rule.stop_id, index, length).amin(dim=1)
    emit = torch.minimum(emit, first_stop + 1)
    emit = torch.minimum(emit, buf.max_new - buf.generated)
    emit = torch.where(buf.done, torch.zeros_like(emit), emit)
    keep = index[None, :] < emit[:, None]
    trash = buf.out.shape[1] - 1
    buf.out.scatter_(1, torch.where(keep, buf.generated[:, None] + index, trash), preds)
    # Slots after the new position are free: writing every prediction there is harmless.
    buf.tokens.scatter_(1, (buf.pos[:, None] + 1 + index).clamp(max=buf.capacity - 1), preds)
    if drafts is not None:
        later = (emit[:, None] + index[: buf.guesses.shape[1]]).clamp(max=length - 1)
        buf.guesses.copy_(preds.gather(1, later))
    stop_now = first_stop < emit
    if rule.length_constrained:
        buf.filled.add_((rule.width_of(preds) * keep).sum(dim=1))
    buf.stopped.logical_or_(stop_now)
    buf.generated.add_(emit)
    buf.pos.add_(emit)
    buf.done.logical_or_(stop_now | (buf.generated >= buf.max_new))
    buf.all_done.copy_(buf.done.all())


def sequential_step(buf: DecodeBuffers, forward: DecoderForward, rule: GreedyRule, step_fns: LayerFunctions) -> None:
    """Feed each row's latest token, append the greedy next token."""
    positions = buf.pos[:, None]
    ids = buf.tokens.gather(1, positions)
    hidden = forward.hidden(buf.kv, ids, positions, buf.rows, key_len=buf.capacity, step_fns=step_fns)
    preds = rule.pick(forward.logits(hidden), buf.generated[:, None], buf.filled[:, None])
    _commit(buf, rule, preds, None)


def verify_step(buf: DecodeBuffers, forward: DecoderForward, rule: GreedyRule, step_fns: LayerFunctions) -> None:
    """Draft ``k`` tokens, verify them in one pass, keep the greedy prefix (1 to ``k + 1`` tokens)."""
    drafts, _ = lookup_drafts(buf.tokens, buf.pos, buf.guesses)
    draft_slots = (buf.pos[:, None] + buf.offsets[1:]).clamp(max=buf.capacity - 1)
    buf.tokens.scatter_(1, draft_slots, drafts)
    positions = (buf.pos[:, None] + buf.offsets).clamp(max=buf.capacity - 1)
    ids = buf.tokens.gather(1, positions)
    hidden = forward.hidden(buf.kv, ids, positions, buf.rows, key_len=buf.capacity, step_fns=step_fns)
    filled = None
    if rule.length_constrained:
        # Coefficients before prediction t: what is written plus the drafts before it (if accepted,
        # they are exactly the greedy tokens, so the state each prediction sees is the true one).
        widths = rule.width_of(drafts)
        filled = buf.filled[:, None] + torch.cat([torch.zeros_like(widths[:, :1]), widths.cumsum(dim=1)], dim=1)
    preds = rule.pick(forward.logits(hidden), buf.generated[:, None] + buf.offsets, filled)
    _commit(buf, rule, preds, drafts)
