"""The engine never reaches up into HTTP or the command line: no module below ``api/`` and ``cli/`` imports them
(a first slice of the import contract of the redesign; read from the source's AST, function-level imports too)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "dockwright"
UPPER = ("api", "cli")


def _imports(path: Path, root: Path = SRC) -> list[tuple[int, str]]:
    """Every module a file imports, absolute (relative imports resolved against the file's package)."""
    package = ["dockwright", *path.relative_to(root).parent.parts]
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


def test_nothing_below_the_api_imports_it() -> None:
    lower = [p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in UPPER]
    assert len(lower) > 50  # the walk found the package
    upward = [f"{p.relative_to(SRC)}:{line} imports {name}" for p in lower for line, name in _imports(p)
              if any(name == f"dockwright.{u}" or name.startswith(f"dockwright.{u}.") for u in UPPER)]
    assert upward == []


def test_the_check_sees_relative_and_function_level_imports(tmp_path: Path) -> None:
    module = tmp_path / "engine" / "x.py"
    module.parent.mkdir()
    module.write_text("import os\nfrom . import events\n\n\ndef f():\n    from ..api.containers import summary_json\n")
    names = {name for _, name in _imports(module, tmp_path)}
    assert {"os", "dockwright.engine", "dockwright.engine.events", "dockwright.api.containers",
            "dockwright.api.containers.summary_json"} <= names
