"""The console script as a user runs it."""

import json
import subprocess
import sys

from emu3_vla.cli import main


def test_help_lists_the_builtin_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "smoke" in out and "info" in out


def test_info_prints_presets(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "8,492,011,520" in out and "tiny" in out


def test_smoke_run_through_the_console_script(tmp_path):
    out = tmp_path / "smoke"
    proc = subprocess.run(
        [sys.executable, "-m", "emu3_vla.cli", "smoke", "--tokens", "5", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "smoke.json").read_text())
    assert report["codes_shape"] == [25, 25] and len(report["generated"]) == 5
    assert (out / "reconstruction.png").stat().st_size > 0


def test_bad_checkpoint_gives_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["info", "--checkpoint", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_eval_report_rebuilds_the_page_of_a_folder(tmp_path, capsys):
    results = {"kind": "tasks", "sr@1": 0.5, "episodes": 2, "per_task": {"open_drawer": {"success_rate": 0.5}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["eval", "report", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "open_drawer" in page and "report.html" in capsys.readouterr().out
