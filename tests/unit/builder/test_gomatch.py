"""Go's ``path.Match``, as COPY sources and ``.dockerignore`` patterns use it."""

from __future__ import annotations

import pytest

from dockwright.builder.gomatch import go_path_match


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "abc", True),
        ("*", "a/b", False),
        ("*.txt", "a.txt", True),
        ("a/*", "a/b", True),
        ("a/*/c", "a/b/c", True),
        ("a?c", "abc", True),
        ("a?c", "a/c", False),
        ("[a-c]x", "bx", True),
        ("[^a-c]x", "bx", False),
        ("a\\*", "a*", True),
        ("a\\*", "ab", False),
        ("[", "a", False),
        ("*x", "xxx", True),
    ],
)
def test_go_path_match(pattern, name, expected):
    assert go_path_match(pattern, name) is expected
