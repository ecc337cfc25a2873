"""What the Dockerfile parser, shell lexer and instructions share: the error type, the size bounds and Go's
text primitives (``unicode.IsSpace``, ``strings.ToLower``, ``text/scanner``), and the bounded word builder."""

from __future__ import annotations

import re


class DockerfileError(Exception):
    """An error with dockerd's message; becomes :class:`InvalidArgument` at the boundary."""


# ---- bounds ------------------------------------------------------------------------------------------------
# dockerd has none of these but BuildKit's Dockerfile size: they are far beyond any real Dockerfile, and keep a
# hostile one from taking the daemon's time and memory (issue 10).

#: The largest Dockerfile read: BuildKit's ``maxFileSize`` (the gRPC message limit, 16 MiB), with its message.
MAX_DOCKERFILE_SIZE = 16 << 20
#: What variables may add to a word when it is expanded (an ARG or ENV value, a LABEL, a COPY source…), in
#: characters beyond the word's own: 8 times what Linux lets one environment string be (``MAX_ARG_STRLEN``,
#: 128 KiB). Doubling ``ARG X=${X}${X}`` from 8 characters reaches it in 17 lines.
MAX_EXPANDED_SIZE = 1 << 20
#: The largest environment words are expanded against (a stage's ``Env`` plus its build args, in characters of
#: ``KEY=value``): twice Linux's ``ARG_MAX`` for a whole environment (2 MiB), past which no RUN could start.
MAX_ENV_SIZE = 4 << 20


# =============================================================================================
# Go text helpers

# unicode.IsSpace
GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def _is_space(ch: str | None) -> bool:
    return ch is not None and ch in GO_SPACE


_GO_SPACE_CHARS = "".join(sorted(GO_SPACE))


def trim_space(s: str) -> str:
    """Go's ``strings.TrimSpace``."""
    return s.strip(_GO_SPACE_CHARS)


def trim_left_space(s: str) -> str:
    """Go's ``strings.TrimLeftFunc(s, unicode.IsSpace)``."""
    return s.lstrip(_GO_SPACE_CHARS)


def go_upper(s: str) -> str:
    """Go's ``strings.ToUpper`` (rune by rune: no character grows)."""
    if s.isascii():
        return s.upper()
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in s)


def go_lower(s: str) -> str:
    """Go's ``strings.ToLower`` (rune by rune, simple case mapping)."""
    if s.isascii():
        return s.lower()
    # Go maps rune by rune (simple case mapping): U+0130 lowers to "i", not "i" + U+0307.
    return "".join(c.lower()[0] for c in s)


def is_letter(ch: str) -> bool:  # unicode.IsLetter
    """Go's ``unicode.IsLetter``."""
    return ch.isalpha()


def is_digit(ch: str) -> bool:  # unicode.IsDigit
    """Go's ``unicode.IsDigit``."""
    return ch.isdecimal()


def rune_text(ch: str | None) -> str:
    """``string(ch)`` for a scanned rune: EOF (-1) prints as U+FFFD."""
    return "\ufffd" if ch is None else ch


def from_bytes(b: bytes) -> str:
    """Go's ``string(b)`` of bytes: invalid UTF-8 becomes U+FFFD."""
    return b.decode("utf-8", "replace")


# regexp `[\t\v\f\r ]+`
RE_WS = re.compile(r"[\t\v\f\r ]+")

class Scanner:
    """text/scanner's Next/Peek: runes, a leading BOM skipped, None at the end. The lexer also reads ``s`` and
    moves ``i`` itself, a run of ordinary characters at a time."""

    __slots__ = ("s", "i")

    def __init__(self, s: str) -> None:
        self.s = s[1:] if s.startswith("\ufeff") else s
        self.i = 0

    def peek(self) -> str | None:
        """The next rune, not consumed; None at the end."""
        return self.s[self.i] if self.i < len(self.s) else None

    def next(self) -> str | None:
        """The next rune, consumed; None at the end."""
        if self.i < len(self.s):
            self.i += 1
            return self.s[self.i - 1]
        return None


class ExpansionTooLarge(DockerfileError):
    """An expansion past :data:`MAX_EXPANDED_SIZE`."""

    def __init__(self) -> None:
        super().__init__(f"the expansion exceeds the maximum allowed size of {MAX_EXPANDED_SIZE} characters")


def checked_size(size: int, limit: int) -> int:
    """``size``, or :class:`ExpansionTooLarge` when it is past ``limit``."""
    if size > limit:
        raise ExpansionTooLarge()
    return size


class WordBuilder:
    """The word being built (Go's ``word += …``) as parts joined once, so that building it is linear."""

    __slots__ = ("parts", "size", "limit")

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit

    def add(self, s: str) -> None:
        """Append ``s``; refused past the limit."""
        self.parts.append(s)
        self.size = checked_size(self.size + len(s), self.limit)

    def clear(self) -> None:
        """Empty the word."""
        self.parts.clear()
        self.size = 0

    def take(self) -> str:
        """The word, emptied."""
        s = "".join(self.parts)
        self.clear()
        return s
