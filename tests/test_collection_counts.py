"""What pytest collects is what the test files define: per folder under tests/, the collected items equal the test
functions an AST walk finds (``def test_*``/``async def test_*`` at the top of a file and ``test_*`` methods of
``Test*`` classes, times their ``@pytest.mark.parametrize`` lists); and every package of src/dockwright with logic
has its unit tests in tests/unit/<pkg> (the exceptions are listed below, each with its reason).

A file whose count the AST cannot know exactly (a parametrize list built at run time, a fixture with ``params``)
is held to the weaker rule: every test function it defines is among its collected node ids."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
SRC = REPO / "src" / "dockwright"

# packages of src/dockwright with logic that have no tests/unit/<pkg>, and why
NO_UNIT_TESTS: dict[str, str] = {}


def _test_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py")
                  if not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(TESTS).parts))


def _is_parametrize(dec: ast.expr) -> bool:
    """``@pytest.mark.parametrize(...)`` (or ``@mark.parametrize``)."""
    return (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute) and dec.func.attr == "parametrize"
            and isinstance(dec.func.value, ast.Attribute) and dec.func.value.attr == "mark")


def _literal_lengths(tree: ast.Module) -> dict[str, int]:
    """Module-level ``NAME = [...]``/``(...)`` literals: what a parametrize may name instead of a list."""
    out: dict[str, int] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        if isinstance(value, (ast.List, ast.Tuple)) and not any(isinstance(e, ast.Starred) for e in value.elts):
            for t in targets:
                if isinstance(t, ast.Name):
                    out[t.id] = len(value.elts)
    return out


def _multiplier(decorators: list[ast.expr], names: dict[str, int]) -> int | None:
    """How many items the parametrize decorators make of one function; None when not knowable from the text."""
    n = 1
    for dec in decorators:
        if not _is_parametrize(dec):
            continue
        assert isinstance(dec, ast.Call)
        values = dec.args[1] if len(dec.args) > 1 else next(
            (k.value for k in dec.keywords if k.arg == "argvalues"), None)
        if isinstance(values, (ast.List, ast.Tuple)) and not any(isinstance(e, ast.Starred) for e in values.elts):
            count = len(values.elts)
        elif isinstance(values, ast.Name) and values.id in names:
            count = names[values.id]
        else:
            return None
        n *= max(count, 1)  # an empty list still makes one (skipped) item
    return n


def _is_fixture(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """``@pytest.fixture`` (called or not): named ``test_*`` or not, pytest does not collect it."""
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if isinstance(target, (ast.Attribute, ast.Name)) and (getattr(target, "attr", None) == "fixture"
                                                               or getattr(target, "id", None) == "fixture"):
            return True
    return False


def _has_param_fixture(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and any(k.arg == "params" for k in dec.keywords):
                    return True
    return False


def ast_tests(path: Path) -> tuple[dict[str, int | None], bool]:
    """The test functions of ``path`` by node-id name (``test_x`` or ``TestC::test_x``; pytest's prefix is ``test``,
    fixtures excepted) with the number of items each should make (None: unknown), and whether the file's count is
    exact."""
    tree = ast.parse(path.read_text(), str(path))
    names = _literal_lengths(tree)
    out: dict[str, int | None] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test") \
                and not _is_fixture(node):
            out[node.name] = _multiplier(node.decorator_list, names)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            per_class = _multiplier(node.decorator_list, names)
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test") \
                        and not _is_fixture(item):
                    m = _multiplier(item.decorator_list, names)
                    out[f"{node.name}::{item.name}"] = None if m is None or per_class is None else m * per_class
    exact = not _has_param_fixture(tree) and all(v is not None for v in out.values())
    return out, exact


@pytest.fixture(scope="module")
def collected() -> dict[str, list[str]]:
    """Collected node ids (without the parameter part) per test file, relative to the repository."""
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(TESTS)],
        cwd=REPO, capture_output=True, text=True, timeout=240)
    out: dict[str, list[str]] = defaultdict(list)
    for line in proc.stdout.splitlines():
        if "::" not in line:
            continue
        file, _, rest = line.partition("::")
        out[str((REPO / file).resolve().relative_to(REPO))].append(rest.split("[", 1)[0])
    assert out, f"nothing collected\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    return out


@pytest.mark.timeout(300)
def test_every_folder_collects_what_its_files_define(collected: dict[str, list[str]]) -> None:
    want: dict[str, int] = defaultdict(int)
    got: dict[str, int] = defaultdict(int)
    problems: list[str] = []
    for path in _test_files():
        rel = str(path.relative_to(REPO))
        folder = str(path.parent.relative_to(REPO))
        defined, exact = ast_tests(path)
        items = collected.get(rel, [])
        missing = sorted(set(defined) - set(items))
        unknown = sorted(set(items) - set(defined))
        if missing:
            problems.append(f"{rel}: defined but not collected: {missing}")
        if unknown:
            problems.append(f"{rel}: collected but not found by the AST walk: {unknown}")
        if exact:
            want[folder] += sum(v for v in defined.values() if v is not None)
            got[folder] += len(items)
    assert not problems, "\n".join(problems)
    mismatched = {f: (got[f], want[f]) for f in want if got[f] != want[f]}
    assert not mismatched, f"folder: (collected, defined) differ: {mismatched}"
    assert want["tests/unit/api"] > 0 and want["tests/unit/oci"] > 0


def test_the_ast_walk_counts_parametrize() -> None:
    """The counter itself, on this repository's own files: a parametrize of 9 values over one function makes 9."""
    defined, exact = ast_tests(TESTS / "unit" / "api" / "test_versions.py")
    assert exact and defined["test_parse_version"] == 9
    assert defined["test_supported_range_is_dockerd_28s"] == 1
    defined, exact = ast_tests(TESTS / "unit" / "builder" / "test_context.py")
    assert not exact  # an autouse fixture with params doubles every test


def _has_logic(module: Path) -> bool:
    tree = ast.parse(module.read_text(), str(module))
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in ast.walk(tree))


def test_every_package_with_logic_has_unit_tests() -> None:
    packages = sorted(p.parent.name for p in SRC.glob("*/__init__.py"))
    assert "api" in packages and "oci" in packages
    with_logic = [pkg for pkg in packages
                  if any(_has_logic(m) for m in (SRC / pkg).glob("*.py") if m.name != "__init__.py")]
    missing = [pkg for pkg in with_logic
               if pkg not in NO_UNIT_TESTS and not any((TESTS / "unit" / pkg).glob("test_*.py"))]
    assert not missing, f"packages with logic and no tests/unit/<pkg>/test_*.py: {missing}"
    stale = [pkg for pkg in NO_UNIT_TESTS if pkg not in packages or any((TESTS / "unit" / pkg).glob("test_*.py"))]
    assert not stale, f"exceptions that no longer apply (remove them from NO_UNIT_TESTS): {stale}"
