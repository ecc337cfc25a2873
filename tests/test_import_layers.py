"""The import contract of docs/architecture.md, read from the source's AST (function-level imports too).

Packages form layers, top to bottom. A module may import its own package and any package of a LOWER layer; packages
of the same layer are independent of each other (as import-linter's ``layers`` and ``independence`` contracts).
Imports inside functions are not a way around this: there are none, except where a module must run without the
package (listed in ``FUNCTION_LEVEL`` with the reason).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "dockwright"

LAYERS: list[tuple[str, ...]] = [
    ("cli",),                                   # flags, daemon.json, the listeners
    ("api",),                                   # routes, parameters, response shapes per API version
    ("engine",),                                # one service per concept; typed results; the library API
    ("buildkit",),                              # BuildKit: session transport, Dockerfile frontend, solver
    ("builder",),                               # the build executor, cache policy, context, COPY/ADD
    ("dockerfile",),                            # parser, shell lexer, instructions, dispatch
    ("archive", "distribution"),                # where an image lives: a tar archive, a registry
    ("layers",),                                # layer blobs <-> snapshots: ingest, apply, diff, verify
    ("content", "snapshots", "runtime", "network"),  # stores and host mechanisms
    ("metadata",),                              # every SQL statement
    ("tar", "progress", "oci", "reference", "filters", "timestamps", "threads"),  # base types and formats
    ("errors",),                                # the exception tree
]
RANK = {pkg: len(LAYERS) - i for i, layer in enumerate(LAYERS) for pkg in layer}

# module -> why it imports inside a function
FUNCTION_LEVEL: dict[str, str] = {
    "runtime/exec.py": "the exec helper process runs this file without the package on sys.path",
}


def _package(path: Path) -> str:
    parts = path.relative_to(SRC).parts
    return parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str, bool]]:
    """Every dockwright module a file imports (relative imports resolved), with whether it is inside a function."""
    package = ["dockwright", *path.relative_to(SRC).parent.parts]
    tree = ast.parse(path.read_text(), str(path))
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    out: list[tuple[int, str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name, id(node) in nested) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.append((node.lineno, name, id(node) in nested))
            out += [(node.lineno, f"{name}.{alias.name}", id(node) in nested) for alias in node.names]
    return [(line, name, inner) for line, name, inner in out if name.startswith("dockwright.")]


def _target(name: str) -> str | None:
    """The top-level package (or module) of ``dockwright.<x>…``, or None for ``dockwright`` itself."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] != "__init__.py")


def test_every_package_has_a_layer() -> None:
    packages = {_package(p) for p in _modules()} - {"__main__"}
    assert packages - set(RANK) == set(), "add the new package to LAYERS (and to docs/architecture.md)"
    assert set(RANK) - packages == set(), "a package in LAYERS no longer exists"


def test_no_module_imports_upward_or_sideways() -> None:
    bad = []
    for path in _modules():
        own = _package(path)
        for line, name, _ in _imports(path):
            target = _target(name)
            if target is None or target == own:
                continue
            if RANK[target] > RANK[own]:
                bad.append(f"{path.relative_to(SRC)}:{line} imports {name} (a higher layer)")
            elif RANK[target] == RANK[own]:
                bad.append(f"{path.relative_to(SRC)}:{line} imports {name} (same layer: they are independent)")
    assert bad == []


def test_no_function_level_imports_to_dodge_cycles() -> None:
    bad = [f"{path.relative_to(SRC)}:{line} imports {name} inside a function"
           for path in _modules() if str(path.relative_to(SRC)) not in FUNCTION_LEVEL
           for line, name, inner in _imports(path) if inner]
    assert bad == []


def test_no_private_name_is_imported_from_another_module() -> None:
    bad = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("dockwright")):
                bad += [f"{path.relative_to(SRC)}:{node.lineno} imports {alias.name}" for alias in node.names
                        if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert bad == []


@pytest.mark.parametrize("source,package,expected", [
    ("from ..api.containers import summary_json\n", "engine", "a higher layer"),
    ("from ..distribution import client\n", "archive", "same layer"),
    ("def f():\n    from . import events\n", "engine", "inside a function"),
])
def test_the_checks_catch_what_they_forbid(tmp_path: Path, source: str, package: str, expected: str) -> None:
    root = tmp_path / "dockwright"
    module = root / package / "x.py"
    module.parent.mkdir(parents=True)
    module.write_text(source)
    (root / "__init__.py").write_text("")
    globals()["SRC"], saved = root, SRC
    try:
        checks = [test_no_module_imports_upward_or_sideways, test_no_function_level_imports_to_dodge_cycles]
        messages = []
        for check in checks:
            try:
                check()
            except AssertionError as exc:
                messages.append(str(exc))
    finally:
        globals()["SRC"] = saved
    assert any(expected in m for m in messages), messages
