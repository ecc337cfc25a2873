"""BuildKit's shell patterns (``${x#…}``, ``${x%…}``, ``${x/…/…}``), matched in linear time without the
backtracking regular expression ``convertShellPatternToRegex`` builds, and Go's ``regexp.ReplaceAllString``."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import cast

from .text import MAX_EXPANDED_SIZE, DockerfileError, Scanner, checked_size, is_digit, is_letter, rune_text

ANY = 0  # ``?``: one character but a newline (Go's ``.``)
STAR = 1  # ``*``: a run of characters without a newline (``.*`` or ``.*?``)


def pattern_tokens(pattern: str) -> list[str | int]:
    """``convertShellPatternToRegex``'s reading of a pattern: literal characters, :data:`ANY` and
    :data:`STAR`; its errors are BuildKit's."""
    sc = Scanner(pattern)
    out: list[str | int] = []
    while (tok := sc.next()) is not None:
        if tok == "*":
            out.append(STAR)
            continue
        if tok == "?":
            out.append(ANY)
            continue
        if tok == "\\":
            if sc.peek() in ("}", "/"):
                continue
            tok = sc.next()
            if tok not in ("*", "?", "\\"):
                raise DockerfileError(f"invalid escape '\\{rune_text(tok)}'")
        out.append(tok)
    return out


class Text:
    """A value being matched, with its reverse made once when a backward search needs it."""

    __slots__ = ("s", "n", "_rev")

    def __init__(self, s: str) -> None:
        self.s = s
        self.n = len(s)
        self._rev: str | None = None

    @property
    def rev(self) -> str:
        """The value reversed, made on first use."""
        if self._rev is None:
            self._rev = self.s[::-1]
        return self._rev


class _Segment:
    """The characters between two stars: literals and ``?``, of a fixed length."""

    __slots__ = ("n", "lit", "rx", "rrx", "first_nl")

    def __init__(self, atoms: list[str | int]) -> None:
        self.n = len(atoms)
        chars = [a for a in atoms if isinstance(a, str)]
        self.first_nl = next((i for i, a in enumerate(atoms) if a == "\n"), -1)
        self.lit: str | None = "".join(chars) if len(chars) == len(atoms) else None
        self.rx: re.Pattern[str] | None = None
        self.rrx: re.Pattern[str] | None = None
        if self.lit is None:
            def rx_of(seq: Iterable[str | int]) -> re.Pattern[str]:
                return re.compile("".join("." if a == ANY else re.escape(cast(str, a)) for a in seq))
            self.rx = rx_of(atoms)
            self.rrx = rx_of(reversed(atoms))

    def at(self, t: Text, a: int) -> bool:
        if self.lit is not None:
            return t.s.startswith(self.lit, a)
        return self.rx.match(t.s, a) is not None  # type: ignore[union-attr]

    def find(self, t: Text, lo: int, hi: int) -> int:
        """The first start ``a >= lo`` of the segment ending by ``hi``, else -1."""
        if self.lit is not None:
            return t.s.find(self.lit, lo, hi)
        m = self.rx.search(t.s, lo, hi)  # type: ignore[union-attr]
        return -1 if m is None else m.start()

    def rfind(self, t: Text, lo: int, hi: int) -> int:
        """The last start ``a >= lo`` of the segment ending by ``hi``, else -1."""
        if self.lit is not None:
            return t.s.rfind(self.lit, lo, hi)
        if hi - lo < self.n:
            return -1
        m = self.rrx.search(t.rev, t.n - hi, t.n - lo)  # type: ignore[union-attr]
        return -1 if m is None else t.n - m.start() - self.n


class ShellPattern:
    """A shell pattern matched with Go's leftmost-first semantics (those of the regular expression
    ``convertShellPatternToRegex`` makes) in linear time: Python's backtracking ``re`` takes O(n^k) on a pattern
    of k stars that does not match, which a Dockerfile must not be able to make the daemon do.

    The pattern is ``S0 * S1 … * Sk``. Neither a star nor ``?`` crosses a newline, so the segments between two
    segments holding a newline sit on one line, and a segment holding a newline is pinned to the end of the
    line the match has reached. On one line, the leftmost placement of each segment in turn fits whenever any
    placement does (the non-greedy match, whose end is the last segment's), and the greedy match ends where the
    last segment's rightmost placement that leaves room for the ones before ends."""

    def __init__(self, pattern: str, greedy: bool) -> None:
        tokens = pattern_tokens(pattern)
        self.greedy = greedy
        self.segments: list[_Segment] = []
        current: list[str | int] = []
        for tok in tokens:
            if tok == STAR:
                self.segments.append(_Segment(current))
                current = []
            else:
                current.append(tok)
        self.segments.append(_Segment(current))
        self.rx: re.Pattern[str] | None = None
        if len(self.segments) == 1:  # no star: a fixed-length expression, which ``re`` matches in linear time
            seg = self.segments[0]
            self.rx = re.compile(re.escape(seg.lit)) if seg.lit is not None else seg.rx

    def match_prefix(self, value: str) -> int | None:
        """The end of the match anchored at the start of ``value`` (``^pattern``), None if there is none."""
        if self.rx is not None:
            m = self.rx.match(value)
            return None if m is None else m.end()
        return self._match_at(Text(value), 0)

    def search(self, t: Text, pos: int) -> tuple[int, int] | None:
        """The leftmost match starting at ``pos`` or later, as ``re.search(value, pos).span()``."""
        if self.rx is not None:
            m = self.rx.search(t.s, pos)
            return None if m is None else m.span()
        first = self.segments[0]
        p = pos
        while p <= t.n:
            a = first.find(t, p, t.n)
            if a < 0:
                return None
            end = self._match_at(t, a)
            if end is not None:
                return a, end
            if first.first_nl >= 0:
                p = a + 1
                continue
            # the rest of the pattern fits less well the later it starts on a line: no start on this line does
            nl = t.s.find("\n", a)
            if nl < 0:
                return None
            p = nl + 1
        return None

    def _match_at(self, t: Text, start: int) -> int | None:
        segs = self.segments
        k = len(segs)
        if not segs[0].at(t, start):
            return None
        q = start + segs[0].n
        i = 1
        while i < k:
            j = i
            while j < k and segs[j].first_nl < 0:
                j += 1
            line_end = t.s.find("\n", q)
            if line_end < 0:
                line_end = t.n
            if j < k:
                # segs[j] holds a newline: its first one is the end of this line
                pinned = line_end - segs[j].first_nl
                if pinned < q:
                    return None
                p = q
                for g in segs[i:j]:
                    a = g.find(t, p, pinned)
                    if a < 0:
                        return None
                    p = a + g.n
                if not segs[j].at(t, pinned):
                    return None
                q = pinned + segs[j].n
                i = j + 1
                continue
            group = segs[i:]
            if self.greedy:
                hi = line_end
                end = -1
                for g in reversed(group):
                    a = g.rfind(t, q, hi)
                    if a < 0:
                        return None
                    if end < 0:
                        end = a + g.n
                    hi = a
                return end
            p = q
            for g in group:
                a = g.find(t, p, line_end)
                if a < 0:
                    return None
                p = a + g.n
            return p
        return q


def trim_prefix(word: str, value: str, greedy: bool) -> str:
    """``${x#word}`` (``##`` when ``greedy``): ``value`` without the shortest (longest) prefix the pattern ``word``
    matches."""
    try:
        pat = ShellPattern(word, greedy)
    except DockerfileError as exc:
        raise DockerfileError(f"invalid pattern ({word}) in substitution: {exc}") from None
    end = pat.match_prefix(value)
    if end is not None:
        value = value[end:]
    return value


def _reverse_pattern(pattern: str) -> str:
    runes = list(pattern)
    last = len(runes) - 1
    out = [""] * len(runes)
    i = 0
    while i <= last:
        tok = runes[i]
        j = last - i
        if tok == "\\" and i != last:
            out[j - 1] = tok
            out[j] = runes[i + 1]
            i += 2
        else:
            out[j] = tok
            i += 1
    return "".join(out)


def trim_suffix(pattern: str, word: str, greedy: bool) -> str:
    # regular expressions can't find the shortest rightmost match: reverse both
    """``${x%pattern}`` (``%%`` when ``greedy``): ``word`` without the shortest (longest) suffix ``pattern`` matches."""
    return trim_prefix(_reverse_pattern(pattern), word[::-1], greedy)[::-1]


def go_replace_all(pat: ShellPattern, src: str, template: str, limit: int = MAX_EXPANDED_SIZE) -> str:
    """``Regexp.ReplaceAllString``: Go's rules for empty matches and ``$`` in the replacement; the result is
    bounded by ``limit`` as it grows."""
    n = len(src)
    if pat.rx is not None and pat.segments[0].n:
        # a fixed-length, never empty match: Go's loop is re.sub's
        growth = 0

        def replace(m: re.Match[str]) -> str:
            nonlocal growth
            expanded = _go_expand(template, m.group()) if "$" in template else template
            growth += len(expanded) - len(m.group())
            checked_size(n + growth, limit)
            return expanded

        return pat.rx.sub(replace, src)
    out: list[str] = []
    size = 0
    last_end = 0
    search_pos = 0
    t = Text(src)
    while search_pos <= n:
        span = pat.search(t, search_pos)
        if span is None:
            break
        a0, a1 = span
        out.append(src[last_end:a0])
        size += a0 - last_end
        if a1 > last_end or a0 == 0:
            expanded = _go_expand(template, src[a0:a1])
            out.append(expanded)
            size += len(expanded)
        checked_size(size, limit)
        last_end = a1
        width = 1 if search_pos < n else 0
        if search_pos + width > a1:
            search_pos += width
        elif search_pos + 1 > a1:
            search_pos += 1
        else:
            search_pos = a1
    out.append(src[last_end:])
    checked_size(size + n - last_end, limit)
    return "".join(out)


def _go_expand(template: str, matched: str) -> str:
    out: list[str] = []
    while template:
        i = template.find("$")
        if i < 0:
            break
        out.append(template[:i])
        template = template[i + 1 :]
        if template.startswith("$"):
            out.append("$")
            template = template[1:]
            continue
        extracted = _go_extract(template)
        if extracted is None:
            out.append("$")
            continue
        num, template = extracted
        if num == 0:
            out.append(matched)
        # the pattern has no capture groups: every other reference is empty
    out.append(template)
    return "".join(out)


def _go_extract(s: str) -> tuple[int, str] | None:
    if s == "":
        return None
    brace = s[0] == "{"
    if brace:
        s = s[1:]
    i = 0
    while i < len(s) and (is_letter(s[i]) or is_digit(s[i]) or s[i] == "_"):
        i += 1
    if i == 0:
        return None
    name = s[:i]
    if brace:
        if i >= len(s) or s[i] != "}":
            return None
        i += 1
    num = 0
    for c in name:
        if not ("0" <= c <= "9") or num >= 100_000_000:
            num = -1
            break
        num = num * 10 + ord(c) - 48
    if name[0] == "0" and len(name) > 1:
        num = -1
    return num, s[i:]


# =============================================================================================
# BuildKit's instructions (frontend/dockerfile/instructions)
