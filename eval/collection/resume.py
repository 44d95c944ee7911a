"""Continuing a collection that Ctrl-C or SIGTERM stopped (``collect`` and ``collect-on-policy``).

An interrupted collection finalises its dataset and writes its report with ``"interrupted": true``
and where to go on (``next_job`` / ``next_chain``). With ``resume`` the report decides: a finished
collection with the same settings is returned as it is, an interrupted one is continued, and a
folder that cannot be continued (other settings, or a dataset without a report because the process
was killed outright) is refused with the reason, so that no episode is lost, unless ``overwrite``
says to start over.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def settings_json(config: Any) -> dict[str, Any]:
    """A collection config (a dataclass) as its report stores it: paths as text, tuples as lists."""
    return _as_json(dataclasses.asdict(config))


def _as_json(settings: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in settings.items()}))


def changed_settings(saved: dict[str, Any], config: Any, free: frozenset[str]) -> list[str]:
    """The settings (``name: saved -> now``) in which ``config`` differs from a report's ``config``,
    leaving out ``free`` ones; a setting the report predates counts as unchanged at its default."""
    now = settings_json(config)
    defaults = _as_json({f.name: f.default for f in dataclasses.fields(config) if f.default is not dataclasses.MISSING})
    changed = []
    for name in sorted(set(saved) | set(now)):
        before = saved.get(name, defaults.get(name))
        if name not in free and before != now.get(name):
            changed.append(f"{name}: {before!r} -> {now.get(name)!r}")
    return changed


def report_to_continue(config: Any, report_name: str, position_key: str, free: frozenset[str]) -> dict[str, Any] | None:
    """With ``config.resume``: the report in ``config.out`` to continue (interrupted) or to return as it
    is (finished); None to start a new collection. ``position_key`` names the report's field that says
    where an interrupted run goes on; ``free`` the settings that may change in between (how it runs)."""
    if not config.resume:
        return None
    out: Path = config.out
    path = out / report_name
    if not path.is_file():
        if (out / "lerobot").exists() and not config.overwrite:
            raise FileExistsError(
                f"{out} holds a dataset but no {report_name}: the collection was killed before it could save its "
                "state (Ctrl-C or SIGTERM save it), so it cannot be continued; pass --overwrite to start over"
            )
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    changed = changed_settings(report.get("config", {}), config, free)
    interrupted = bool(report.get("interrupted"))
    if changed or (interrupted and position_key not in report):
        why = f"other settings ({'; '.join(changed)})" if changed else "a version that did not record where to go on"
        if config.overwrite:
            log.warning("%s holds a collection made with %s; starting a new one (overwrite)", out, why)
            return None
        raise ValueError(
            f"{out} holds a collection made with {why}: continue it with the settings it was made with, "
            "or pass --overwrite to replace it"
        )
    if interrupted and not report.get("episodes"):
        return None  # nothing written yet: starting over loses nothing
    return report
