"""Replay a step as one CUDA graph, or call it directly where graphs are unavailable (CPU).

A decode step of the 8.49 B model is ~450 kernels. Launched from Python one by one they cost more
than the 4 ms the weights take to read; recorded once into a CUDA graph they are replayed by a single
launch. The step functions take their inputs from persistent buffers and write results back in place
(:mod:`emu3_vla.decoding.steps`), so the recorded addresses stay valid for every later replay.

Capture runs the step a few times on a side stream first (``torch.compile`` compiles there, cuBLAS
picks its kernels and allocates its workspace), then records it into a memory pool shared by all
graphs of one set of buffers. The warm-up steps change the buffers: callers re-initialise them
before every use anyway.

:class:`LaggedFlag` tells the host loop when every row is done without stalling the device: after
queueing step ``i`` the host waits for step ``i - 1`` only, whose "all done" flag arrives in pinned
memory; the device always has the next step queued, and at most one step runs past the end.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Step = Callable[[], None]


def capture(step: Step, device: torch.device, *, pool=None, warmup: int = 3) -> Step:
    """``step`` recorded as a CUDA graph on ``device`` (returns its replay), or ``step`` itself on CPU."""
    if device.type != "cuda":
        return step
    side = torch.cuda.Stream(device=device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        step()
    torch.cuda.current_stream(device).synchronize()
    return graph.replay


class LaggedFlag:
    """Lag-one reading of a device-side boolean (CUDA): the device never waits for the host."""

    def __init__(self, flag: torch.Tensor) -> None:
        if flag.device.type != "cuda":
            raise ValueError("LaggedFlag reads a CUDA tensor; on the CPU read the flag directly")
        self.flag = flag
        self._host = torch.zeros(2, dtype=torch.bool, pin_memory=True)
        self._events = [torch.cuda.Event(), torch.cuda.Event()]
        self._recorded = 0

    def record(self) -> None:
        """Snapshot the flag as it will be after the work queued so far (non-blocking)."""
        slot = self._recorded % 2
        self._host[slot].copy_(self.flag, non_blocking=True)
        self._events[slot].record()
        self._recorded += 1

    def previous(self) -> bool:
        """The snapshot before the latest one: waits for it while the latest work keeps the device busy."""
        if self._recorded < 2:
            raise RuntimeError("record() twice before reading the previous snapshot")
        slot = self._recorded % 2  # the older of the two slots
        self._events[slot].synchronize()
        return bool(self._host[slot])
