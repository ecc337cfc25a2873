"""The builder's place in the layers: ``builder/`` imports nothing from ``engine/``, ``api/`` or ``cli/``, and
``dockerfile/`` nothing from those nor from ``builder/`` (read from the source's AST, function-level imports too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "dockwright"


def _imported(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports, absolute (relative imports resolved against the file's package)."""
    package = ["dockwright", *path.relative_to(SRC).parent.parts]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            out += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return out


@pytest.mark.parametrize(("package", "above"), [
    ("builder", ("engine", "api", "cli")),
    ("dockerfile", ("builder", "engine", "api", "cli")),
])
def test_no_import_reaches_up(package: str, above: tuple[str, ...]) -> None:
    files = sorted((SRC / package).rglob("*.py"))
    assert files
    upward = [f"{p.relative_to(SRC)}:{line} imports {name}" for p in files for line, name in _imported(p)
              if any(name == f"dockwright.{u}" or name.startswith(f"dockwright.{u}.") for u in above)]
    assert upward == []
