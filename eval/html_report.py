"""A self-contained ``report.html`` for an evaluation folder: the page you open to look at a run.

An evaluation folder (``emu3-vla eval calvin``, ``eval tasks``, ``eval merge``, and any future
``eval gym``) holds numbers in ``results.json``, outcomes per chain in ``chains*.jsonl``, PNG plots
and rollout videos in ``videos/``. Reading them means opening five files in three programs; the
report puts them on one page: the summary table, per-task success rates, success by chain position,
the plots, and every video next to its chain or task and its outcome (which subtask failed).

Self-contained on purpose: the CSS is inline and the PNGs and videos are embedded as base64
``data:`` URIs, so the page loads nothing from the network or from other files and can be copied,
attached to an issue or archived on its own. Videos make it big, so at most ``max_videos`` videos
(and ``max_video_bytes`` of them) are embedded, in chain order; the page says how many were left out
and links them to their files next to the report instead.

Video codec: rollout videos are H.264 (High profile, yuv420p) in MP4 (:mod:`eval.video`), which
Chromium (Debian's build included: it is built with the proprietary codecs), Chrome, Firefox and
Safari play, so they are embedded byte for byte; ``tests/test_html_report.py`` checks in a real
headless Chromium that they load and play. Videos from elsewhere (a gym recorder writing MPEG-4
Part 2, 4:4:4 chroma, an ``.avi``) would show a broken player, so anything other than
H.264/VP8/VP9/AV1 with 4:2:0 chroma in MP4/WebM is transcoded to H.264 with PyAV for the page only;
the files in ``videos/`` are never changed.

Reading degrades gracefully: each section appears only when its input exists (a folder with just
``results.json`` and ``videos/`` gets a summary and videos; a folder without ``results.json`` but
with ``chains.jsonl`` gets metrics recomputed from the log), and problems (an unreadable log, a
video that cannot be decoded) become notes on the page instead of a missing report. Episodes of a
generic evaluation are read from ``results.json["episodes"]`` or ``episodes*.jsonl`` (one JSON
object per episode; ``success``/``is_success``, ``task``, ``steps``, ``video`` are used when present).

    python -m eval.html_report runs/eval          # (re)build runs/eval/report.html
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import html
import io
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPORT_NAME = "report.html"
MAX_VIDEOS = 24  # a 1,000-chain run records many videos; two dozen are enough to look at
MAX_VIDEO_BYTES = 48 * 2**20  # ... and keep the page small enough to open and attach (base64 adds a third)
VIDEO_SUFFIXES = {".mp4": "video/mp4", ".webm": "video/webm", ".mkv": "", ".avi": "", ".mov": ""}
PLAYABLE_CODECS = {"h264", "vp8", "vp9", "av1"}  # what every current browser decodes in MP4/WebM
PLAYABLE_PIX_FMTS = {"yuv420p", "yuvj420p"}  # 4:2:0 only: browsers refuse High 4:4:4 H.264
STATUS_CLASSES = {"done": "done", "failed": "failed", "not reached": "not-reached"}  # subtask status -> CSS
OUTCOME_LABELS = {
    "success": "success",
    "failure": "failure",
    "prerequisite-failed": "prerequisite failed",
    "unknown": "outcome unknown",
}


@dataclasses.dataclass
class Episode:
    """One rollout as the page shows it, whatever the evaluation kind: a CALVIN chain, one run of
    the task suite or a generic episode."""

    index: int | None
    title: str
    outcome: str  # a key of OUTCOME_LABELS
    detail: str = ""
    subtasks: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # (task, status text)
    video: str | None = None  # file name in videos/ named by the record itself


@dataclasses.dataclass
class Evaluation:
    """Everything the report shows, read from one folder; empty fields mean 'section absent'."""

    folder: Path
    kind: str
    results: dict[str, Any]
    summary: list[tuple[str, str]]
    run_info: list[tuple[str, str]]
    per_task: dict[str, dict[str, Any]]
    by_position: list[dict[str, Any]]
    plots: list[Path]
    videos: list[tuple[Path, Episode]]
    notes: list[str]


# ---------------------------------------------------------------------------------------------- reading


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, int | float) and not isinstance(value, bool) else "–"


def _fmt(key: str, value: Any) -> str:
    """A scalar for a table cell: rates as percentages, other floats with 3 significant digits."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "–"}[value]
    if isinstance(value, float):
        if (key.startswith("sr") or "rate" in key or key.startswith("success")) and 0.0 <= value <= 1.0:
            return _pct(value)
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _avg(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) and not isinstance(value, bool) else _fmt("", value)


def _scalars(results: dict[str, Any], skip: set[str]) -> list[tuple[str, str]]:
    return [
        (k, _fmt(k, v))
        for k, v in results.items()
        if k not in skip and (v is None or isinstance(v, str | int | float | bool))
    ]


def _read_results(folder: Path, notes: list[str]) -> dict[str, Any]:
    path = folder / "results.json"
    if not path.is_file():
        notes.append("no results.json in this folder: the summary is recomputed from the result log where there is one")
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        notes.append(f"results.json could not be read ({err})")
        return {}
    if not isinstance(data, dict):
        notes.append("results.json is not a JSON object; ignored")
        return {}
    return data


def _chain_episode(r: Any, kind: str) -> Episode:
    """A logged chain (:class:`eval.results.ChainResult`): in the chain protocol the chain fails at
    its first failed subtask; in the task suite only the last task is scored and the ones before it
    are a prefix that makes it applicable."""
    subtasks = []
    for k, task in enumerate(r.tasks):
        if k < len(r.successes):
            steps = f" ({r.steps[k]} steps)" if k < len(r.steps) else ""
            subtasks.append((task, ("done" if r.successes[k] else "failed") + steps))
        else:
            subtasks.append((task, "not reached"))
    done = r.completed
    failed = r.tasks[done] if done < len(r.tasks) else None
    if kind == "tasks" and r.tasks:
        target = r.tasks[-1]
        prefix = f" after {', '.join(r.tasks[:-1])}" if len(r.tasks) > 1 else ""
        title = f"{target} (#{r.chain_index})"
        if failed is None:
            return Episode(r.chain_index, title, "success", f"{target} done{prefix}", subtasks)
        if done < len(r.tasks) - 1:
            detail = f"prerequisite {failed} failed, so {target} was not attempted"
            return Episode(r.chain_index, title, "prerequisite-failed", detail, subtasks)
        return Episode(r.chain_index, title, "failure", f"{target} not done in time{prefix}", subtasks)
    title = f"chain {r.chain_index}"
    if failed is None:
        return Episode(r.chain_index, title, "success", f"all {len(r.tasks)} subtasks done", subtasks)
    detail = f"{done}/{len(r.tasks)} subtasks done; failed subtask {done + 1}: {failed}"
    return Episode(r.chain_index, title, "failure", detail, subtasks)


def _first(record: dict[str, Any], *keys: str) -> Any:
    return next((record[k] for k in keys if record.get(k) is not None), None)


def _generic_episode(record: dict[str, Any], position: int) -> Episode:
    """An episode record of a generic evaluation (e.g. ``eval gym``), keys as LeRobot and
    gymnasium name them; whatever is missing is left out."""
    index = _first(record, "episode_index", "episode", "index", "id")
    index = index if isinstance(index, int) else position
    success = _first(record, "success", "is_success", "successes")
    if isinstance(success, list):
        success = bool(success) and all(success)
    outcome = "unknown" if success is None else ("success" if success else "failure")
    task = _first(record, "task", "instruction", "env")
    parts = [f"{k}: {_fmt(k, record[k])}" for k in ("steps", "length", "reward", "return") if k in record]
    if task:
        parts.insert(0, str(task))
    video = _first(record, "video", "video_path")
    return Episode(index, f"episode {index}", outcome, "; ".join(parts), video=Path(video).name if video else None)


def _read_episodes(folder: Path, results: dict[str, Any], kind: str, notes: list[str]) -> list[Episode]:
    """Episodes with their outcomes: from the chain log (chains, tasks) or from episode records."""
    if list(folder.glob("chains*.jsonl")):
        from eval.results import read_folder

        try:
            return [_chain_episode(r, kind) for r in read_folder(folder)]
        except (OSError, ValueError) as err:
            notes.append(f"the chain log could not be read ({err}); videos are shown without outcomes")
            return []
    records = results.get("episodes")
    if not isinstance(records, list):
        records = []
        for path in sorted(folder.glob("episodes*.jsonl")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    notes.append(f"{path.name}:{n} is not JSON; skipped")
    return [_generic_episode(rec, k) for k, rec in enumerate(records) if isinstance(rec, dict)]


def _match_videos(folder: Path, episodes: list[Episode]) -> list[tuple[Path, Episode]]:
    """Each video with the episode it shows: named by the record, or ``chain_0007.mp4`` /
    ``episode_7.mp4`` for index 7; a video nothing names is shown with an unknown outcome."""
    video_dir = folder / "videos"
    files = sorted(p for p in video_dir.glob("*") if p.suffix.lower() in VIDEO_SUFFIXES) if video_dir.is_dir() else []
    by_name = {e.video: e for e in episodes if e.video}
    by_index = {e.index: e for e in episodes if e.index is not None}
    matched = []
    for path in files:
        episode = by_name.get(path.name)
        if episode is None and (m := re.fullmatch(r"(?:chain|episode|ep)[_-]?(\d+)", path.stem)):
            episode = by_index.get(int(m.group(1)))
        matched.append((path, episode or Episode(None, path.stem, "unknown")))
    return sorted(matched, key=lambda pe: (pe[1].index is None, pe[1].index or 0, pe[0].name))


def read_evaluation(folder: str | Path) -> Evaluation:
    """Read what an evaluation folder holds into the sections of the report."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not an evaluation folder (no such directory)")
    notes: list[str] = []
    results = _read_results(folder, notes)
    has_log = bool(list(folder.glob("chains*.jsonl")))
    kind = str(results.get("kind") or ("chains" if has_log else "episodes"))
    if not results and has_log and kind == "chains":
        from eval.results import metrics, read_folder

        try:
            results = {"kind": "chains", **metrics(read_folder(folder))}
        except (OSError, ValueError) as err:
            notes.append(f"the chain log could not be read ({err})")
    episodes = _read_episodes(folder, results, kind, notes)

    if kind == "chains":
        keys = ["chains", *[f"sr@{i}" for i in range(1, 6)], "avg_len"]
        labels = {"chains": "chains", "avg_len": "avg len", **{f"sr@{i}": f"SR@{i}" for i in range(1, 6)}}
        summary = [
            (labels[k], _avg(results[k]) if k == "avg_len" else _fmt(k, results[k])) for k in keys if k in results
        ]
    elif kind == "tasks":
        keys = ["episodes", "tasks", "sr@1"]
        labels = {"episodes": "episodes", "tasks": "tasks", "sr@1": "SR (mean over tasks)"}
        summary = [(labels[k], _fmt(k, results[k])) for k in keys if k in results]
    else:
        keys = []
        summary = _scalars(results, {"kind"})
        flags = [e.outcome == "success" for e in episodes if e.outcome in ("success", "failure")]
        if flags and not any("success" in k or k.startswith("sr") for k, _ in summary):
            summary += [("episodes", f"{len(flags):,}"), ("success rate", _pct(sum(flags) / len(flags)))]
    run_info = [("kind", kind), *_scalars(results, {"kind", *keys})] if kind in ("chains", "tasks") else []
    per_task = results.get("per_task")
    by_position = results.get("by_position")
    plots = sorted(folder.glob("*.png")) + sorted(folder.glob("plots/*.png"))
    return Evaluation(
        folder=folder,
        kind=kind,
        results=results,
        summary=summary,
        run_info=run_info,
        per_task=per_task if isinstance(per_task, dict) else {},
        by_position=by_position if isinstance(by_position, list) else [],
        plots=plots,
        videos=_match_videos(folder, episodes),
        notes=notes,
    )


# ---------------------------------------------------------------------------------------------- videos


def browser_video(path: str | Path) -> tuple[bytes, str, str]:
    """``(bytes, mime type, note)`` of a video a browser can play: the file itself when its codec,
    chroma and container are ones browsers decode (our rollout videos are), otherwise an H.264
    transcode made here (``note`` says so). Raises ``ValueError`` for a file PyAV cannot decode."""
    import av

    path = Path(path)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            codec, pix_fmt = stream.codec_context.name, stream.codec_context.pix_fmt
    except (av.FFmpegError, IndexError) as err:
        raise ValueError(f"{path.name} is not a decodable video ({err})") from err
    mime = VIDEO_SUFFIXES.get(path.suffix.lower(), "")
    if mime and codec in PLAYABLE_CODECS and pix_fmt in PLAYABLE_PIX_FMTS:
        return path.read_bytes(), mime, ""
    return _transcode_h264(path), "video/mp4", f"transcoded from {codec} ({pix_fmt}) to H.264 for this page"


def _transcode_h264(path: Path) -> bytes:
    """H.264/yuv420p MP4 of a video, in memory (dimensions cropped to even numbers, as 4:2:0 needs)."""
    import av
    import numpy as np

    out = io.BytesIO()
    with av.open(str(path)) as src, av.open(out, mode="w", format="mp4") as dst:
        in_stream = src.streams.video[0]
        rate = in_stream.average_rate or 30
        stream = None
        for frame in src.decode(in_stream):
            rgb = frame.to_ndarray(format="rgb24")
            rgb = np.ascontiguousarray(rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2])
            if stream is None:
                stream = dst.add_stream("libx264", rate=rate)
                stream.height, stream.width = rgb.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": "23", "preset": "veryfast"}
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                dst.mux(packet)
        if stream is None:
            raise ValueError(f"{path.name} has no frames")
        for packet in stream.encode():
            dst.mux(packet)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------- rendering

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px auto; max-width: 1180px;
       padding: 0 16px; color: #1d2330; background: #fafbfc; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #dde1e8; }
.sub { color: #5b6475; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0; background: #fff; }
th, td { border: 1px solid #dde1e8; padding: 4px 10px; text-align: right; }
th { background: #eef1f5; } td.name, th.name { text-align: left; font-family: ui-monospace, monospace; }
.bar { display: inline-block; height: 9px; background: #3b7dd8; vertical-align: middle; margin-left: 6px; }
.note { background: #fff6e0; border-left: 4px solid #e0a100; padding: 6px 10px; margin: 8px 0; }
.plots img { max-width: 100%; border: 1px solid #dde1e8; background: #fff; margin: 6px 12px 6px 0; }
.episode { display: flex; gap: 16px; align-items: flex-start; background: #fff; border: 1px solid #dde1e8;
           border-left: 6px solid #9aa3b2; padding: 10px; margin: 10px 0; }
.episode.success { border-left-color: #2e9e4f; } .episode.failure { border-left-color: #d33a3a; }
.episode.prerequisite-failed { border-left-color: #e0a100; }
.episode video { width: 400px; max-width: 100%; background: #000; flex: none; }
.episode h3 { margin: 0 0 4px; font-size: 15px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 9px; color: #fff; background: #9aa3b2;
         font-size: 12px; }
.success .badge { background: #2e9e4f; } .failure .badge { background: #d33a3a; }
.prerequisite-failed .badge { background: #e0a100; }
ol.subtasks { margin: 6px 0; padding-left: 22px; font-family: ui-monospace, monospace; font-size: 12.5px; }
.done { color: #2e9e4f; } .failed { color: #d33a3a; } .not-reached { color: #9aa3b2; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(table_id: str, headers: Sequence[str], rows: Sequence[Sequence[str]], name_col: bool = False) -> str:
    """An HTML table; cells are trusted HTML (callers escape), the first column left-aligned with
    ``name_col``."""
    cls = ' class="name"'
    head = "".join(f"<th{cls if name_col and i == 0 else ''}>{_e(h)}</th>" for i, h in enumerate(headers))
    body = "\n".join(
        "<tr>" + "".join(f"<td{cls if name_col and i == 0 else ''}>{c}</td>" for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def _rate_cell(rate: Any) -> str:
    if not isinstance(rate, int | float):
        return "–"
    return f'{_pct(rate)}<span class="bar" style="width:{max(0.0, min(1.0, rate)) * 80:.0f}px"></span>'


def _per_task_table(per_task: dict[str, dict[str, Any]]) -> str:
    order = ["attempts", "reached", "prerequisite_failures", "successes", "success_rate_reached", "success_rate"]
    present = {k for entry in per_task.values() if isinstance(entry, dict) for k in entry}
    cols = [k for k in order if k in present] + sorted(present - set(order))
    rows = []
    for task, entry in sorted(per_task.items()):
        entry = entry if isinstance(entry, dict) else {}
        cells = [_e(task)]
        for k in cols:
            v = entry.get(k)
            cells.append(_rate_cell(v) if k.startswith("success_rate") else _e(_fmt(k, v) if v is not None else "–"))
        rows.append(cells)
    headers = ["task", *(c.replace("_", " ") for c in cols)]
    return _table("per-task", headers, rows, name_col=True)


def _position_table(by_position: list[dict[str, Any]]) -> str:
    rows = []
    for p in by_position:
        attempts, successes = p.get("attempts", 0), p.get("successes", 0)
        rate = successes / attempts if attempts else None
        rows.append([_e(p.get("position", "")), _e(attempts), _e(successes), _rate_cell(rate)])
    return _table("by-position", ["subtask position", "attempts", "successes", "success rate"], rows)


def _data_uri(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _episode_card(path: Path, episode: Episode, media: str) -> str:
    items = []
    for task, status in episode.subtasks:
        cls = next((c for prefix, c in STATUS_CLASSES.items() if status.startswith(prefix)), "")
        items.append(f'<li><span class="{_e(cls)}">{_e(task)}</span> — {_e(status)}</li>')
    subtasks = f'<ol class="subtasks">{"".join(items)}</ol>' if items else ""
    detail = f"<p>{_e(episode.detail)}</p>" if episode.detail else ""
    return (
        f'<div class="episode {_e(episode.outcome)}" data-outcome="{_e(episode.outcome)}"'
        f' data-video="{_e(path.name)}">\n'
        f"{media}\n"
        f'<div><h3>{_e(episode.title)} <span class="badge">{_e(OUTCOME_LABELS[episode.outcome])}</span></h3>\n'
        f'{detail}{subtasks}<p class="sub">{_e(path.name)}</p></div>\n</div>'
    )


def _videos_section(ev: Evaluation, max_videos: int, max_video_bytes: int) -> str:
    cards, embedded, total, left_out = [], 0, 0, []

    def link(path: Path, why: str) -> str:
        name = _e(path.name)
        return f'<p class="not-embedded"><a href="videos/{name}">{name}</a> (not embedded: {_e(why)})</p>'

    for path, episode in ev.videos:
        if embedded >= max_videos:
            left_out.append(path.name)
            cards.append(_episode_card(path, episode, link(path, "video cap reached")))
            continue
        try:
            data, mime, note = browser_video(path)
        except (OSError, ValueError) as err:
            cards.append(_episode_card(path, episode, link(path, str(err))))
            continue
        if total + len(data) > max_video_bytes:
            left_out.append(path.name)
            cards.append(_episode_card(path, episode, link(path, "size cap reached")))
            continue
        embedded += 1
        total += len(data)
        note_html = f'<p class="sub">{_e(note)}</p>' if note else ""
        media = (
            f'<div><video controls muted loop playsinline preload="auto" data-name="{_e(path.name)}"\n'
            f'src="{_data_uri(mime, data)}"></video>{note_html}</div>'
        )
        cards.append(_episode_card(path, episode, media))
    intro = f"<p>{embedded} of {len(ev.videos)} videos embedded ({total / 2**20:.1f} MB).</p>"
    if left_out:
        intro += (
            f'<p class="note" id="video-cap">{len(left_out)} videos are not embedded, to keep this page small '
            f"(cap: {max_videos} videos, {max_video_bytes / 2**20:.0f} MB); they are linked to their files in "
            f"videos/ instead. Rebuild with <code>python -m eval.html_report {_e(ev.folder)} --max-videos N "
            f"--max-mb M</code> to embed more.</p>"
        )
    return '<section id="videos">\n<h2>Rollout videos</h2>\n' + intro + "\n" + "\n".join(cards) + "\n</section>"


def render(ev: Evaluation, *, max_videos: int = MAX_VIDEOS, max_video_bytes: int = MAX_VIDEO_BYTES) -> str:
    """The report page for a read folder (one HTML string, nothing referenced outside it)."""
    policy = ev.results.get("policy")
    title = f"Evaluation report: {ev.folder.name or ev.folder}"
    sub = {"chains": "CALVIN long-horizon chains", "tasks": "single-task suite"}.get(ev.kind, f"{ev.kind} evaluation")
    if policy:
        sub += f" · policy {policy}"
    if ev.results.get("complete") is False:
        sub += " · incomplete (some chains are still missing)"
    parts = [f"<h1>{_e(title)}</h1>", f'<p class="sub">{_e(sub)} · {_e(ev.folder.resolve())}</p>']
    parts += [f'<p class="note">{_e(n)}</p>' for n in ev.notes]
    if ev.summary:
        parts += ["<h2>Summary</h2>", _table("summary", [k for k, _ in ev.summary], [[_e(v) for _, v in ev.summary]])]
    if ev.run_info:
        rows = [[_e(k), _e(v)] for k, v in ev.run_info]
        parts += ["<h2>Run</h2>", _table("run", ["field", "value"], rows, name_col=True)]
    if ev.per_task:
        parts += ["<h2>Success per task</h2>", _per_task_table(ev.per_task)]
    if ev.by_position:
        parts += ["<h2>Success by chain position</h2>", _position_table(ev.by_position)]
    if ev.plots:
        imgs = [
            f'<img alt="{_e(p.name)}" title="{_e(p.name)}"\nsrc="{_data_uri("image/png", p.read_bytes())}">'
            for p in ev.plots
        ]
        parts += ['<section class="plots" id="plots">', "<h2>Plots</h2>", *imgs, "</section>"]
    if ev.videos:
        parts.append(_videos_section(ev, max_videos, max_video_bytes))
    if not (ev.summary or ev.per_task or ev.plots or ev.videos):
        parts.append('<p class="note">Nothing to report: this folder has no results, plots or videos yet.</p>')
    body = "\n".join(parts)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def write_report(folder: str | Path, *, max_videos: int = MAX_VIDEOS, max_video_bytes: int = MAX_VIDEO_BYTES) -> Path:
    """Write ``<folder>/report.html`` for an evaluation folder and return its path. Written to a
    temporary file first, so a reader never sees half a page."""
    folder = Path(folder)
    page = render(read_evaluation(folder), max_videos=max_videos, max_video_bytes=max_video_bytes)
    out = folder / REPORT_NAME
    tmp = folder / f".{REPORT_NAME}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eval.html_report FOLDER...``: (re)build the report of existing evaluation folders."""
    parser = argparse.ArgumentParser(prog="python -m eval.html_report", description=main.__doc__)
    parser.add_argument("folders", nargs="+", type=Path, help="evaluation folders (with results.json, videos/, ...)")
    parser.add_argument("--max-videos", type=int, default=MAX_VIDEOS, help=f"videos to embed (default {MAX_VIDEOS})")
    parser.add_argument(
        "--max-mb", type=float, default=MAX_VIDEO_BYTES / 2**20, help="megabytes of video to embed (default 48)"
    )
    args = parser.parse_args(argv)
    for folder in args.folders:
        path = write_report(folder, max_videos=args.max_videos, max_video_bytes=int(args.max_mb * 2**20))
        print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
