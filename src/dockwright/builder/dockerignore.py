""":class:`DockerIgnore`: moby's ``patternmatcher`` (``NewPatternMatcher`` + ``MatchesOrParentMatches``) with
``ignorefile.ReadAll`` for reading a ``.dockerignore`` file, and :class:`IgnoreRules`, what COPY asks of it."""

from __future__ import annotations

import re
from typing import Protocol

from ..errors import InvalidArgument
from .gomatch import BadPattern, go_dir, go_match
from .paths import go_clean as _go_clean

__all__ = ["DockerIgnore", "IgnoreRules"]

# ==================================================================================================
# .dockerignore


_EXACT, _PREFIX, _SUFFIX, _REGEXP = range(4)
_ESCAPE_CHARS = ".+()|{}$"


class _Pattern:
    __slots__ = ("cleaned", "exclusion", "kind", "regexp")

    def __init__(self, cleaned: str, exclusion: bool) -> None:
        self.cleaned = cleaned
        self.exclusion = exclusion
        self.regexp: re.Pattern[str] | None = None
        self.kind = self._compile()

    def _compile(self) -> int:
        reg = "^"
        p = self.cleaned
        kind = _EXACT
        n = len(p)
        pos = 0
        i = 0
        while pos < n:
            ch = p[pos]
            pos += 1
            if ch == "*":
                if pos < n and p[pos] == "*":
                    pos += 1
                    if pos < n and p[pos] == "/":
                        pos += 1
                    if pos >= n:
                        if kind == _EXACT:
                            kind = _PREFIX
                        else:
                            reg += ".*"
                            kind = _REGEXP
                    else:
                        reg += "(.*/)?"
                        kind = _REGEXP
                    if i == 0:
                        kind = _SUFFIX
                else:
                    reg += "[^/]*"
                    kind = _REGEXP
            elif ch == "?":
                reg += "[^/]"
                kind = _REGEXP
            elif ch in _ESCAPE_CHARS:
                reg += "\\" + ch
            elif ch == "\\":
                if pos < n:
                    reg += "\\" + p[pos]
                    pos += 1
                    kind = _REGEXP
                else:
                    reg += "\\\\"
            elif ch in "[]":
                reg += ch
                kind = _REGEXP
            else:
                reg += ch
            i += 1
        if kind != _REGEXP:
            return kind
        try:
            self.regexp = re.compile(reg + r"\Z")
        except re.error as exc:
            raise InvalidArgument(f"syntax error in pattern: {self.cleaned}") from exc
        return _REGEXP

    def match(self, path: str) -> bool:
        if self.kind == _EXACT:
            return path == self.cleaned
        if self.kind == _PREFIX:
            return path.startswith(self.cleaned[:-2])
        if self.kind == _SUFFIX:
            suffix = self.cleaned[2:]
            if path.endswith(suffix):
                return True
            return suffix[:1] == "/" and path == suffix[1:]
        assert self.regexp is not None
        return self.regexp.match(path) is not None


def _read_ignore_lines(lines: list[str], *, comments: bool = True) -> list[str]:
    """moby's ``ignorefile.ReadAll`` over lines already split."""
    out: list[str] = []
    for n, line in enumerate(lines):
        if n == 0 and line.startswith("\ufeff"):
            line = line[1:]
        if comments and line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern[0] == "!"
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _go_clean(pattern)
            if len(pattern) > 1 and pattern[0] == "/":
                pattern = pattern[1:]
        if invert:
            pattern = "!" + pattern
        out.append(pattern)
    return out


class IgnoreRules(Protocol):
    """What decides that a context path is left out (:class:`DockerIgnore`, or nothing for an image's files)."""

    def matches(self, path: str) -> bool:
        """Whether ``path`` (relative, slash-separated) is ignored."""


class DockerIgnore:
    """A ``.dockerignore`` matcher with moby's ``patternmatcher`` semantics.

    ``patterns`` are lines as read from the file: ``ignorefile.ReadAll``'s processing (comments and
    blank lines dropped, whitespace trimmed, ``filepath.Clean``, leading ``/`` removed) is applied, then
    ``NewPatternMatcher``'s.  A malformed pattern raises :class:`InvalidArgument`.
    """

    def __init__(self, patterns: list[str], *, _processed: bool = False) -> None:
        lines = list(patterns) if _processed else _read_ignore_lines(list(patterns))
        self.patterns: list[str] = lines
        self._compiled: list[_Pattern] = []
        self.exclusions = False
        for p in lines:
            p = p.strip()
            if not p:
                continue
            p = _go_clean(p)
            exclusion = False
            if p[0] == "!":
                if len(p) == 1:
                    raise InvalidArgument('illegal exclusion pattern: "!"')
                exclusion = True
                p = p[1:]
                self.exclusions = True
            try:
                go_match(p, ".")
            except BadPattern:
                raise InvalidArgument(f"syntax error in pattern: {p}") from None
            self._compiled.append(_Pattern(p, exclusion))

    @classmethod
    def from_text(cls, text: str | bytes) -> DockerIgnore:
        """Parse the contents of a ``.dockerignore`` file."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "surrogateescape")
        lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
        return cls(_read_ignore_lines(lines), _processed=True)

    def __bool__(self) -> bool:
        return bool(self._compiled)

    def __repr__(self) -> str:
        return f"DockerIgnore({self.patterns!r})"

    def matches(self, path: str) -> bool:
        """True if ``path`` (relative, ``/``-separated) is excluded: ``MatchesOrParentMatches``."""
        if not self._compiled:
            return False
        file = path
        matched = False
        parent = go_dir(file)
        parent_dirs = parent.split("/")
        for pat in self._compiled:
            if pat.exclusion != matched:
                continue
            match = pat.match(file)
            if not match and parent != ".":
                for i in range(len(parent_dirs)):
                    if pat.match("/".join(parent_dirs[: i + 1])):
                        match = True
                        break
            if match:
                matched = not pat.exclusion
        return matched
