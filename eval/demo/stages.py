"""Cached, resumable pipeline stages: a folder, its settings' key, and a marker that says it is done.

Every stage writes ``stage.json`` with a key that hashes its settings and the keys of the stages it
reads. A rerun skips each stage whose key still matches (re-running is cheap), redoes a stage whose
settings changed (and therefore everything after it; the old output is moved to ``<folder>.previous``,
never deleted outright), and resumes a stage that was interrupted where
the stage supports it (training resumes from its last checkpoint, evaluation from its chain log); an
interrupted stage that cannot resume starts over, and only its own partial output is removed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

NEW_DATA_KEYS = ("repeats",)  # data options added after run folders were made; unset means "as before"
# Options added after run folders were made, with the value that does what those folders did: at that
# value a key is left out of the stage's settings, so the folders' finished stages stay valid.
NEW_KEYS_AS_BEFORE = {"frame_sampling": "start"}


def config_settings(cfg: DictConfig) -> dict[str, Any]:
    """A VQ or training config as a stage's settings: resolved, without ``progress`` (display only),
    and without the :data:`NEW_DATA_KEYS` left unset, so that a new option in the config does not
    redo an older run folder's finished VQ tokenizer or training run (an hour of work)."""
    settings = OmegaConf.to_container(cfg, resolve=True)
    settings.pop("progress", None)
    for key, before in NEW_KEYS_AS_BEFORE.items():
        if settings.get(key) == before:
            settings.pop(key)
    for key in NEW_DATA_KEYS:
        if settings["data"].get(key) is None:
            settings["data"].pop(key, None)
    return settings


class Stage:
    """A cached step of the pipeline: ``folder`` holds its output and ``stage.json`` its key."""

    def __init__(self, name: str, folder: Path, settings: dict[str, Any], upstream: Sequence[Stage] = ()) -> None:
        self.name = name
        self.folder = Path(folder)
        payload = json.dumps({"settings": settings, "upstream": [u.key for u in upstream]}, sort_keys=True, default=str)
        self.key = hashlib.sha256(payload.encode()).hexdigest()[:16]
        self.settings = settings

    @property
    def marker(self) -> Path:
        return self.folder / "stage.json"

    def done(self) -> bool:
        if not self.marker.is_file():
            return False
        try:
            return json.loads(self.marker.read_text()).get("key") == self.key
        except json.JSONDecodeError:
            return False

    def result(self) -> dict[str, Any]:
        """The result a finished stage recorded (``{}`` when it has not finished)."""
        return json.loads(self.marker.read_text()).get("result", {}) if self.done() else {}

    def run(self, work: Callable[[], dict[str, Any] | None], *, resumable: bool = False) -> dict[str, Any]:
        """Run ``work`` unless cached; a stale folder (other key) is set aside first unless ``resumable``
        says the stage continues its own partial output (only when the key is the one it had)."""
        if self.done():
            print(f"[demo] {self.name}: cached ({self.folder})", flush=True)
            return self.result()
        started = self.folder / "stage.started.json"
        same_attempt = started.is_file() and json.loads(started.read_text()).get("key") == self.key
        if self.folder.exists() and not (resumable and same_attempt):
            if same_attempt:
                self._discard_interrupted()
            else:
                self._set_aside()
        self.folder.mkdir(parents=True, exist_ok=True)
        started.write_text(json.dumps({"key": self.key}) + "\n")
        print(f"[demo] {self.name}: running -> {self.folder}", flush=True)
        t0 = time.perf_counter()
        result = work() or {}
        seconds = round(time.perf_counter() - t0, 1)
        record = {"key": self.key, "settings": self.settings, "seconds": seconds, "result": result}
        self.marker.write_text(json.dumps(record, indent=2, default=str) + "\n")
        print(f"[demo] {self.name}: done in {seconds:.0f} s", flush=True)
        return result

    def _discard_interrupted(self) -> None:
        """Remove the partial output of an interrupted attempt with these very settings, which a stage
        that cannot resume starts over anyway. Setting it aside instead would replace ``.previous``,
        which may hold the finished output of earlier settings, with a useless fragment."""
        shutil.rmtree(self.folder)
        print(f"[demo] {self.name}: the last attempt was interrupted; starting it over", flush=True)

    def _set_aside(self) -> None:
        """Move the output of other settings to ``<folder>.previous`` instead of deleting it: a changed
        setting (or a new key in the config) must not cost an hour of training. One generation is
        kept; the one before it is deleted."""
        previous = self.folder.with_name(self.folder.name + ".previous")
        if previous.exists():
            shutil.rmtree(previous)
        self.folder.rename(previous)
        print(f"[demo] {self.name}: settings changed; the old output is kept in {previous}", flush=True)
