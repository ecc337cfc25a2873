"""BuildKit's shell lexer (``frontend/dockerfile/shell/lex.go``): word splitting, quotes, escapes and
variable expansion against an environment, linear in the word and bounded in what it adds."""

from __future__ import annotations

import re
from collections.abc import Iterable

from ..timestamps import go_quote
from .patterns import ShellPattern, Text, go_replace_all, trim_prefix, trim_suffix
from .text import (
    GO_SPACE,
    MAX_EXPANDED_SIZE,
    DockerfileError,
    ExpansionTooLarge,
    Scanner,
    WordBuilder,
    checked_size,
    is_digit,
    is_letter,
    rune_text,
)


class Env:
    """``shell.EnvsFromSlice``: the last ``KEY=value`` of a key wins; ``KEY`` alone is set, empty."""

    def __init__(self, env: Iterable[str]) -> None:
        self.values: dict[str, str] = {}
        for entry in env:
            k, _, v = entry.partition("=")
            self.values[k] = v

    def get(self, name: str) -> tuple[str, bool]:
        """The value of ``name`` and whether it is set."""
        if name in self.values:
            return self.values[name], True
        return "", False


EMPTY_ENV = Env(())


_SPACE_CLASS = "".join(re.escape(c) for c in sorted(GO_SPACE))
_RE_SPACES = re.compile(f"[{_SPACE_CLASS}]+")
_PLAIN_RUNS: dict[tuple[str, str | None, bool], re.Pattern[str]] = {}


def _plain_run(escape: str, stop: str | None, quotes: bool) -> re.Pattern[str]:
    """A run of characters ``processStopOn`` takes one by one with nothing special to do: no space, ``$``,
    escape token, stop character or (when quotes are processed) quote."""
    key = (escape, stop, quotes)
    rx = _PLAIN_RUNS.get(key)
    if rx is None:
        special = "$" + escape + (stop or "") + ("'\"" if quotes else "")
        rx = _PLAIN_RUNS[key] = re.compile(f"[^{_SPACE_CLASS}{re.escape(special)}]+")
    return rx


_DQ_RUNS: dict[str, re.Pattern[str]] = {}


def _dq_run(escape: str) -> re.Pattern[str]:
    rx = _DQ_RUNS.get(escape)
    if rx is None:
        rx = _DQ_RUNS[escape] = re.compile(f"[^{re.escape(chr(34) + '$' + escape)}]+")
    return rx


class _Words:
    __slots__ = ("buf", "words", "in_word")

    def __init__(self, buf: WordBuilder) -> None:
        self.buf = buf
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in GO_SPACE:
            if self.in_word and self.buf.size:
                self.words.append(self.buf.take())
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.buf.add(ch)
        self.in_word = True

    def add_string(self, s: str) -> None:
        """``addChar`` for every rune of ``s``, a run at a time: a run of spaces acts as its first space, a run
        of other characters as ``addRawString``."""
        if not s:
            return
        pieces = _RE_SPACES.split(s)
        if pieces[0]:
            self.add_raw_string(pieces[0])
        if len(pieces) == 1:
            return
        self.add_char(" ")
        if len(pieces) > 2:
            # after a space the buffer is empty: every piece between two space runs is a word of its own
            mids = pieces[1:-1]
            checked_size(sum(map(len, mids)), self.buf.limit)
            self.words.extend(mids)
            self.in_word = False
        if pieces[-1]:
            self.add_raw_string(pieces[-1])

    def add_raw_string(self, s: str) -> None:
        self.buf.add(s)
        self.in_word = True

    def get_words(self) -> list[str]:
        if self.buf.size:
            self.words.append(self.buf.take())
            self.in_word = False
        return self.words


class Lex:
    """BuildKit's ``shell.Lex``: the escape token and the options of word processing."""

    def __init__(self, escape: str) -> None:
        self.escape = escape
        self.raw_quotes = False
        self.raw_escapes = False
        self.skip_process_quotes = False
        self.skip_unset_env = False

    def process_word(self, word: str, env: Env) -> str:
        """``ProcessWord``: ``word`` expanded against ``env``, as one word."""
        return _ShellWord(self, word, env).process(word)[0]

    def process_words(self, word: str, env: Env) -> list[str]:
        """``ProcessWords``: ``word`` expanded against ``env`` and split into words."""
        return _ShellWord(self, word, env).process(word)[1]


def _shorten(s: str, limit: int = 120) -> str:
    return s if len(s) <= limit else s[:limit] + "..."


class _ShellWord:
    """BuildKit's ``shellWord``, in linear time: runs of ordinary characters are taken at once, and words are
    built from parts joined once (Go's ``string +=`` one rune at a time is quadratic in Python). Every result is
    checked as it grows against ``limit``: the word's own length plus :data:`MAX_EXPANDED_SIZE` — what variables
    may add to it (a word of literal text is never refused: the Dockerfile's size bounds it)."""

    def __init__(self, lex: Lex, word: str, env: Env) -> None:
        self.lex = lex
        self.escape = lex.escape
        self.sc = Scanner(word)
        self.env = env
        self.raw_escapes = lex.raw_escapes
        # One builder shared by every processStopOn call, nested ones too, as in BuildKit.
        self.limit = MAX_EXPANDED_SIZE + len(word)
        self.words_buffer = WordBuilder(self.limit)

    def process(self, source: str) -> tuple[str, list[str]]:
        try:
            return self.process_stop_on(None, self.raw_escapes)
        except ExpansionTooLarge as exc:
            # the source may be a whole (continued) line: quote its start only
            raise DockerfileError(f"failed to process {go_quote(_shorten(source))}: {exc}") from None
        except DockerfileError as exc:
            raise DockerfileError(f"failed to process {go_quote(source)}: {exc}") from None

    def process_stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        result: list[str] = []
        size = 0
        self.words_buffer.clear()
        words = _Words(self.words_buffer)
        quotes = not self.lex.skip_process_quotes
        restore: bool | None = None
        if raw_escapes != self.raw_escapes:
            self.raw_escapes = raw_escapes
            restore = not raw_escapes
        sc = self.sc
        s = sc.s
        n = len(s)
        esc = self.escape
        plain = _plain_run(esc, stop, quotes)
        try:
            while sc.i < n:
                ch = s[sc.i]
                if ch == stop:
                    sc.i += 1
                    return "".join(result), words.get_words()
                if ch == "$" or (quotes and (ch == "'" or ch == '"')):
                    if ch == "$":
                        tmp = self.process_dollar()
                    elif ch == "'":
                        tmp = self.process_single_quote()
                    else:
                        tmp = self.process_double_quote()
                    size = checked_size(size + len(tmp), self.limit)
                    result.append(tmp)
                    if ch == "$":
                        words.add_string(tmp)
                    else:
                        words.add_raw_string(tmp)
                    continue
                if ch == esc:
                    kept = self._skip_escape(result)
                    if kept:
                        words.add_raw_char(ch)
                        size += kept
                    if sc.i >= n:
                        break
                    ch = s[sc.i]
                    sc.i += 1
                    words.add_raw_char(ch)
                    result.append(ch)
                    size = checked_size(size + 1, self.limit)
                    continue
                m = plain.match(s, sc.i) or _RE_SPACES.match(s, sc.i)
                assert m is not None
                run = m.group()
                sc.i = m.end()
                if run[0] in GO_SPACE:
                    words.add_char(run[0])  # the rest of a run of spaces changes nothing
                else:
                    words.add_raw_string(run)
                result.append(run)
                size = checked_size(size + len(run), self.limit)
            if stop is not None:
                raise DockerfileError(f"unexpected end of statement while looking for matching {stop}")
            return "".join(result), words.get_words()
        finally:
            if restore is not None:
                self.raw_escapes = restore

    def _skip_escape(self, result: list[str]) -> int:
        """Step over the escape character at the cursor, kept in ``result`` when escapes are raw; the size added."""
        self.sc.i += 1
        if self.raw_escapes:
            result.append(self.escape)
            return 1
        return 0

    def process_single_quote(self) -> str:
        sc = self.sc
        s = sc.s
        sc.i += 1  # the opening quote
        end = s.find("'", sc.i)
        if end < 0:
            sc.i = len(s)
            raise DockerfileError("unexpected end of statement while looking for matching single-quote")
        body = s[sc.i : end]
        sc.i = end + 1
        return "'" + body + "'" if self.lex.raw_quotes else body

    def process_double_quote(self) -> str:
        sc = self.sc
        s = sc.s
        n = len(s)
        esc = self.escape
        run_rx = _dq_run(esc)
        result: list[str] = []
        size = 0
        sc.i += 1  # the opening quote
        if self.lex.raw_quotes:
            result.append('"')
        while True:
            if sc.i >= n:
                raise DockerfileError("unexpected end of statement while looking for matching double-quote")
            peek = s[sc.i]
            if peek == '"':
                sc.i += 1
                if self.lex.raw_quotes:
                    result.append('"')
                return "".join(result)
            if peek == "$":
                value = self.process_dollar()
                size = checked_size(size + len(value), self.limit)
                result.append(value)
                continue
            if peek == esc:
                size += self._skip_escape(result)
                if sc.i >= n:
                    continue  # an escape at the end of the word is dropped
                nxt = s[sc.i]
                if nxt in ('"', "$", esc):
                    sc.i += 1
                    result.append(nxt)
                else:
                    result.append(esc)
                size = checked_size(size + 1, self.limit)
                continue
            m = run_rx.match(s, sc.i)
            assert m is not None
            run = m.group()
            sc.i = m.end()
            result.append(run)
            size = checked_size(size + len(run), self.limit)

    def get_env(self, name: str) -> tuple[str, bool]:
        return self.env.get(name)

    def process_name(self) -> str:
        name: list[str] = []
        while (ch := self.sc.peek()) is not None:
            if not name and is_digit(ch):
                while (c := self.sc.peek()) is not None and is_digit(c):
                    name.append(self.sc.next())  # type: ignore[arg-type]
                return "".join(name)
            if not name and ch in "@*#?-$!0":
                self.sc.next()
                return ch
            if not (is_letter(ch) or is_digit(ch) or ch == "_"):
                break
            name.append(self.sc.next())  # type: ignore[arg-type]
        return "".join(name)

    def _sub_word(self, stop: str, raw_escapes: bool, missing: str) -> str:
        """``processStopOn(stop)`` inside ``${…}``: at the end of the word, the error is ``missing``."""
        try:
            return self.process_stop_on(stop, raw_escapes)[0]
        except ExpansionTooLarge:
            raise
        except DockerfileError:
            if self.sc.peek() is None:
                raise DockerfileError(missing) from None
            raise

    def process_dollar(self) -> str:
        self.sc.next()
        if self.sc.peek() != "{":
            name = self.process_name()
            if name == "":
                return "$"
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "$" + name
            return value

        self.sc.next()
        peek = self.sc.peek()
        if peek is None:
            raise DockerfileError("syntax error: missing '}'")
        if peek in "{}:":
            raise DockerfileError("syntax error: bad substitution")
        name = self.process_name()
        ch = self.sc.next()
        chs = rune_text(ch)
        null_is_unset = False

        if ch == "}":
            value, found = self.get_env(name)
            if not found and self.lex.skip_unset_env:
                return "${" + name + "}"
            return value
        if ch == ":" or ch in ("+", "-", "?", "#", "%"):
            if ch == ":":
                null_is_unset = True
                ch = self.sc.next()
                chs += rune_text(ch)
            raw_escapes = ch in ("#", "%")
            if null_is_unset and raw_escapes:
                raise DockerfileError(f"unsupported modifier ({chs}) in substitution")
            word = self._sub_word("}", raw_escapes, "syntax error: missing '}'")
            value, found = self.get_env(name)
            if self.lex.skip_unset_env and not found:
                return "${" + name + chs + word + "}"
            if ch == "-":
                if not found or (null_is_unset and value == ""):
                    return word
                return value
            if ch == "+":
                if not found or (null_is_unset and value == ""):
                    return ""
                return word
            if ch == "?":
                if not found:
                    raise DockerfileError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise DockerfileError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            if ch in ("%", "#"):
                greedy = False
                if word[:1] == ch:
                    greedy = True
                    word = word[1:]
                if ch == "%":
                    return trim_suffix(word, value, greedy)
                return trim_prefix(word, value, greedy)
            raise DockerfileError(f"unsupported modifier ({chs}) in substitution")
        if ch == "/":
            replace_all = self.sc.peek() == "/"
            if replace_all:
                self.sc.next()
            pattern = self._sub_word("/", True, "syntax error: missing '/' in ${}")
            replacement = self._sub_word("}", True, "syntax error: missing '}'")
            value, found = self.get_env(name)
            if self.lex.skip_unset_env and not found:
                return "${" + name + "/" + pattern + "/" + replacement + "}"
            try:
                pat = ShellPattern(pattern, True)
            except DockerfileError as exc:
                raise DockerfileError(f"invalid pattern ({pattern}) in substitution: {exc}") from None
            if replace_all:
                return go_replace_all(pat, value, replacement, self.limit)
            span = pat.search(Text(value), 0)
            if span is not None:
                value = value[: span[0]] + replacement + value[span[1] :]
            return value
        raise DockerfileError(f"unsupported modifier ({chs}) in substitution")


# ---- shell patterns (``${x#…}``, ``${x%…}``, ``${x/…/…}``) -------------------------------------------------------
