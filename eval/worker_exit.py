"""Worker processes end with the process that started them.

Collection, on-policy collection and evaluation run their simulators in worker processes
(``forkserver`` / ``spawn``). When the main process is killed (``kill``, a job scheduler's SIGTERM,
the OOM killer) it gets no chance to shut its pool down, and the workers went on: measured on
``emu3-vla collect``, two workers finished their queued jobs and then slept for good, and an
evaluation's workers run every chain they were handed, writing to the very result files a restarted
run resumes from. Every worker therefore calls :func:`exit_with_parent` when it starts: a daemon
thread waits on the parent's sentinel (readable once the parent is gone) and ends the worker at once.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from multiprocessing.connection import wait

#: Exit status of a worker whose parent died (128 + SIGTERM, as if it had been terminated with it).
ORPHAN_EXIT_STATUS = 143


def exit_with_parent() -> None:
    """In a worker process: exit as soon as the parent process is gone (no-op in the main process)."""
    parent = multiprocessing.parent_process()
    if parent is None or parent.sentinel is None:
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])
        os._exit(ORPHAN_EXIT_STATUS)  # no cleanup: the results have nowhere to go

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
