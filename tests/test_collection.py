"""Every test file under tests/ is collected by pytest (a test file that never runs guards nothing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_every_test_file_is_collected() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(TESTS)],
        cwd=TESTS.parent, capture_output=True, text=True, timeout=240)
    collected = {line.split("::", 1)[0] for line in out.stdout.splitlines() if "::" in line}
    collected = {str((TESTS.parent / p).resolve().relative_to(TESTS.parent)) for p in collected}
    files = {str(p.relative_to(TESTS.parent)) for p in TESTS.rglob("test_*.py")
             if not any(part.startswith(".") or part == "__pycache__" for part in p.parts)}
    missing = sorted(files - collected)
    assert not missing, f"pytest does not collect these test files: {missing}\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
    assert "tests/unit/dockerfile/test_dispatch.py" in collected


def test_test_file_names_are_unique() -> None:
    """tests/ has no ``__init__.py`` (the helpers are imported as top-level modules: ``from conftest import …``), so
    pytest imports each test file by its base name: two files of one name in different folders collide, and the
    second is not collected. Name a unit test after what it tests (``test_container_records.py``)."""
    seen: dict[str, list[str]] = {}
    for p in TESTS.rglob("test_*.py"):
        if "__pycache__" not in p.parts:
            seen.setdefault(p.name, []).append(str(p.relative_to(TESTS)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
