"""JSON that a person can read: indented objects, but lists of numbers kept on one line.

``processor_config.json`` holds (T, D) coefficient ranges and per-dimension statistics; with plain
``indent=2`` every number would take its own line and a 10 x 7 table would fill 90 lines.
"""

from __future__ import annotations

import json
from typing import Any


def _is_flat(value: Any) -> bool:
    return isinstance(value, list) and all(not isinstance(v, list | dict) for v in value)


def dumps_readable(obj: Any, indent: int = 2, _level: int = 0) -> str:
    """Like ``json.dumps(obj, indent=indent)`` but flat lists stay on one line."""
    pad, inner = " " * (indent * _level), " " * (indent * (_level + 1))
    if isinstance(obj, dict) and obj:
        items = [f"{inner}{json.dumps(str(k))}: {dumps_readable(v, indent, _level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and obj and not _is_flat(obj):
        items = [inner + dumps_readable(v, indent, _level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, separators=(", ", ": "))
