"""The package layering: imports point only downwards (see emu3_vla/__init__.py)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"action_tokenizer", "envs", "emu3_vla", "policies", "eval"}
ALLOWED = {
    "action_tokenizer": set(),
    "envs": set(),
    "emu3_vla": {"action_tokenizer"},
    "policies": {"emu3_vla", "action_tokenizer"},
    "eval": {"envs", "policies", "emu3_vla", "action_tokenizer"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_downwards(package):
    violations = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_packages(path) - ALLOWED[package] - {package}
        if bad:
            violations.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not violations, "layering violated:\n" + "\n".join(violations)
