"""Constraints: which tokens each batch row may produce next, as a small vectorised state machine.

A constraint turns "the model must write a valid h x w grid" (or "only text, then EOS", or "only
action ids, then EOA") into a boolean mask over the vocabulary that the decoding loop applies to
the logits *before* sampling. Structure therefore holds by construction instead of being repaired
after the fact, and a model that wants to write EOS in the middle of a row simply cannot.

Every row of a batch carries its own state, one ``int64`` per row, so rows are independent: one
may still be writing text while another has finished. A finished row may only produce the pad id
(the loop keeps feeding it until every row is done). The protocol is deliberately tiny and
tensor-only (no Python per row), so a GPU fast path can run the same constraints inside a captured
graph:

* ``initial_state(batch_size, device)`` -> ``(B,)`` int64 state;
* ``allowed(state)`` -> ``(B, V)`` bool, True where a token may come next;
* ``advance(state, tokens)`` -> the state after each row emitted ``tokens[row]``;
* ``finished(state)`` -> ``(B,)`` bool;
* ``max_new_tokens``: tokens needed to finish (exact for a grid), or None if open-ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

import torch

from emu3_vla.text_tokenizer import TextTokenizer
from emu3_vla.vocab import TokenLayout


@runtime_checkable
class Constraint(Protocol):
    """Allowed-next-token rule for a batch; see the module docstring for the contract."""

    vocab_size: int
    max_new_tokens: int | None

    def initial_state(self, batch_size: int, device: torch.device | str) -> torch.Tensor: ...

    def allowed(self, state: torch.Tensor) -> torch.Tensor: ...

    def advance(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor: ...

    def finished(self, state: torch.Tensor) -> torch.Tensor: ...


def _id_mask(ids: Iterable[int] | range, vocab_size: int) -> torch.Tensor:
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    if isinstance(ids, range):
        mask[ids.start : ids.stop] = True
    else:
        index = torch.as_tensor(list(ids), dtype=torch.long)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= vocab_size):
            raise ValueError(f"token ids must lie in [0, {vocab_size}); got [{int(index.min())}, {int(index.max())}]")
        mask[index] = True
    return mask


class _TableConstraint:
    """Shared machinery: the state indexes a schedule of "kinds", each kind has one vocabulary mask.

    Tables live on the CPU and are copied once per device on first use.
    """

    def __init__(self, kind_masks: torch.Tensor) -> None:
        self._kind_masks = kind_masks  # (K, V) bool
        self._on_device: dict[torch.device, torch.Tensor] = {}
        self.vocab_size = int(kind_masks.shape[1])

    def _masks(self, device: torch.device) -> torch.Tensor:
        if device not in self._on_device:
            self._on_device[device] = self._kind_masks.to(device)
        return self._on_device[device]


class GridConstraint(_TableConstraint):
    """Exactly ``frames`` frames of ``height`` rows of ``width`` visual codes, then the closing tokens.

    The allowed set depends only on how many tokens a row has produced since the prompt (the
    prompt ends with ``[SOT]``, or with the last context frame's ``[EOF]`` when extending a video)::

        code x width, [EOL]   (repeated height times; no [EOL] when with_eol=False)
        [EOF]                 (end of each frame)
        ... next frame ...
        [EOV] [EOS]           (``closing``; configurable)
        pad, pad, ...         (finished)

    so the state is that count, and the mask is one table lookup. ``max_new_tokens`` is the exact
    length of the run; a complete run parses with :func:`emu3_vla.vision_block.parse_frames`.
    """

    VISUAL, EOL, EOF, PAD = 0, 1, 2, 3

    def __init__(
        self,
        layout: TokenLayout,
        height: int,
        width: int,
        *,
        frames: int = 1,
        with_eol: bool = True,
        closing: tuple[int, ...] | None = None,
    ) -> None:
        if height < 1 or width < 1 or frames < 1:
            raise ValueError(f"a grid needs height, width and frames >= 1; got {height}x{width}, {frames} frame(s)")
        closing = (layout.eov_id, layout.eos_id) if closing is None else tuple(closing)
        self.layout = layout
        self.height, self.width, self.frames, self.with_eol = height, width, frames, with_eol
        self.closing = closing
        vocab = layout.vocab_size
        fixed = [_id_mask(layout.visual_range, vocab), _id_mask([layout.eol_id], vocab)]
        fixed += [_id_mask([layout.eof_id], vocab), _id_mask([layout.pad_id], vocab)]
        closing_masks = [_id_mask([t], vocab) for t in closing]
        super().__init__(torch.stack(fixed + closing_masks))

        row = [self.VISUAL] * width + ([self.EOL] if with_eol else [])
        frame = row * height + [self.EOF]
        closing_kinds = list(range(4, 4 + len(closing)))
        schedule = frame * frames + closing_kinds
        self.max_new_tokens = len(schedule)
        self._schedule = torch.tensor([*schedule, self.PAD], dtype=torch.long)  # last entry: finished
        self._schedule_on: dict[torch.device, torch.Tensor] = {}

    @property
    def frame_length(self) -> int:
        """Tokens per frame: rows (with their [EOL]) and the closing [EOF]."""
        return self.height * (self.width + int(self.with_eol)) + 1

    def _schedule_for(self, device: torch.device) -> torch.Tensor:
        if device not in self._schedule_on:
            self._schedule_on[device] = self._schedule.to(device)
        return self._schedule_on[device]

    def initial_state(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        return torch.zeros(batch_size, dtype=torch.long, device=device)

    def allowed(self, state: torch.Tensor) -> torch.Tensor:
        kinds = self._schedule_for(state.device)[state.clamp(max=self.max_new_tokens)]
        return self._masks(state.device)[kinds]

    def advance(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        # The mask admits exactly the scheduled kind, so the position alone is the state.
        return (state + 1).clamp(max=self.max_new_tokens)

    def finished(self, state: torch.Tensor) -> torch.Tensor:
        return state >= self.max_new_tokens


class TokenSetConstraint(_TableConstraint):
    """Any of ``allowed_ids`` until ``stop_id``; then only ``pad_id``.

    Text generation uses the plain-text ids and ``[EOS]`` (:func:`text_constraint`); greedy action
    decoding uses the FAST action ids and ``[EOA]`` (:func:`action_constraint`).
    ``min_new_tokens`` forbids the stop token for the first tokens of a row (0: may stop at once).
    """

    RUNNING, STOP_FORBIDDEN, DONE = 0, 1, 2

    def __init__(
        self,
        allowed_ids: Iterable[int] | range,
        stop_id: int,
        pad_id: int,
        vocab_size: int,
        *,
        min_new_tokens: int = 0,
    ) -> None:
        if min_new_tokens < 0:
            raise ValueError(f"min_new_tokens must be >= 0, got {min_new_tokens}")
        body = _id_mask(allowed_ids, vocab_size)
        if not body.any():
            raise ValueError("a token-set constraint needs at least one allowed id")
        stop = _id_mask([stop_id], vocab_size)
        super().__init__(torch.stack([body | stop, body & ~stop, _id_mask([pad_id], vocab_size)]))
        self.stop_id, self.pad_id, self.min_new_tokens = stop_id, pad_id, min_new_tokens
        self.max_new_tokens = None
        self._done = -1  # state value of a finished row; otherwise the state counts tokens emitted

    def initial_state(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        return torch.zeros(batch_size, dtype=torch.long, device=device)

    def allowed(self, state: torch.Tensor) -> torch.Tensor:
        kind = torch.where(state < self.min_new_tokens, self.STOP_FORBIDDEN, self.RUNNING)
        kind = torch.where(state == self._done, self.DONE, kind)
        return self._masks(state.device)[kind]

    def advance(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        stopped = (tokens == self.stop_id) | (state == self._done)
        return torch.where(stopped, torch.full_like(state, self._done), state + 1)

    def finished(self, state: torch.Tensor) -> torch.Tensor:
        return state == self._done


def text_constraint(layout: TokenLayout, tokenizer: TextTokenizer, *, min_new_tokens: int = 0) -> TokenSetConstraint:
    """Plain text ids (those the tokenizer produces, below the action ids) and ``[EOS]``."""
    return TokenSetConstraint(
        range(tokenizer.text_vocab_size()),
        layout.eos_id,
        layout.pad_id,
        layout.vocab_size,
        min_new_tokens=min_new_tokens,
    )


def action_constraint(layout: TokenLayout, *, min_new_tokens: int = 1) -> TokenSetConstraint:
    """The FAST action ids and ``[EOA]`` (for greedy action decoding after ``[BOA]``)."""
    return TokenSetConstraint(
        layout.action_range, layout.eoa_id, layout.pad_id, layout.vocab_size, min_new_tokens=min_new_tokens
    )


class ActionLengthConstraint(_TableConstraint):
    """Action ids that add up to exactly ``total`` coefficients, then ``[EOA]``, then padding.

    A FAST id stands for a variable number of DCT coefficients (BPE merges), so a free-running
    model can write a stream that decodes to too few or too many of them; the decoder then repairs
    it, and every coefficient after the slip lands in the wrong (frequency, dimension) slot. Here
    the state is the number of coefficients written so far: an id is allowed only if it still
    fits, and ``[EOA]`` only once the chunk is full, so every stream decodes to a whole chunk.

    ``coefficients[i]`` is what action-tokenizer id ``i`` decodes to (from the tokenizer's
    ``coefficients_per_token``; 1 for every bin of the binning tokenizer); ids worth 0 are never
    allowed. States ``0..total`` count coefficients; ``total + 1`` is finished.
    """

    def __init__(self, layout: TokenLayout, coefficients: Sequence[int], total: int) -> None:
        counts = torch.as_tensor(list(coefficients), dtype=torch.long)
        if total < 1:
            raise ValueError(f"total must be >= 1 coefficient, got {total}")
        if counts.numel() == 0 or counts.numel() > layout.action_vocab_size:
            raise ValueError(f"{counts.numel()} action ids do not fit the layout's {layout.action_vocab_size}")
        if not bool((counts == 1).any()):
            raise ValueError("no action id stands for a single coefficient, so some chunk lengths cannot be written")
        vocab = layout.vocab_size
        llm_ids = torch.as_tensor(layout.fast_to_id(torch.arange(counts.numel())), dtype=torch.long)
        self._per_token = torch.zeros(vocab, dtype=torch.long)
        self._per_token[llm_ids] = counts
        masks = torch.zeros(total + 2, vocab, dtype=torch.bool)
        remaining = total - torch.arange(total + 1)
        fits = (counts[None, :] >= 1) & (counts[None, :] <= remaining[:, None])  # (total + 1, n_ids)
        masks[: total + 1, llm_ids] = fits
        masks[total, layout.eoa_id] = True
        masks[total + 1, layout.pad_id] = True
        super().__init__(masks)
        self.total = total
        self._done = total + 1
        self.stop_id = layout.eoa_id
        self.max_new_tokens = total + 1
        self._lut: dict[torch.device, torch.Tensor] = {}

    def widths(self) -> torch.Tensor:
        """Coefficients each vocabulary id writes, ``(vocab_size,)`` (0 for non-action ids)."""
        return self._per_token.clone()

    def _counts(self, device: torch.device) -> torch.Tensor:
        if device not in self._lut:
            self._lut[device] = self._per_token.to(device)
        return self._lut[device]

    def initial_state(self, batch_size: int, device: torch.device | str) -> torch.Tensor:
        return torch.zeros(batch_size, dtype=torch.long, device=device)

    def allowed(self, state: torch.Tensor) -> torch.Tensor:
        return self._masks(state.device)[state.clamp(0, self._done)]

    def advance(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        stopped = (tokens == self.stop_id) | (state == self._done)
        grown = (state + self._counts(state.device)[tokens.clamp(0, self.vocab_size - 1)]).clamp(max=self.total)
        return torch.where(stopped, torch.full_like(state, self._done), grown)

    def finished(self, state: torch.Tensor) -> torch.Tensor:
        return state == self._done
