"""``.dockerignore`` as moby's ``patternmatcher`` reads and matches it (its tests' cases)."""

from __future__ import annotations

import pytest

from dockwright.builder.dockerignore import DockerIgnore
from dockwright.errors import InvalidArgument

MATCHES = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**/", "file/", True),
    ("**", "/", True),
    ("**/", "/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**", "dir/file/", True),
    ("**/", "dir/file/", True),
    ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    # parent directories
    ("dir", "dir/sub/file", True),
    ("*.go", "sub/x.go", False),
    ("**/*.go", "sub/deep/x.go", True),
    ("sub/*", "sub/deep/x.go", True),
]


@pytest.mark.parametrize(("pattern", "text", "expected"), MATCHES)
def test_patternmatcher_matches(pattern, text, expected):
    assert DockerIgnore([pattern]).matches(text) is expected


MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["*", "!keep.txt"], "keep.txt", False),
    (["*", "!keep.txt"], "other.txt", True),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs", "!docs/README.md"], "docs/other.md", True),
    (["!x", "x"], "x", True),
    (["x", "!x"], "x", False),
]


@pytest.mark.parametrize(("patterns", "text", "expected"), MULTI)
def test_patternmatcher_multi(patterns, text, expected):
    assert DockerIgnore(patterns).matches(text) is expected


def test_dockerignore_from_text():
    text = "\ufeff# comment\n\n  /leading\r\n*.pyc\n  # not a comment\n! keep/me \ndir/\n./x/../y\n!/abs\n"
    ig = DockerIgnore.from_text(text)
    assert ig.patterns == ["leading", "*.pyc", "# not a comment", "!keep/me", "dir", "y", "!abs"]
    assert ig.matches("leading")
    assert ig.matches("a.pyc") and not ig.matches("sub/a.pyc")
    assert ig.matches("dir/anything/deep")
    assert ig.matches("y") and not ig.matches("x")
    assert not ig.matches("keep/me")
    assert not DockerIgnore([]).matches("anything")
    # __init__ takes raw lines too
    assert DockerIgnore(["# c", "", "/a/"]).patterns == ["a"]


def test_dockerignore_errors():
    with pytest.raises(InvalidArgument, match="illegal exclusion pattern"):
        DockerIgnore(["!"])
    with pytest.raises(InvalidArgument, match="syntax error in pattern"):
        DockerIgnore(["[a-"])
