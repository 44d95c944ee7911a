"""Every command the README shows is run by a test exactly as written.

This file runs the sections on evaluation, serving and videos from a folder that holds a small
checkpoint where the demo puts its own (``runs/demo/train_main/model``); the own-dataset and
gymnasium sections are run by ``tests/test_own_dataset.py`` and ``tests/test_gym_eval.py``; the
opening block's setup and test commands are what ``.ci/run`` runs, and ``emu3-vla demo`` is the
``--quick`` smoke test's pipeline (``tests/test_demo.py``). The last test makes sure no section with
commands is left out of that list.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from lerobot_made import code_blocks, readme_section, shell_commands

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TESTED_ELSEWHERE = {"Using your own LeRobot dataset", "Evaluating in a gymnasium environment"}
RUN_HERE = {"Evaluating on CALVIN", "Serving a policy", "Rollout videos and reports"}

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]


def env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}


def run_block(block: str, cwd: Path) -> str:
    """A README bash block, run by bash as it stands (its commands, continuations and all)."""
    done = subprocess.run(["bash", "-e", "-c", block], cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"README block failed:\n{block}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A user's folder after `emu3-vla demo`: a trained-format checkpoint at the demo's path."""
    from test_policy import tiny_vla

    root = tmp_path_factory.mktemp("readme")
    tiny_vla().save(root / "runs" / "demo" / "train_main" / "model")
    return root


def test_opening_block_is_the_setup_the_main_job_and_the_tests():
    first = code_blocks(README.read_text().split("\n## ")[0], "bash")[0]
    commands = [c[:2] for c in shell_commands(first)]
    assert commands == [["./setup.sh"], [".venv/bin/emu3-vla", "demo"], [".venv/bin/python", "-m"]]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./setup.sh" in ci and ".venv/bin/python -m pytest" in ci


def test_evaluation_section(workdir):
    (block,) = code_blocks(readme_section(README, "Evaluating on CALVIN"), "bash")
    printed = run_block(block, workdir)
    assert (workdir / "runs" / "eval_tasks" / "results.json").is_file()
    assert (workdir / "runs" / "eval_chains" / "report.html").is_file()
    assert "avg len" in printed


def test_serving_section(workdir):
    section = readme_section(README, "Serving a policy")
    (serve,) = code_blocks(section, "bash")
    (client,) = code_blocks(section, "python")
    (command,) = shell_commands(serve)
    port = command[command.index("--port") + 1]
    server = subprocess.Popen(
        ["bash", "-c", serve], cwd=workdir, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                    assert reply.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                assert time.monotonic() < deadline, "the README's server did not come up"
                time.sleep(0.5)
        done = subprocess.run(
            [sys.executable, "-c", client], cwd=workdir, env=env(), capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert re.search(r"^2 model queries$", done.stdout, flags=re.M), done.stdout
    finally:
        server.terminate()
        server.wait(timeout=60)


def test_videos_section(workdir):
    (block,) = code_blocks(readme_section(README, "Rollout videos and reports"), "bash")
    run_block(block, workdir)
    videos = sorted((workdir / "runs" / "videos" / "videos").glob("*.mp4"))
    assert len(videos) == 2 and (workdir / "runs" / "videos" / "report.html").stat().st_size > 10_000


def test_every_section_with_commands_is_run_by_a_test():
    sections = re.findall(r"^## (.+)$", README.read_text(), flags=re.M)
    with_code = {s for s in sections if re.search(r"^```(bash|python)$", readme_section(README, s), flags=re.M)}
    assert with_code == RUN_HERE | TESTED_ELSEWHERE, (
        f"untested README sections: {with_code - RUN_HERE - TESTED_ELSEWHERE}"
    )
