"""``dockwright.__all__`` is exactly the public surface (as httpx's tests/test_exported_members.py), and
docs/library.md documents every name of it."""

from __future__ import annotations

import types
from pathlib import Path

import dockwright

DOC = Path(__file__).resolve().parents[1] / "docs" / "library.md"


def test_all_imports_are_exported() -> None:
    # submodules (dockwright.engine, dockwright.errors…) become attributes of the package when imported: they are
    # where things live, not names of the surface
    public = {name for name in dir(dockwright)
              if not name.startswith("_") and not isinstance(getattr(dockwright, name), types.ModuleType)}
    assert public | {"__version__"} == set(dockwright.__all__)
    assert len(dockwright.__all__) == len(set(dockwright.__all__))


def test_every_exported_name_is_documented() -> None:
    text = DOC.read_text()
    missing = [name for name in dockwright.__all__ if f"`{name}`" not in text]
    assert missing == []


def test_every_exported_class_and_function_has_a_docstring() -> None:
    for name in dockwright.__all__:
        obj = getattr(dockwright, name)
        if isinstance(obj, type):
            assert obj.__doc__ and not obj.__doc__.startswith(f"{name}("), name  # not a dataclass's made-up one
