"""FastDecoder: greedy constrained decoding with a static KV cache, captured steps and prefix reuse.

Drop-in for :func:`emu3_vla.decoding.decode` with a
:class:`~emu3_vla.decoding.TokenSetConstraint` and the greedy sampler (what the policy runs): same
inputs, same :class:`~emu3_vla.decoding.DecodeOutput`, the same tokens. One call:

1. **prefix reuse** — rows whose ``[BOS] instruction`` prefix was seen before get its cached
   keys/values copied into slots ``[0, P)`` (:class:`PrefixCache`);
2. **prefill** — the rest of every prompt in one right-padded pass (fused head, first token picked);
3. **decode** — ``mode="static"``: one token per step; ``mode="parallel"``: up to ``draft + 1``
   verified tokens per step (:mod:`.drafting`, :func:`~.steps.verify_step`). On CUDA each step is one
   graph replay; the host only reads a lagged "all done" flag, so the device never waits for it.

Sessions (buffers + captured graphs) are kept per batch bucket (powers of two on CUDA, so 3 or 4
environments share the graphs of 4; the extra rows are born done) and grow when a longer prompt
arrives. On the CPU the same steps run eagerly: the static cache and fused head still pay, and
every test of equivalence runs the code the GPU runs.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Sequence

import torch
from torch import nn

from emu3_vla.decoding.constraints import ActionLengthConstraint, TokenSetConstraint
from emu3_vla.decoding.forward import DecoderForward
from emu3_vla.decoding.graphs import LaggedFlag, capture
from emu3_vla.decoding.loop import DecodeOutput, check_context
from emu3_vla.decoding.prefix_cache import PrefixCache
from emu3_vla.decoding.steps import DecodeBuffers, GreedyRule, sequential_step, verify_step
from emu3_vla.decoding.weights import DecoderWeights, action_head

log = logging.getLogger(__name__)

MODES = ("static", "parallel")
_DEFAULT_POSITIONS = 16_384


@dataclasses.dataclass
class FastDecodeStats:
    """What the last :meth:`FastDecoder.decode` call did."""

    rows: int = 0
    bucket: int = 0
    prompt_tokens: int = 0
    reused_prefix_tokens: int = 0
    decode_forwards: int = 0  # forward passes after the prefill
    new_tokens: list[int] = dataclasses.field(default_factory=list)
    prefill_ms: float = 0.0
    decode_ms: float = 0.0

    @property
    def tokens_per_forward(self) -> float:
        """Tokens of the longest row per forward pass it needed (prefill included); sequential = 1."""
        longest = max(self.new_tokens, default=0)
        return longest / (1 + self.decode_forwards) if longest else 0.0

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "tokens_per_forward": self.tokens_per_forward}


@dataclasses.dataclass
class _Session:
    buffers: DecodeBuffers
    step: object  # () -> None: a graph replay or the eager step
    compiled: bool


class FastDecoder:
    """Greedy decoding under a token-set constraint, fast on CUDA and exact everywhere.

    Args:
        model: ``Emu3ForCausalLM`` (any device / dtype); its weights are read, never changed unless
            ``share_weights``.
        constraint: the allowed ids and stop id (e.g. the policy's action ids + ``[EOA]``).
        pad_id: filler of finished rows in the output (as in :func:`~emu3_vla.decoding.decode`).
        mode: ``"static"`` (one token per step) or ``"parallel"`` (draft-and-verify, same tokens).
        draft_tokens: drafts verified per parallel step (the step feeds ``draft_tokens + 1`` tokens).
        cuda_graphs: capture steps as CUDA graphs (default: on CUDA).
        compile: ``torch.compile`` the layer functions inside the graphs (default: on CUDA); True
            means Inductor, a string names another backend (``"aot_eager"`` traces without code
            generation). On failure the decoder logs why and keeps the eager layers (``compile_error``).
        share_weights: point the model's q/k/v and gate/up parameters at the fused tensors instead
            of keeping a copy (saves 14 GB for emu3-8b; the model computes the same values).
        prefix_cache_size: prompt prefixes whose keys/values are kept (0 disables reuse).
        batch_buckets: round the batch up to a power of two (extra rows are born done), so a few
            captured graphs serve every number of environments (default: with CUDA graphs).

    The decoder works on a snapshot of the weights (the head rows and, unless shared, the fused
    matrices are copies; cached prefixes hold keys/values of these weights): build a new one after
    the model's weights change, e.g. for each evaluation during training.
    """

    def __init__(
        self,
        model: nn.Module,
        constraint: TokenSetConstraint,
        *,
        pad_id: int,
        mode: str = "static",
        draft_tokens: int = 7,
        cuda_graphs: bool | None = None,
        compile: bool | str | None = None,
        share_weights: bool = False,
        prefix_cache_size: int = 32,
        batch_buckets: bool | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown decoding mode {mode!r}; choose one of {MODES}")
        if not isinstance(constraint, (TokenSetConstraint, ActionLengthConstraint)):
            raise TypeError(
                f"the fast decoder fuses a TokenSetConstraint (allowed ids + stop id) or an ActionLengthConstraint "
                f"into its head; got {type(constraint).__name__}. Use emu3_vla.decoding.decode for other constraints."
            )
        if not 1 <= draft_tokens <= 32:
            raise ValueError(f"draft_tokens must be in [1, 32], got {draft_tokens}")
        self.device = next(model.parameters()).device
        on_cuda = self.device.type == "cuda"
        if cuda_graphs and not on_cuda:
            raise ValueError(f"cuda_graphs=True needs a model on a CUDA device; this one is on {self.device}")
        self.model = model
        self.mode = mode
        self.pad_id = int(pad_id)
        self.draft = draft_tokens if mode == "parallel" else 0
        self.cuda_graphs = on_cuda if cuda_graphs is None else bool(cuda_graphs)
        self.batch_buckets = self.cuda_graphs if batch_buckets is None else bool(batch_buckets)
        compile = on_cuda if compile is None else compile
        self.compile_backend: str | None = ("inductor" if compile is True else compile) or None
        self.compile_error: str | None = None
        self.constraint = constraint

        widths, total, min_new = None, 0, 1
        if isinstance(constraint, ActionLengthConstraint):
            running = constraint.allowed(torch.zeros(1, dtype=torch.long))[0]
            running[constraint.stop_id] = True
            widths, total = constraint.widths().to(self.device), constraint.total
        else:
            min_new = int(constraint.min_new_tokens)
            running = constraint.allowed(torch.full((1,), min_new, dtype=torch.long))[0]
        allowed = torch.nonzero(running).flatten().tolist()
        self.weights = DecoderWeights.from_model(model, share=share_weights)
        self.head = action_head(model, allowed, constraint.stop_id)
        stop_mask = torch.zeros(len(allowed), dtype=torch.bool, device=self.device)
        if self.head.stop_index is not None:
            stop_mask[self.head.stop_index] = True
        self.rule = GreedyRule(self.head.ids, stop_mask, int(constraint.stop_id), min_new, widths, total)
        limit = getattr(model.config, "max_position_embeddings", None) or _DEFAULT_POSITIONS
        self._positions = _round_up(int(limit) + self.draft + 2, 256)
        self.forward = DecoderForward(self.weights, self.head, max_positions=self._positions)
        self.prefix_cache = PrefixCache(prefix_cache_size)
        self.stats = FastDecodeStats()
        self._sessions: dict[int, _Session] = {}

    # ------------------------------------------------------------------ public
    @torch.no_grad()
    def decode(
        self,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int | None = None,
        prefix_lengths: Sequence[int] | None = None,
    ) -> DecodeOutput:
        """Greedy tokens after each prompt, as :func:`~emu3_vla.decoding.decode` would produce them.

        ``prefix_lengths[i]``: how many leading tokens of prompt ``i`` form a prefix worth caching
        (the policy passes the length of ``[BOS] instruction``); 0 or None: no reuse.
        """
        prompts = [[int(t) for t in p] for p in prompts]
        max_new = self._check(prompts, max_new_tokens, prefix_lengths)
        prefixes = list(prefix_lengths) if prefix_lengths is not None else [0] * len(prompts)
        longest = max(len(p) for p in prompts)
        check_context(self.model, longest, max_new)
        rows = len(prompts)
        session = self._session(self._bucket(rows), longest + max_new + self.draft + 2)
        timer = _Timer(self.device)
        reused = self._prefill(session.buffers, prompts, prefixes, max_new)
        timer.mark()
        forwards = self._run(session, budget=max_new - 1)
        timer.mark()
        buf = session.buffers
        produced = buf.generated[:rows].cpu()
        stopped = buf.stopped[:rows].cpu()
        width = int(produced.max())
        tokens = buf.out[:rows, :width].cpu()
        tokens[torch.arange(width)[None, :] >= produced[:, None]] = self.pad_id
        prefill_ms, decode_ms = timer.elapsed_ms()
        self.stats = FastDecodeStats(
            rows=rows,
            bucket=buf.batch,
            prompt_tokens=sum(len(p) for p in prompts),
            reused_prefix_tokens=reused,
            decode_forwards=forwards,
            new_tokens=produced.tolist(),
            prefill_ms=prefill_ms,
            decode_ms=decode_ms,
        )
        return DecodeOutput(tokens, stopped, produced, None)

    # ------------------------------------------------------------- internals
    def _check(self, prompts: list[list[int]], max_new_tokens: int | None, prefix_lengths) -> int:
        if not prompts:
            raise ValueError("no prompts to decode")
        vocab = int(self.weights.embed.shape[0])
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"prompt {i} is empty; every prompt needs at least one token (e.g. [BOS])")
            if min(p) < 0 or max(p) >= vocab:
                raise ValueError(f"prompt {i} has ids outside the vocabulary [0, {vocab})")
        if prefix_lengths is not None:
            if len(prefix_lengths) != len(prompts):
                raise ValueError(f"{len(prefix_lengths)} prefix lengths for {len(prompts)} prompts")
            for i, (n, p) in enumerate(zip(prefix_lengths, prompts, strict=True)):
                if not 0 <= int(n) <= len(p):
                    raise ValueError(f"prefix length {n} of prompt {i} is outside [0, {len(p)}]")
        max_new = max_new_tokens if max_new_tokens is not None else self.constraint.max_new_tokens
        if max_new is None:
            raise ValueError("this constraint is open-ended: pass max_new_tokens")
        if max_new < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new}")
        return int(max_new)

    def _bucket(self, rows: int) -> int:
        return 1 << (rows - 1).bit_length() if self.batch_buckets else rows

    def _session(self, bucket: int, need: int) -> _Session:
        session = self._sessions.get(bucket)
        if session is not None and session.buffers.capacity >= need:
            return session
        self._sessions.pop(bucket, None)  # drop the old graphs before their buffers
        capacity = min(_round_up(need, 256 if self.cuda_graphs else 64), self._positions)
        buffers = DecodeBuffers.allocate(self.forward, bucket, capacity, max(self.draft, 1))
        splits = capacity // 256 if self.device.type == "cuda" and capacity % 256 == 0 else 1
        backend = self.compile_backend if self.compile_error is None else None
        try:
            step = self._make_step(buffers, splits, backend)
        except Exception as error:  # any compile or capture failure: fall back to the eager layers
            if backend is None:
                raise
            self.compile_error = f"{type(error).__name__}: {error}"
            log.warning("torch.compile of the decode layers failed, using eager layers: %s", self.compile_error)
            backend = None
            step = self._make_step(buffers, splits, backend)
        session = _Session(buffers, step, backend is not None)
        self._sessions[bucket] = session
        return session

    def _make_step(self, buffers: DecodeBuffers, splits: int, backend: str | None):
        step_fns = self.forward.step_functions(splits, backend)
        kind = verify_step if self.mode == "parallel" else sequential_step
        step = functools.partial(kind, buffers, self.forward, self.rule, step_fns)
        if not self.cuda_graphs:
            return step
        return capture(step, self.device, pool=torch.cuda.graph_pool_handle())

    def _prefill(self, buf: DecodeBuffers, prompts: list[list[int]], prefixes: list[int], max_new: int) -> int:
        """Reset the buffers, reuse cached prefixes, run the rest of each prompt, pick the first tokens."""
        rows, device = len(prompts), self.device
        starts, to_store, reused = [], [], 0
        for b, (prompt, n) in enumerate(zip(prompts, prefixes, strict=True)):
            start = 0
            if 0 < n < len(prompt):  # a prefix that is the whole prompt leaves nothing to predict from
                entry = self.prefix_cache.get(prompt[:n])
                if entry is None:
                    to_store.append((b, n))
                else:
                    buf.kv[:, :, b, :, :n].copy_(entry)
                    start, reused = n, reused + n
            starts.append(start)
        rests = [p[s:] for p, s in zip(prompts, starts, strict=True)]
        width = max(len(r) for r in rests)
        ids = torch.full((rows, width), self.pad_id, dtype=torch.long)
        history = torch.full((buf.batch, buf.capacity), self.pad_id, dtype=torch.long)
        for b, (rest, prompt) in enumerate(zip(rests, prompts, strict=True)):
            ids[b, : len(rest)] = torch.tensor(rest)
            history[b, : len(prompt)] = torch.tensor(prompt)
        start_t = torch.tensor(starts, dtype=torch.long)
        positions = (start_t[:, None] + torch.arange(width)[None, :]).to(device)
        lengths = torch.tensor([len(p) for p in prompts], dtype=torch.long, device=device)
        last = torch.tensor([len(r) - 1 for r in rests], dtype=torch.long, device=device)
        # keys read by the prefill, padded to a multiple of 8 so fused attention kernels take the mask as is
        key_len = min(_round_up(int(start_t.max()) + width, 8), buf.capacity)

        hidden = self.forward.hidden(buf.kv[:, :, :rows], ids.to(device), positions, buf.rows[:rows], key_len=key_len)
        final = hidden[torch.arange(rows, device=device), last][:, None]  # (rows, 1, hidden)
        zeros = torch.zeros_like(last)[:, None]
        first = self.rule.pick(self.forward.logits(final), zeros, zeros)[:, 0]

        buf.max_new.fill_(max_new)
        buf.tokens.copy_(history.to(device))
        buf.pos.zero_()
        buf.generated.zero_()
        buf.stopped.zero_()
        buf.done.fill_(True)  # rows beyond the prompts (bucket padding) are born done
        buf.out.fill_(self.pad_id)
        index = buf.rows[:rows, 0]
        buf.tokens[index, lengths] = first
        buf.pos[:rows] = lengths
        buf.out[:rows, 0] = first
        buf.guesses[:rows] = first[:, None]
        stop = first == self.rule.stop_id
        buf.filled.zero_()
        buf.filled[:rows] = self.rule.width_of(first)
        buf.generated[:rows] = 1
        buf.stopped[:rows] = stop
        buf.done[:rows] = stop | (max_new <= 1)
        buf.all_done.copy_(buf.done.all())
        for b, n in to_store:
            self.prefix_cache.put(prompts[b][:n], buf.kv[:, :, b, :, :n].clone())
        return reused

    def _run(self, session: _Session, budget: int) -> int:
        """Step until every row is done or ``budget`` steps ran; returns the steps queued."""
        buf, steps = session.buffers, 0
        if budget <= 0:
            return 0
        if self.device.type != "cuda":
            while steps < budget and not bool(buf.all_done):
                session.step()
                steps += 1
            return steps
        flag = LaggedFlag(buf.all_done)
        flag.record()
        while steps < budget:
            session.step()
            steps += 1
            flag.record()
            if flag.previous():  # the rows were already done before this step: it ran for nothing
                break
        return steps


class _Timer:
    """Wall time between marks: CUDA events on the GPU (no sync until read), perf_counter on the CPU."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list = []
        self.mark()

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def elapsed_ms(self) -> list[float]:
        pairs = zip(self.marks[:-1], self.marks[1:], strict=True)
        if self.cuda:
            self.marks[-1].synchronize()
            return [a.elapsed_time(b) for a, b in pairs]
        return [(b - a) * 1000.0 for a, b in pairs]


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
