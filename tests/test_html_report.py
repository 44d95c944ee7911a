"""report.html of an evaluation folder, looked at the way a person looks at it: in a real browser.

Small real evaluations (the scripted expert, a few chains and tasks, videos on) write their folders
and, through the hook in :mod:`eval.evaluate`, their ``report.html``. A headless Chromium (Debian's
``chromium`` and ``chromium-driver``, driven by Selenium) then opens each page from disk and checks
that the summary table shows the numbers of ``results.json``, that every ``<video>`` loads its
embedded data (``readyState >= 2``, no media error) and plays (``currentTime`` advances after a
muted ``play()``), and that the page loads nothing but ``data:`` URIs. A text check cannot tell a
video that plays from a broken player: only a browser's decoder can, which is why the test needs
one. ``.ci/run`` installs Chromium before the tests; elsewhere the browser tests skip and say how to
install it.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

import av
import numpy as np
import pytest

from eval.evaluate import EvalSettings, evaluate_chains, evaluate_tasks
from eval.html_report import REPORT_NAME, main, read_evaluation, write_report
from eval.results import ChainResult, ResultLog, read_folder

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
INSTALL_HINT = (
    "install Debian's Chromium and its WebDriver with `apt-get install -y chromium chromium-driver` "
    "(.ci/run does this before the tests)"
)
# Root in a container needs --no-sandbox; without the networking flags Chromium waits on a closed
# network (component updates, sync, QUIC probes) and a page load can hang.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--mute-audio",
]

# Runs in the page: for each <video> in turn, wait until it has decoded a frame (readyState >= 2)
# or failed, then play it muted and wait until its clock moves. Sequential, so that two shared CPU
# cores decode one video at a time.
PLAY_ALL_VIDEOS_JS = """
const done = arguments[arguments.length - 1];
const until = (check, ms) => new Promise(resolve => {
  const start = performance.now();
  (function poll() {
    if (check() || performance.now() - start > ms) resolve(); else setTimeout(poll, 50);
  })();
});
(async () => {
  const out = [];
  for (const v of document.querySelectorAll('video')) {
    await until(() => v.readyState >= 2 || v.error, 30000);
    const ready = v.readyState, t0 = v.currentTime;
    let playError = null;
    v.muted = true;
    try { await v.play(); } catch (e) { playError = String(e); }
    await until(() => v.currentTime > t0 + 0.1 || v.error, 15000);
    out.push({name: v.dataset.name, ready: ready, error: v.error ? v.error.code + ': ' + v.error.message : null,
              playError: playError, t0: t0, t1: v.currentTime, duration: v.duration,
              width: v.videoWidth, height: v.videoHeight});
    v.pause();
  }
  done(out);
})().catch(e => done('script error: ' + e));
"""

TABLE_JS = """
const table = document.getElementById(arguments[0]);
if (!table) return null;
const cells = row => [...row.cells].map(c => c.innerText.trim());
return {headers: cells(table.tHead.rows[0]), rows: [...table.tBodies[0].rows].map(cells),
        visible: table.getBoundingClientRect().height > 0};
"""

EXTERNAL_JS = """
const urls = [...document.querySelectorAll('[src]')].map(e => e.getAttribute('src'))
  .concat([...document.querySelectorAll('link[href]')].map(e => e.getAttribute('href')));
return urls.filter(u => !u.startsWith('data:'));
"""


def _settings(out: Path, policy: str, **kw) -> EvalSettings:
    return EvalSettings(policy=policy, out=out, progress=False, **kw)


@pytest.fixture(scope="module")
def chains_folder(tmp_path_factory) -> Path:
    """Two CALVIN chains of the scripted expert with a 60-step budget: it completes some subtasks and
    runs out of time on others, so the page has successes, failures and numbers that are not all 0."""
    out = tmp_path_factory.mktemp("report") / "chains"
    evaluate_chains(_settings(out, "expert", ep_len=60, videos=2), num_chains=2)
    return out


@pytest.fixture(scope="module")
def tasks_folder(tmp_path_factory) -> Path:
    """The single-task suite on two tasks, one of which needs a prefix task first."""
    out = tmp_path_factory.mktemp("report") / "tasks"
    evaluate_tasks(_settings(out, "expert", videos=2), tasks=["open_drawer", "place_in_slider"], per_task=1)
    return out


def _write_video(path: Path, codec: str, frames: int = 30, size: tuple[int, int] = (96, 64)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            rgb = np.zeros((size[1], size[0], 3), np.uint8)
            rgb[:, (3 * i) % size[0] :, 1] = 200
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def gym_folder(tmp_path_factory) -> Path:
    """What a future ``emu3-vla eval gym`` may write: results.json with episode records and videos,
    one of them MPEG-4 Part 2 (which browsers do not decode: the report must transcode it)."""
    out = tmp_path_factory.mktemp("report") / "gym"
    _write_video(out / "videos" / "episode_0.mp4", "libx264")
    _write_video(out / "videos" / "episode_1.mp4", "mpeg4")
    episodes = [
        {"episode_index": 0, "success": True, "task": "open_drawer", "steps": 30, "video": "videos/episode_0.mp4"},
        {"episode_index": 1, "success": False, "task": "turn_on_led", "steps": 360},
    ]
    (out / "results.json").write_text(json.dumps({"kind": "gym", "env": "envs/PlayTable-v0", "episodes": episodes}))
    return out


@pytest.fixture(scope="module")
def browser():
    missing = [
        name for name, path in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not Path(path).is_file()
    ]
    if missing:
        pytest.skip(f"the report's browser check needs {' and '.join(missing)}: {INSTALL_HINT}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # with both paths given, Selenium never looks for a driver online
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        options.add_argument(f"--user-data-dir={profile}")
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            driver.set_page_load_timeout(120)
            driver.set_script_timeout(120)
            yield driver
        finally:
            driver.quit()


def open_page(browser, folder: Path) -> dict:
    browser.get((folder / REPORT_NAME).resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    assert browser.execute_script(EXTERNAL_JS) == [], "the report must not load anything but data: URIs"
    return {"summary": browser.execute_script(TABLE_JS, "summary")}


def assert_videos_play(browser, expected_names: list[str]) -> None:
    states = browser.execute_async_script(PLAY_ALL_VIDEOS_JS)
    assert isinstance(states, list), states
    assert [s["name"] for s in states] == expected_names
    for s in states:
        assert s["error"] is None and s["playError"] is None, s
        assert s["ready"] >= 2, f"{s['name']} never decoded a frame: {s}"
        assert s["t1"] > s["t0"], f"{s['name']} did not play: {s}"
        assert s["duration"] > 0 and s["width"] > 0 and s["height"] > 0, s


def outcome_of(r: ChainResult) -> str:
    return "success" if r.completed == len(r.tasks) else "failure"


def test_evaluations_write_a_report_next_to_their_results(chains_folder, tasks_folder):
    for folder in (chains_folder, tasks_folder):
        page = (folder / REPORT_NAME).read_text()
        assert page.startswith("<!DOCTYPE html>") and 'id="summary"' in page
        assert page.count("<video") == len(list((folder / "videos").glob("*.mp4"))) == 2
        assert not re.search(r'src="(?!data:)', page), "every src must be a data: URI"


def test_chain_report_renders_summary_and_plays_videos_in_chromium(browser, chains_folder):
    m = json.loads((chains_folder / "results.json").read_text())
    page = open_page(browser, chains_folder)
    summary = page["summary"]
    assert summary and summary["visible"]
    assert summary["headers"] == ["chains", "SR@1", "SR@2", "SR@3", "SR@4", "SR@5", "avg len"]
    expected = [str(m["chains"]), *(f"{100 * m[f'sr@{i}']:.1f}%" for i in range(1, 6)), f"{m['avg_len']:.2f}"]
    assert summary["rows"] == [expected]
    per_task = browser.execute_script(TABLE_JS, "per-task")
    assert [row[0] for row in per_task["rows"]] == sorted(m["per_task"])
    for row in per_task["rows"]:
        assert row[-1] == f"{100 * m['per_task'][row[0]]['success_rate']:.1f}%"
    assert browser.execute_script("return document.querySelectorAll('#plots img').length") == 1
    assert browser.execute_script("return [...document.images].every(i => i.complete && i.naturalWidth > 0)")
    cards = browser.execute_script(
        "return [...document.querySelectorAll('.episode')].map(e => [e.dataset.video, e.dataset.outcome, e.innerText])"
    )
    results = read_folder(chains_folder)
    assert [(name, outcome) for name, outcome, _ in cards] == [
        (f"chain_{r.chain_index:04d}.mp4", outcome_of(r)) for r in results
    ]
    for (_, _, text), r in zip(cards, results, strict=True):
        assert f"chain {r.chain_index}" in text and all(task in text for task in r.tasks)
        if r.completed < len(r.tasks):  # the failed subtask is named
            assert f"failed subtask {r.completed + 1}: {r.tasks[r.completed]}" in text
    assert_videos_play(browser, [name for name, _, _ in cards])


def test_task_report_renders_summary_and_plays_videos_in_chromium(browser, tasks_folder):
    m = json.loads((tasks_folder / "results.json").read_text())
    summary = open_page(browser, tasks_folder)["summary"]
    assert summary["headers"] == ["episodes", "tasks", "SR (mean over tasks)"]
    assert summary["rows"] == [[str(m["episodes"]), str(m["tasks"]), f"{100 * m['sr@1']:.1f}%"]]
    per_task = browser.execute_script(TABLE_JS, "per-task")
    assert [row[0] for row in per_task["rows"]] == ["open_drawer", "place_in_slider"]
    titles = browser.execute_script("return [...document.querySelectorAll('.episode h3')].map(h => h.innerText)")
    assert [t.split(" (#")[0] for t in titles] == ["open_drawer", "place_in_slider"]
    assert_videos_play(browser, sorted(p.name for p in (tasks_folder / "videos").glob("*.mp4")))


def test_generic_episode_folder_report_transcodes_what_browsers_cannot_play(browser, gym_folder):
    write_report(gym_folder)
    page = (gym_folder / REPORT_NAME).read_text()
    assert page.count("video/mp4;base64") == 2 and "transcoded from mpeg4" in page
    summary = open_page(browser, gym_folder)["summary"]
    assert summary["headers"] == ["env", "episodes", "success rate"]
    assert summary["rows"] == [["envs/PlayTable-v0", "2", "50.0%"]]
    outcomes = browser.execute_script("return [...document.querySelectorAll('.episode')].map(e => e.dataset.outcome)")
    assert outcomes == ["success", "failure"]
    assert_videos_play(browser, ["episode_0.mp4", "episode_1.mp4"])
    with av.open(str(gym_folder / "videos" / "episode_1.mp4")) as c:  # the folder's own file is untouched
        assert c.streams.video[0].codec_context.name == "mpeg4"


def test_video_cap_links_the_rest_and_says_so(chains_folder, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(chains_folder, folder)
    page = write_report(folder, max_videos=1).read_text()
    assert page.count("<video") == 1 and 'id="video-cap"' in page
    assert '<a href="videos/chain_0001.mp4">' in page and "1 videos are not embedded" in page
    page = write_report(folder, max_video_bytes=1).read_text()  # the byte cap alone
    assert page.count("<video") == 0 and "size cap reached" in page


def test_sections_degrade_gracefully(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "Nothing to report" in write_report(empty).read_text()
    with pytest.raises(FileNotFoundError, match="no such directory"):
        write_report(tmp_path / "missing")

    # A chain log without results.json (a run killed before finalising): metrics recomputed from it.
    log_only = tmp_path / "log_only"
    tasks = ["open_drawer", "turn_on_led", "move_slider_left", "turn_off_led", "close_drawer"]
    ResultLog(log_only / "chains.jsonl").append(ChainResult(3, 0, {}, tasks, [True, False], [10, 360]))
    ev = read_evaluation(log_only)
    assert ev.kind == "chains" and dict(ev.summary)["SR@1"] == "100.0%" and dict(ev.summary)["avg len"] == "1.00"
    assert "no results.json" in ev.notes[0] and ev.videos == []
    page = write_report(log_only).read_text()
    assert 'id="summary"' in page and 'id="videos"' not in page and 'id="plots"' not in page

    # The task suite's three outcomes, one of them a failed prefix task.
    suite = tmp_path / "suite"
    log = ResultLog(suite / "chains.jsonl")
    log.append(ChainResult(10, 0, {}, ["lift_red_block_table", "place_in_slider"], [False], [360]))
    log.append(ChainResult(11, 0, {}, ["lift_red_block_table", "place_in_slider"], [True, False], [50, 360]))
    log.append(ChainResult(12, 0, {}, ["open_drawer"], [True], [40]))
    (suite / "results.json").write_text(json.dumps({"kind": "tasks", "episodes": 3, "tasks": 2, "sr@1": 0.5}))
    for i in (10, 11, 12):
        _write_video(suite / "videos" / f"chain_{i:04d}.mp4", "libx264", frames=4)
    _write_video(suite / "videos" / "unnamed.mp4", "libx264", frames=4)
    (suite / "videos" / "broken.mp4").write_bytes(b"not a video")
    page = write_report(suite).read_text()
    outcomes = re.findall(r'data-outcome="([^"]+)" data-video="([^"]+)"', page)
    assert outcomes == [
        ("prerequisite-failed", "chain_0010.mp4"),
        ("failure", "chain_0011.mp4"),
        ("success", "chain_0012.mp4"),
        ("unknown", "broken.mp4"),
        ("unknown", "unnamed.mp4"),
    ]
    assert "prerequisite lift_red_block_table failed, so place_in_slider was not attempted" in page
    assert "broken.mp4 is not a decodable video" in page and page.count("<video") == 4


def test_cli_rebuilds_the_report_of_an_existing_folder(tasks_folder, capsys):
    (tasks_folder / REPORT_NAME).unlink()
    assert main([str(tasks_folder), "--max-videos", "1"]) == 0
    assert (tasks_folder / REPORT_NAME).read_text().count("<video") == 1
    assert "wrote" in capsys.readouterr().out
    write_report(tasks_folder)  # leave the default page for any later test of this module
