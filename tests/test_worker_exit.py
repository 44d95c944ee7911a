"""Killing the main process of a collection (or evaluation) takes its worker processes with it:
without that, a killed run left workers running its queued jobs and then sleeping for good, and a
restarted run competed with them for the cores (eval/worker_exit.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The main process of a collection: two workers run expert jobs through eval.collection.pool.run_jobs;
# after the first result it prints the workers' pids and waits to be killed.
MAIN = """
import json, multiprocessing, sys, time
from eval.collection.collect import CollectConfig, demonstration_jobs, run_settings
from eval.collection.pool import run_jobs
config = CollectConfig(out="unused", episodes=4, static_size=32, gripper_size=32)
results = run_jobs(demonstration_jobs(config, limit=50), run_settings(config), workers=2)
next(results)
print(json.dumps([p.pid for p in multiprocessing.active_children()]), flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process states from /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_workers_exit_when_the_main_process_is_killed(sig):
    main = subprocess.Popen([sys.executable, "-c", MAIN], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        workers = json.loads(main.stdout.readline())
        assert len(workers) >= 2 and all(alive(pid) for pid in workers)
        main.send_signal(sig)
        main.wait(timeout=30)
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in workers if alive(pid)], "workers outlived their killed main process"
    finally:
        main.kill()
        main.wait()
