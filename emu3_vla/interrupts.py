"""Holding Ctrl-C and SIGTERM while something must finish whole (an episode written, a training step)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def deferred_interrupts(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block is done, then act on them as their handlers would.

    An interruption inside lerobot's ``save_episode`` (its parquet rows written, the episode's
    metadata or video not) leaves a dataset whose parts disagree, and one inside an optimiser step
    leaves weights half updated; held here, it arrives between two episodes (two steps), where the
    interrupted command can still save what it has. Main thread only (Python delivers signals
    there); elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in signums}
    for signum in signums:
        signal.signal(signum, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(received):
            handler = previous[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)
