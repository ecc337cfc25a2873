"""The Dockerfile parser and the instructions that change a config: ``docker commit -c`` / ``docker import -c``
changes, and the classic builder's metadata steps (:func:`builder_dispatch`).

This is dockerd's ``BuildFromConfig`` (moby ``builder/dockerfile/builder.go``): the ``changes`` are
joined with newlines and parsed as one Dockerfile by BuildKit's parser
(``frontend/dockerfile/parser``), every instruction is checked against the allow-list
``validCommitCommands`` and typed by BuildKit's ``instructions.ParseCommand``, and each is then
applied as the classic builder's dispatchers apply it (``evaluator.go`` ``dispatch``,
``dispatchers.go``, ``dispatchers_unix.go``): variables are expanded by BuildKit's shell lexer
(``frontend/dockerfile/shell/lex.go``) against the config's ``Env`` as it was before the
instruction, shell forms take the config's ``Shell`` (else ``/bin/sh -c``), ``ENTRYPOINT`` clears
``Cmd`` unless a ``CMD`` with arguments came earlier in the same changes, a relative ``WORKDIR`` is
joined to the current one, ``EXPOSE`` takes port specs and ranges (go-connections ``nat``).

The allowed instructions are CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK, LABEL, ONBUILD,
STOPSIGNAL, USER, VOLUME and WORKDIR; anything else (FROM, RUN, SHELL, ARG…) is refused with
``<instruction> is not a valid change command``, lower-cased as BuildKit's parser stores it (``from is not a
valid change command``). Every error is an :class:`InvalidArgument` worded as dockerd words it. The daemon
modelled is a Linux one: paths are slash-separated, environment names are case-sensitive, signals are Linux's.

:func:`builder_dispatch` applies one metadata instruction of a ``POST /build`` Dockerfile the same way (plus
SHELL and MAINTAINER), expanding against the stage's build args too, and returns the commit message dockerd's
classic builder records in the history, in its Go formatting.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import ipaddress
import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..errors import InvalidArgument
from ..timestamps import go_quote, _parse_int64, parse_go_duration_ns

__all__ = ["apply_changes", "VALID_CHANGE_COMMANDS", "builder_dispatch", "Dispatched", "BUILDER_METADATA_COMMANDS",
           "go_duration", "validate_instruction", "parse_dockerfile", "check_env_size", "ParseCancelled",
           "MAX_DOCKERFILE_SIZE", "MAX_EXPANDED_SIZE", "MAX_ENV_SIZE"]

#: ``validCommitCommands``: the instructions a change may be (lower case).
VALID_CHANGE_COMMANDS = frozenset(
    {
        "cmd",
        "entrypoint",
        "healthcheck",
        "env",
        "expose",
        "label",
        "onbuild",
        "stopsignal",
        "user",
        "volume",
        "workdir",
    }
)


class _Error(Exception):
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
_GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def _is_space(ch: str | None) -> bool:
    return ch is not None and ch in _GO_SPACE


_GO_SPACE_CHARS = "".join(sorted(_GO_SPACE))


def _trim_space(s: str) -> str:
    return s.strip(_GO_SPACE_CHARS)


def _trim_left_space(s: str) -> str:
    return s.lstrip(_GO_SPACE_CHARS)


def _go_upper(s: str) -> str:
    if s.isascii():
        return s.upper()
    return "".join(c.upper() if len(c.upper()) == 1 else c for c in s)


def _go_lower(s: str) -> str:
    if s.isascii():
        return s.lower()
    # Go maps rune by rune (simple case mapping): U+0130 lowers to "i", not "i" + U+0307.
    return "".join(c.lower()[0] for c in s)


def _is_letter(ch: str) -> bool:  # unicode.IsLetter
    return ch.isalpha()


def _is_digit(ch: str) -> bool:  # unicode.IsDigit
    return ch.isdecimal()


def _rune(ch: str | None) -> str:
    """``string(ch)`` for a scanned rune: EOF (-1) prints as U+FFFD."""
    return "\ufffd" if ch is None else ch


def _from_bytes(b: bytes) -> str:
    return b.decode("utf-8", "replace")


# regexp `[\t\v\f\r ]+`
_RE_WS = re.compile(r"[\t\v\f\r ]+")

# =============================================================================================
# BuildKit's Dockerfile parser (frontend/dockerfile/parser)


class _Heredoc:
    __slots__ = ("name", "expand", "chomp", "content")

    def __init__(self, name: str, expand: bool, chomp: bool) -> None:
        self.name = name
        self.expand = expand
        self.chomp = chomp
        self.content = ""


class _Node:
    """A parse-tree node; ``args`` is Go's ``Next`` chain as a list. Empty sequences are the shared empty tuple
    and a node's fields are assigned, never appended to: a Dockerfile of a million lines makes millions of
    nodes, and every list the garbage collector tracks slows each of its passes."""

    __slots__ = ("value", "args", "children", "attributes", "original", "flags", "heredocs", "start_line")

    def __init__(self, value: str = "", children: Sequence[_Node] = ()) -> None:
        self.value = value
        self.args: Sequence[_Node] = ()
        self.children = children
        self.attributes: dict[str, bool] = {}  # an empty dict is not tracked by the collector
        self.original = ""
        self.flags: Sequence[str] = ()
        self.heredocs: Sequence[_Heredoc] = ()
        self.start_line = 0  # the Dockerfile line the instruction starts on (1-based)


_NOT_STRING_ARRAY = "when using JSON array syntax, arrays must be comprised of strings only"

# `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` with Go's \s
_RE_DIRECTIVE = re.compile(r"#[\t\n\f\r ]*([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_MAX_LINE = 64 * 1024  # bufio.MaxScanTokenSize


class _Directives:
    def __init__(self) -> None:
        self.done = False
        self.seen: set[str] = set()
        self.set_escape("\\")

    def set_escape(self, s: str) -> None:
        if s not in ("`", "\\"):
            raise _Error(f"invalid escape token '{s}' does not match ` or \\")
        self.escape = s

    def possible_directive(self, line: str) -> bool:
        if self.done:
            return False
        m = _RE_DIRECTIVE.match(line)
        if m is None:
            self.done = True
            return False
        key = m.group(1).lower()
        if key not in ("syntax", "escape"):
            self.done = True
            return False
        if key in self.seen:
            raise _Error(f"only one {key} parser directive can be used")
        self.seen.add(key)
        if key == "escape":
            self.set_escape(m.group(2))
        return True


_SPACE_NO_NL = "".join(re.escape(c) for c in sorted(_GO_SPACE - {"\n"}))
#: A line that is neither blank nor a comment (from its start): what the parser does not skip.
_RE_SIGNIFICANT = re.compile(f"^[{_SPACE_NO_NL}]*+[^{_SPACE_NO_NL}\\n#]", re.MULTILINE)
_RE_LONG_LINE = re.compile(f"[^\\n]{{{_MAX_LINE // 4},}}")


_CONTINUATION_RXS: dict[str, tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]] = {}


def _continuation_rxs(escape: str) -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """For an escape token: the first line that is neither blank, a comment nor continued (the last line of an
    instruction: its continuation is the token, then spaces and tabs, then carriage returns, not after another
    token); a blank or comment line; the continuation at the end of a line, with its newline."""
    rxs = _CONTINUATION_RXS.get(escape)
    if rxs is None:
        e = re.escape(escape)
        sp = _SPACE_NO_NL
        continued = f"(?:^|[^{e}\\n]){e}[ \\t]*\\r*$"
        rxs = _CONTINUATION_RXS[escape] = (
            re.compile(f"^(?=[{sp}]*+[^{sp}\\n#])(?![^\\n]*?{continued})[^\\n]*", re.MULTILINE),
            re.compile(f"^[{sp}]*+(?:#[^\\n]*)?(?:\\n|\\Z)", re.MULTILINE),
            re.compile(f"{e}[ \\t]*\\r*(?:\\n|\\Z)"),
        )
    return rxs


class _Lines:
    """bufio.Scanner with BuildKit's scanLines: lines keep their "\\n"; a line of 64 KiB stops it (``end`` is
    where scanning stops). Linear in the text; :meth:`skip_blank` passes blank and comment lines at C speed."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.line = 0  # lines scanned so far
        self.end = len(text)
        self.too_long = False
        pos = 0
        while (m := _RE_LONG_LINE.search(text, pos)) is not None:
            if len(m.group().encode("utf-8", "surrogatepass")) >= _MAX_LINE:
                self.end = m.start()
                self.too_long = True
                break
            pos = m.end()

    def scan(self) -> str | None:
        if self.pos >= self.end:
            return None
        nl = self.text.find("\n", self.pos, self.end)
        stop = self.end if nl < 0 else nl + 1
        line = self.text[self.pos : stop]
        self.pos = stop
        self.line += 1
        return line

    def skip_blank(self) -> None:
        """Pass the blank and comment lines from here: what the parser skips once the directives are read."""
        m = _RE_SIGNIFICANT.search(self.text, self.pos, self.end)
        new = self.end if m is None else m.start()
        if new > self.pos:
            self.line += self.text.count("\n", self.pos, new)
            self.pos = new

    def continued(self, escape: str) -> str:
        """The rest of an instruction whose line ended with a continuation, joined: the loop of ``Parse`` over the
        next lines (blank and comment lines skipped, the continuation of each line cut) done by regular
        expressions over the whole block — a Dockerfile may hold millions of continuation lines."""
        last_rx, drop_rx, cut_rx = _continuation_rxs(escape)
        text = self.text
        m = last_rx.search(text, self.pos, self.end)
        if m is None:  # the end of the file while continuing
            block, last, stop = text[self.pos : self.end], "", self.end
        else:
            block, last = text[self.pos : m.start()], m.group().rstrip("\r")
            stop = m.end() + 1 if m.end() < self.end else m.end()  # with its newline
        self.line += text.count("\n", self.pos, stop) + (stop > self.pos and text[stop - 1] != "\n")
        self.pos = stop
        return cut_rx.sub("", drop_rx.sub("", block)) + last

    def heredoc(self, name: str, chomp: bool) -> str | None:
        """The lines up to the one that is ``name`` (after leading tabs with ``chomp``), which is consumed;
        None if there is none."""
        tabs = "\\t*" if chomp else ""
        rx = re.compile(f"^{tabs}{re.escape(name)}\\r*$", re.MULTILINE)
        m = rx.search(self.text, self.pos, self.end)
        if m is None:
            self.pos = self.end
            return None
        body = self.text[self.pos : m.start()]
        self.line += body.count("\n")
        self.pos = m.start()
        self.scan()  # the terminator
        return body


def _trim_newline(s: str) -> str:
    return s.rstrip("\r\n")


def _is_comment(line: str) -> bool:
    return _trim_left_space(line).startswith("#")


def _process_line(d: _Directives, token: str, strip_left: bool) -> str:
    token = _trim_newline(token)
    if strip_left:
        token = _trim_left_space(token)
    d.possible_directive(token)
    return "" if _is_comment(token) else token


def _trim_continuation(line: str, d: _Directives) -> tuple[str, bool]:
    """The line without its continuation (an escape token, then only spaces and tabs, not after another escape
    token: ``([^\\])\\[ \t]*$``), and whether the instruction ends with it."""
    stripped = line.rstrip(" \t")
    if stripped.endswith(d.escape) and (len(stripped) == 1 or stripped[-2] != d.escape):
        return stripped[:-1], False
    return line, True


class ParseCancelled(Exception):
    """:func:`parse_dockerfile` stopped because its ``cancel`` event was set."""


def _parse(text: str, cancel: "threading.Event | None" = None) -> tuple[list[_Node], str]:
    """``parser.Parse``: the instructions of ``text`` and the escape token. Linear in the text; ``cancel`` (set
    from another thread) stops it between instructions."""
    d = _Directives()
    lines = _Lines(text)
    children: list[_Node] = []
    first = True
    while True:
        if d.done:
            lines.skip_blank()
        if (raw := lines.scan()) is None:
            break
        if cancel is not None and cancel.is_set():
            raise ParseCancelled()
        if first:
            raw = raw.removeprefix("\ufeff")
            first = False
        start_line = lines.line
        b = _process_line(d, raw, True)
        b, end = _trim_continuation(b, d)
        if end and b == "":
            continue
        parts = [b]
        if not end and d.done:
            parts.append(lines.continued(d.escape))
            end = True
        while not end:
            if cancel is not None and cancel.is_set():
                raise ParseCancelled()
            if d.done:
                lines.skip_blank()
            nxt = lines.scan()
            if nxt is None:
                break
            nb = _process_line(d, nxt, False)
            if _is_comment(nxt):
                continue
            if _trim_left_space(_trim_newline(nb)) == "":
                continue  # empty continuation line
            nb, end = _trim_continuation(nb, d)
            parts.append(nb)
        line = "".join(parts)
        child = _new_node_from_line(line, d)
        child.start_line = start_line
        if _can_contain_heredoc(child) and "<<" in line:
            heredocs = []
            for heredoc in _heredocs_from_line(line):
                content = lines.heredoc(heredoc.name, heredoc.chomp)
                if content is None:
                    raise _Error("unterminated heredoc")
                heredoc.content = content
                heredocs.append(heredoc)
            child.heredocs = heredocs
        children.append(child)
    if not children:
        raise _Error("file with no instructions")
    if lines.too_long:
        raise _Error(f"dockerfile line greater than max allowed size of {_MAX_LINE - 1}")
    return children, d.escape


def _new_node_from_line(line: str, d: _Directives) -> _Node:
    cmd, flags, args = _split_command(line)
    fn = _LINE_PARSERS.get(_go_lower(cmd), _parse_ignore)
    nodes, attrs = fn(args, d)
    node = _Node(cmd)
    node.original = line
    node.flags = flags
    node.args = nodes
    node.attributes = attrs
    return node


def _split_command(line: str) -> tuple[str, list[str], str]:
    cmdline = _RE_WS.split(_trim_space(line), maxsplit=1)
    args = ""
    flags: list[str] = []
    if len(cmdline) == 2:
        args, flags = _extract_builder_flags(cmdline[1])
    return cmdline[0], flags, _trim_space(args)


_ASCII_SPACE = "\t\n\v\f\r "


def _extract_builder_flags(line: str) -> tuple[str, list[str]]:
    """Leading ``--flag[=value]`` words. Go walks the bytes here, one byte taken as one rune."""
    if line.isascii():  # the common case, at once: no flag
        rest = line.lstrip(_ASCII_SPACE)
        if not rest.startswith("--"):
            return rest, []
    b = line.encode("utf-8", "surrogatepass")
    n = len(b)
    words: list[str] = []
    in_spaces, in_word, in_quote = 0, 1, 2
    phase = in_spaces
    word: list[str] = []
    quote = 0
    blank_ok = False
    ch = 0
    pos = 0
    while pos <= n:
        if pos != n:
            ch = b[pos]
        if phase == in_spaces:
            if pos == n:
                break
            if chr(ch) in _GO_SPACE:
                pos += 1
                continue
            if ch != 0x2D or pos + 1 == n or b[pos + 1] != 0x2D:
                return _from_bytes(b[pos:]), words
            phase = in_word
        if phase in (in_word, in_quote) and pos == n:
            w = "".join(word)
            if w != "--" and (blank_ok or w):
                words.append(w)
            break
        if phase == in_word:
            if chr(ch) in _GO_SPACE:
                w = "".join(word)
                phase = in_spaces
                if w == "--":
                    return _from_bytes(b[pos:]), words
                if blank_ok or w:
                    words.append(w)
                word = []
                blank_ok = False
                pos += 1
                continue
            if ch in (0x27, 0x22):
                quote = ch
                blank_ok = True
                phase = in_quote
                pos += 1
                continue
            if ch == 0x5C:
                if pos + 1 == n:
                    pos += 1
                    continue
                pos += 1
                ch = b[pos]
            word.append(chr(ch))
            pos += 1
            continue
        if phase == in_quote:
            if ch == quote:
                phase = in_word
                pos += 1
                continue
            if ch == 0x5C:
                if pos + 1 == n:
                    phase = in_word
                    pos += 1
                    continue
                pos += 1
                ch = b[pos]
            word.append(chr(ch))
        pos += 1
    return "", words


# ---- line parsers ----------------------------------------------------------------------------

_LineResult = tuple[list[_Node], dict[str, bool]]


def _parse_ignore(rest: str, d: _Directives) -> _LineResult:
    return [_Node()], {}


def _parse_sub_command(rest: str, d: _Directives) -> _LineResult:
    if rest == "":
        return [], {}
    child = _new_node_from_line(rest, d)
    return [_Node(children=[child])], {}


def _parse_words(rest: str, d: _Directives) -> list[str]:
    in_spaces, in_word, in_quote = 0, 1, 2
    words: list[str] = []
    phase = in_spaces
    word: list[str] = []
    quote = ""
    blank_ok = False
    n = len(rest)
    pos = 0
    ch = ""
    while True:
        at_end = pos == n
        if not at_end:
            ch = rest[pos]
        if phase == in_spaces:
            if at_end:
                break
            if ch in _GO_SPACE:
                pos += 1
                continue
            phase = in_word
        if phase in (in_word, in_quote) and at_end:
            if blank_ok or word:
                words.append("".join(word))
            break
        if phase == in_word:
            if ch in _GO_SPACE:
                phase = in_spaces
                if blank_ok or word:
                    words.append("".join(word))
                word = []
                blank_ok = False
                pos += 1
                continue
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
                phase = in_quote
            if ch == d.escape:
                if pos + 1 == n:
                    pos += 1
                    continue  # an escape token at the end of the line is skipped
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
            pos += 1
            continue
        if phase == in_quote:
            if ch == quote:
                phase = in_word
            if ch == d.escape and quote != "'":
                if pos + 1 == n:
                    phase = in_word
                    pos += 1
                    continue
                pos += 1
                word.append(ch)
                ch = rest[pos]
            word.append(ch)
        pos += 1
    return words


def _parse_name_val(rest: str, key: str, d: _Directives) -> list[_Node]:
    words = _parse_words(rest, d)
    if not words:
        return []
    if "=" not in words[0]:  # the legacy form: KEY name value
        parts = _RE_WS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _Error(f"{key} must have two arguments")
        return [_Node(parts[0]), _Node(parts[1])]
    nodes: list[_Node] = []
    for word in words:
        if "=" not in word:
            raise _Error(f"Syntax error - can't find = in {go_quote(word)}. Must be of the form: name=value")
        k, _, v = word.partition("=")
        nodes += [_Node(k), _Node(v)]
    return nodes


def _parse_env(rest: str, d: _Directives) -> _LineResult:
    return _parse_name_val(rest, "ENV", d), {}


def _parse_label(rest: str, d: _Directives) -> _LineResult:
    return _parse_name_val(rest, "LABEL", d), {}


def _parse_name_or_name_val(rest: str, d: _Directives) -> _LineResult:
    return [_Node(w) for w in _parse_words(rest, d)], {}


def _parse_strings_whitespace_delimited(rest: str, d: _Directives) -> _LineResult:
    if rest == "":
        return [], {}
    return [_Node(s) for s in _RE_WS.split(rest)], {}


def _parse_string(rest: str, d: _Directives) -> _LineResult:
    if rest == "":
        return [], {}
    return [_Node(rest)], {}


class _NotJSON(Exception):
    pass


def _json_number(s: str) -> float:
    f = float(s)
    if f in (float("inf"), float("-inf")):
        raise _NotJSON  # out of range for float64: Unmarshal fails
    return f


def _json_int(s: str) -> int:
    n = int(s)
    try:
        float(n)
    except OverflowError:
        raise _NotJSON from None
    return n


def _json_constant(_: str) -> object:
    raise _NotJSON


def _fix_surrogates(s: str) -> str:
    if any(0xD800 <= ord(c) <= 0xDFFF for c in s):
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in s)
    return s


def _parse_json(rest: str) -> _LineResult:
    rest = _trim_left_space(rest)
    if not rest.startswith("["):
        raise _NotJSON
    try:
        doc = json.loads(rest, parse_float=_json_number, parse_int=_json_int, parse_constant=_json_constant)
    except (ValueError, _NotJSON, RecursionError):
        raise _NotJSON from None
    if not isinstance(doc, list):
        raise _NotJSON
    nodes: list[_Node] = []
    for item in doc:
        if not isinstance(item, str):
            raise _Error(_NOT_STRING_ARRAY)
        nodes.append(_Node(_fix_surrogates(item)))
    return nodes, {"json": True}


def _parse_maybe_json(rest: str, d: _Directives) -> _LineResult:
    if rest == "":
        return [], {}
    try:
        return _parse_json(rest)
    except _NotJSON:
        return [_Node(rest)], {}


def _parse_maybe_json_to_list(rest: str, d: _Directives) -> _LineResult:
    try:
        return _parse_json(rest)
    except _NotJSON:
        return _parse_strings_whitespace_delimited(rest, d)


def _parse_health_config(rest: str, d: _Directives) -> _LineResult:
    # Go walks the bytes here, one byte taken as one rune.
    b = rest.encode("utf-8", "surrogatepass")
    sep = 0
    while sep < len(b) and chr(b[sep]) not in _GO_SPACE:
        sep += 1
    nxt = sep
    while nxt < len(b) and chr(b[nxt]) in _GO_SPACE:
        nxt += 1
    if sep == 0:
        return [], {}
    typ = _Node(_from_bytes(b[:sep]))
    cmd, attrs = _parse_maybe_json(_from_bytes(b[nxt:]), d)
    return [typ, *cmd], attrs


_LINE_PARSERS = {
    "add": _parse_maybe_json_to_list,
    "arg": _parse_name_or_name_val,
    "cmd": _parse_maybe_json,
    "copy": _parse_maybe_json_to_list,
    "entrypoint": _parse_maybe_json,
    "env": _parse_env,
    "expose": _parse_strings_whitespace_delimited,
    "from": _parse_strings_whitespace_delimited,
    "healthcheck": _parse_health_config,
    "label": _parse_label,
    "maintainer": _parse_string,
    "onbuild": _parse_sub_command,
    "run": _parse_maybe_json,
    "shell": _parse_maybe_json,
    "stopsignal": _parse_string,
    "user": _parse_string,
    "volume": _parse_maybe_json_to_list,
    "workdir": _parse_string,
}

# ---- heredocs ----------------------------------------------------------------------------------

_RE_HEREDOC = re.compile(r"([0-9]*)<<(-?)([^<]*)\Z")


def _can_contain_heredoc(node: _Node) -> bool:
    if _go_lower(node.value) == "onbuild" and node.args and node.args[0].children:
        node = node.args[0].children[0]
    if _go_lower(node.value) not in ("add", "copy", "run"):
        return False
    return not node.attributes.get("json", False)


def _parse_heredoc(src: str) -> _Heredoc | None:
    m = _RE_HEREDOC.match(src)
    if m is None:
        return None
    chomp = m.group(2) == "-"
    rest = m.group(3)
    if rest == "":
        return None
    lex = _Lex("\\")
    lex.skip_unset_env = True
    words = lex.process_words(rest, _EMPTY_ENV)
    if len(words) != 1:
        return None
    lex.raw_quotes = True
    words_raw = lex.process_words(rest, _EMPTY_ENV)
    if len(words_raw) != len(words):
        raise _Error(f"internal lexing of heredoc produced inconsistent results: {rest}")
    word = words[0]
    count = word.count("'") + word.count('"')
    raw = words_raw[0]
    raw_count = raw.count("'") + raw.count('"')
    return _Heredoc(word, count == raw_count, chomp)


def _heredocs_from_line(line: str) -> list[_Heredoc]:
    lex = _Lex("\\")
    lex.raw_quotes = True
    lex.raw_escapes = True
    lex.skip_unset_env = True
    try:
        words = lex.process_words(line, _EMPTY_ENV)
    except _Error:
        words = []
    docs = []
    for word in words:
        heredoc = _parse_heredoc(word)
        if heredoc is not None:
            docs.append(heredoc)
    return docs


# =============================================================================================
# BuildKit's shell lexer (frontend/dockerfile/shell/lex.go)


class _Env:
    """``shell.EnvsFromSlice``: the last ``KEY=value`` of a key wins; ``KEY`` alone is set, empty."""

    def __init__(self, env: Iterable[str]) -> None:
        self.values: dict[str, str] = {}
        for entry in env:
            k, _, v = entry.partition("=")
            self.values[k] = v

    def get(self, name: str) -> tuple[str, bool]:
        if name in self.values:
            return self.values[name], True
        return "", False


_EMPTY_ENV = _Env(())


class _Scanner:
    """text/scanner's Next/Peek: runes, a leading BOM skipped, None at the end. The lexer also reads ``s`` and
    moves ``i`` itself, a run of ordinary characters at a time."""

    __slots__ = ("s", "i")

    def __init__(self, s: str) -> None:
        self.s = s[1:] if s.startswith("\ufeff") else s
        self.i = 0

    def peek(self) -> str | None:
        return self.s[self.i] if self.i < len(self.s) else None

    def next(self) -> str | None:
        if self.i < len(self.s):
            self.i += 1
            return self.s[self.i - 1]
        return None


class _TooLarge(_Error):
    """An expansion past :data:`MAX_EXPANDED_SIZE`."""

    def __init__(self) -> None:
        super().__init__(f"the expansion exceeds the maximum allowed size of {MAX_EXPANDED_SIZE} characters")


def _checked(size: int, limit: int) -> int:
    if size > limit:
        raise _TooLarge()
    return size


class _Builder:
    """The word being built (Go's ``word += …``) as parts joined once, so that building it is linear."""

    __slots__ = ("parts", "size", "limit")

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.size = 0
        self.limit = limit

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.size = _checked(self.size + len(s), self.limit)

    def clear(self) -> None:
        self.parts.clear()
        self.size = 0

    def take(self) -> str:
        s = "".join(self.parts)
        self.clear()
        return s


_SPACE_CLASS = "".join(re.escape(c) for c in sorted(_GO_SPACE))
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

    def __init__(self, buf: _Builder) -> None:
        self.buf = buf
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in _GO_SPACE:
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
            _checked(sum(map(len, mids)), self.buf.limit)
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


class _Lex:
    def __init__(self, escape: str) -> None:
        self.escape = escape
        self.raw_quotes = False
        self.raw_escapes = False
        self.skip_process_quotes = False
        self.skip_unset_env = False

    def process_word(self, word: str, env: _Env) -> str:
        return _ShellWord(self, word, env).process(word)[0]

    def process_words(self, word: str, env: _Env) -> list[str]:
        return _ShellWord(self, word, env).process(word)[1]


def _shorten(s: str, limit: int = 120) -> str:
    return s if len(s) <= limit else s[:limit] + "..."


class _ShellWord:
    """BuildKit's ``shellWord``, in linear time: runs of ordinary characters are taken at once, and words are
    built from parts joined once (Go's ``string +=`` one rune at a time is quadratic in Python). Every result is
    checked as it grows against ``limit``: the word's own length plus :data:`MAX_EXPANDED_SIZE` — what variables
    may add to it (a word of literal text is never refused: the Dockerfile's size bounds it)."""

    def __init__(self, lex: _Lex, word: str, env: _Env) -> None:
        self.lex = lex
        self.escape = lex.escape
        self.sc = _Scanner(word)
        self.env = env
        self.raw_escapes = lex.raw_escapes
        # One builder shared by every processStopOn call, nested ones too, as in BuildKit.
        self.limit = MAX_EXPANDED_SIZE + len(word)
        self.words_buffer = _Builder(self.limit)

    def process(self, source: str) -> tuple[str, list[str]]:
        try:
            return self.process_stop_on(None, self.raw_escapes)
        except _TooLarge as exc:
            # the source may be a whole (continued) line: quote its start only
            raise _Error(f"failed to process {go_quote(_shorten(source))}: {exc}") from None
        except _Error as exc:
            raise _Error(f"failed to process {go_quote(source)}: {exc}") from None

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
                    size = _checked(size + len(tmp), self.limit)
                    result.append(tmp)
                    if ch == "$":
                        words.add_string(tmp)
                    else:
                        words.add_raw_string(tmp)
                    continue
                if ch == esc:
                    sc.i += 1
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        result.append(ch)
                        size += 1
                    if sc.i >= n:
                        break
                    ch = s[sc.i]
                    sc.i += 1
                    words.add_raw_char(ch)
                    result.append(ch)
                    size = _checked(size + 1, self.limit)
                    continue
                m = plain.match(s, sc.i) or _RE_SPACES.match(s, sc.i)
                assert m is not None
                run = m.group()
                sc.i = m.end()
                if run[0] in _GO_SPACE:
                    words.add_char(run[0])  # the rest of a run of spaces changes nothing
                else:
                    words.add_raw_string(run)
                result.append(run)
                size = _checked(size + len(run), self.limit)
            if stop is not None:
                raise _Error(f"unexpected end of statement while looking for matching {stop}")
            return "".join(result), words.get_words()
        finally:
            if restore is not None:
                self.raw_escapes = restore

    def process_single_quote(self) -> str:
        sc = self.sc
        s = sc.s
        sc.i += 1  # the opening quote
        end = s.find("'", sc.i)
        if end < 0:
            sc.i = len(s)
            raise _Error("unexpected end of statement while looking for matching single-quote")
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
                raise _Error("unexpected end of statement while looking for matching double-quote")
            peek = s[sc.i]
            if peek == '"':
                sc.i += 1
                if self.lex.raw_quotes:
                    result.append('"')
                return "".join(result)
            if peek == "$":
                value = self.process_dollar()
                size = _checked(size + len(value), self.limit)
                result.append(value)
                continue
            if peek == esc:
                sc.i += 1
                if self.raw_escapes:
                    result.append(esc)
                    size += 1
                if sc.i >= n:
                    continue  # an escape at the end of the word is dropped
                nxt = s[sc.i]
                if nxt in ('"', "$", esc):
                    sc.i += 1
                    result.append(nxt)
                else:
                    result.append(esc)
                size = _checked(size + 1, self.limit)
                continue
            m = run_rx.match(s, sc.i)
            assert m is not None
            run = m.group()
            sc.i = m.end()
            result.append(run)
            size = _checked(size + len(run), self.limit)

    def get_env(self, name: str) -> tuple[str, bool]:
        return self.env.get(name)

    def process_name(self) -> str:
        name: list[str] = []
        while (ch := self.sc.peek()) is not None:
            if not name and _is_digit(ch):
                while (c := self.sc.peek()) is not None and _is_digit(c):
                    name.append(self.sc.next())  # type: ignore[arg-type]
                return "".join(name)
            if not name and ch in "@*#?-$!0":
                self.sc.next()
                return ch
            if not (_is_letter(ch) or _is_digit(ch) or ch == "_"):
                break
            name.append(self.sc.next())  # type: ignore[arg-type]
        return "".join(name)

    def _sub_word(self, stop: str, raw_escapes: bool, missing: str) -> str:
        """``processStopOn(stop)`` inside ``${…}``: at the end of the word, the error is ``missing``."""
        try:
            return self.process_stop_on(stop, raw_escapes)[0]
        except _TooLarge:
            raise
        except _Error:
            if self.sc.peek() is None:
                raise _Error(missing) from None
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
            raise _Error("syntax error: missing '}'")
        if peek in "{}:":
            raise _Error("syntax error: bad substitution")
        name = self.process_name()
        ch = self.sc.next()
        chs = _rune(ch)
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
                chs += _rune(ch)
            raw_escapes = ch in ("#", "%")
            if null_is_unset and raw_escapes:
                raise _Error(f"unsupported modifier ({chs}) in substitution")
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
                    raise _Error(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise _Error(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            if ch in ("%", "#"):
                greedy = False
                if word[:1] == ch:
                    greedy = True
                    word = word[1:]
                if ch == "%":
                    return _trim_suffix(word, value, greedy)
                return _trim_prefix(word, value, greedy)
            raise _Error(f"unsupported modifier ({chs}) in substitution")
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
                pat = _ShellPattern(pattern, True)
            except _Error as exc:
                raise _Error(f"invalid pattern ({pattern}) in substitution: {exc}") from None
            if replace_all:
                return _go_replace_all(pat, value, replacement, self.limit)
            span = pat.search(_Text(value), 0)
            if span is not None:
                value = value[: span[0]] + replacement + value[span[1] :]
            return value
        raise _Error(f"unsupported modifier ({chs}) in substitution")


# ---- shell patterns (``${x#…}``, ``${x%…}``, ``${x/…/…}``) -------------------------------------------------------

_ANY = 0  # ``?``: one character but a newline (Go's ``.``)
_STAR = 1  # ``*``: a run of characters without a newline (``.*`` or ``.*?``)


def _pattern_tokens(pattern: str) -> list[str | int]:
    """``convertShellPatternToRegex``'s reading of a pattern: literal characters, :data:`_ANY` and
    :data:`_STAR`; its errors are BuildKit's."""
    sc = _Scanner(pattern)
    out: list[str | int] = []
    while (tok := sc.next()) is not None:
        if tok == "*":
            out.append(_STAR)
            continue
        if tok == "?":
            out.append(_ANY)
            continue
        if tok == "\\":
            if sc.peek() in ("}", "/"):
                continue
            tok = sc.next()
            if tok not in ("*", "?", "\\"):
                raise _Error(f"invalid escape '\\{_rune(tok)}'")
        out.append(tok)
    return out


class _Text:
    """A value being matched, with its reverse made once when a backward search needs it."""

    __slots__ = ("s", "n", "_rev")

    def __init__(self, s: str) -> None:
        self.s = s
        self.n = len(s)
        self._rev: str | None = None

    @property
    def rev(self) -> str:
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
                return re.compile("".join("." if a == _ANY else re.escape(a) for a in seq))  # type: ignore[arg-type]
            self.rx = rx_of(atoms)
            self.rrx = rx_of(reversed(atoms))

    def at(self, t: _Text, a: int) -> bool:
        if self.lit is not None:
            return t.s.startswith(self.lit, a)
        return self.rx.match(t.s, a) is not None  # type: ignore[union-attr]

    def find(self, t: _Text, lo: int, hi: int) -> int:
        """The first start ``a >= lo`` of the segment ending by ``hi``, else -1."""
        if self.lit is not None:
            return t.s.find(self.lit, lo, hi)
        m = self.rx.search(t.s, lo, hi)  # type: ignore[union-attr]
        return -1 if m is None else m.start()

    def rfind(self, t: _Text, lo: int, hi: int) -> int:
        """The last start ``a >= lo`` of the segment ending by ``hi``, else -1."""
        if self.lit is not None:
            return t.s.rfind(self.lit, lo, hi)
        if hi - lo < self.n:
            return -1
        m = self.rrx.search(t.rev, t.n - hi, t.n - lo)  # type: ignore[union-attr]
        return -1 if m is None else t.n - m.start() - self.n


class _ShellPattern:
    """A shell pattern matched with Go's leftmost-first semantics (those of the regular expression
    ``convertShellPatternToRegex`` makes) in linear time: Python's backtracking ``re`` takes O(n^k) on a pattern
    of k stars that does not match, which a Dockerfile must not be able to make the daemon do.

    The pattern is ``S0 * S1 … * Sk``. Neither a star nor ``?`` crosses a newline, so the segments between two
    segments holding a newline sit on one line, and a segment holding a newline is pinned to the end of the
    line the match has reached. On one line, the leftmost placement of each segment in turn fits whenever any
    placement does (the non-greedy match, whose end is the last segment's), and the greedy match ends where the
    last segment's rightmost placement that leaves room for the ones before ends."""

    def __init__(self, pattern: str, greedy: bool) -> None:
        tokens = _pattern_tokens(pattern)
        self.greedy = greedy
        self.segments: list[_Segment] = []
        current: list[str | int] = []
        for tok in tokens:
            if tok == _STAR:
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
        return self._match_at(_Text(value), 0)

    def search(self, t: _Text, pos: int) -> tuple[int, int] | None:
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

    def _match_at(self, t: _Text, start: int) -> int | None:
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


def _trim_prefix(word: str, value: str, greedy: bool) -> str:
    try:
        pat = _ShellPattern(word, greedy)
    except _Error as exc:
        raise _Error(f"invalid pattern ({word}) in substitution: {exc}") from None
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


def _trim_suffix(pattern: str, word: str, greedy: bool) -> str:
    # regular expressions can't find the shortest rightmost match: reverse both
    return _trim_prefix(_reverse_pattern(pattern), word[::-1], greedy)[::-1]


def _go_replace_all(pat: _ShellPattern, src: str, template: str, limit: int = MAX_EXPANDED_SIZE) -> str:
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
            _checked(n + growth, limit)
            return expanded

        return pat.rx.sub(replace, src)
    out: list[str] = []
    size = 0
    last_end = 0
    search_pos = 0
    t = _Text(src)
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
        _checked(size, limit)
        last_end = a1
        width = 1 if search_pos < n else 0
        if search_pos + width > a1:
            search_pos += width
        elif search_pos + 1 > a1:
            search_pos += 1
        else:
            search_pos = a1
    out.append(src[last_end:])
    _checked(size + n - last_end, limit)
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
    while i < len(s) and (_is_letter(s[i]) or _is_digit(s[i]) or s[i] == "_"):
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


class _Flag:
    __slots__ = ("name", "kind", "value", "values")

    def __init__(self, name: str, kind: str, value: str = "") -> None:
        self.name = name
        self.kind = kind
        self.value = value
        self.values: list[str] = []


class _BFlags:
    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.flags: dict[str, _Flag] = {}
        self.used: dict[str, _Flag] = {}

    def add_string(self, name: str, default: str = "") -> _Flag:
        flag = _Flag(name, "string", default)
        self.flags[name] = flag
        return flag

    def parse(self) -> None:
        for a in self.args:
            if a == "--":
                return
            if not a.startswith("--"):
                raise _Error(f"arg should start with -- : {a}")
            flag_name, has_value, value = a.partition("=")
            arg = flag_name[2:]
            flag = self.flags.get(arg)
            if flag is None:
                raise _Error(_suggest(f"unknown flag: {flag_name}", arg, list(self.flags)))
            if arg in self.used and flag.kind != "strings":
                raise _Error(f"duplicate flag specified: {flag_name}")
            self.used[arg] = flag
            if not has_value:
                raise _Error(f"missing a value on flag: {flag_name}")
            flag.value = value


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _suggest(message: str, value: str, options: list[str]) -> str:
    """BuildKit's ``suggest.WrapError`` (case-sensitive): `` (did you mean x?)`` within distance 2."""
    match = ""
    best = 3
    for opt in options:
        if value == opt:
            return message
        dist = _levenshtein(value, opt)
        if dist < best:
            match = opt
            best = dist
    return f"{message} (did you mean {match}?)" if match else message


class _Request:
    def __init__(self, node: _Node) -> None:
        self.command = node.value
        self.args = _node_args(node)
        self.heredocs = node.heredocs
        self.attributes = node.attributes
        self.original = node.original
        self.flags = _BFlags(node.flags)

    @property
    def json(self) -> bool:
        return bool(self.attributes.get("json"))


def _node_args(node: _Node) -> list[str]:
    result: list[str] = []
    for arg in node.args:
        if not arg.children:
            result.append(arg.value)
        elif len(arg.children) == 1:
            result.append(arg.children[0].value)
            result.extend(_node_args(arg.children[0]))
    return result


class _Command:
    pass


class _EnvCommand(_Command):
    def __init__(self, pairs: list[list[str]]) -> None:
        self.pairs = pairs


class _LabelCommand(_EnvCommand):
    pass


class _CmdLine(_Command):
    def __init__(self, cmdline: list[str] | None, prepend_shell: bool) -> None:
        self.cmdline = cmdline
        self.prepend_shell = prepend_shell


class _CmdCommand(_CmdLine):
    pass


class _EntrypointCommand(_CmdLine):
    pass


class _HealthcheckCommand(_Command):
    def __init__(self, health: dict[str, Any]) -> None:
        self.health = health


class _ExposeCommand(_Command):
    def __init__(self, ports: list[str]) -> None:
        self.ports = ports


class _UserCommand(_Command):
    def __init__(self, user: str) -> None:
        self.user = user


class _VolumeCommand(_Command):
    def __init__(self, volumes: list[str]) -> None:
        self.volumes = volumes


class _WorkdirCommand(_Command):
    def __init__(self, path: str) -> None:
        self.path = path


class _OnbuildCommand(_Command):
    def __init__(self, expression: str) -> None:
        self.expression = expression


class _StopSignalCommand(_Command):
    def __init__(self, signal: str) -> None:
        self.signal = signal


def _parse_kvps(args: list[str], name: str) -> list[list[str]]:
    if not args:
        raise _Error(f"{name} requires at least one argument")
    if len(args) % 2:
        raise _Error(f"Bad input to {name}, too many arguments")
    pairs = []
    for j in range(0, len(args), 2):
        if args[j] == "":
            raise _Error(f"{name} names can not be blank")
        pairs.append([args[j], args[j + 1]])
    return pairs


def _handle_json_args(args: list[str], is_json: bool) -> list[str]:
    if not args:
        return []
    if is_json:
        return list(args)
    return [" ".join(args)]


def _exactly_one(req: _Request, name: str) -> None:
    if len(req.args) != 1:
        raise _Error(f"{name} requires exactly one argument")


def _at_least_one(req: _Request, name: str) -> None:
    if not req.args:
        raise _Error(f"{name} requires at least one argument")


_MINIMUM_DURATION_NS = 1_000_000  # container.MinimumDuration, 1ms
_RE_ONBUILD = re.compile(r"^[\t\n\f\r ]*ONBUILD[\t\n\f\r ]*", re.IGNORECASE)


def _opt_interval(flag: _Flag) -> int:
    if flag.value == "":
        return 0
    try:
        d = parse_go_duration_ns(flag.value)
    except ValueError as exc:
        raise _Error(str(exc)) from None
    if d == 0:
        return 0
    if d < _MINIMUM_DURATION_NS:
        raise _Error(f"Interval {go_quote(flag.name)} cannot be less than 1ms")
    return d


def _parse_healthcheck(req: _Request) -> _HealthcheckCommand:
    _at_least_one(req, "HEALTHCHECK")
    typ = _go_upper(req.args[0])
    args = req.args[1:]
    if typ == "NONE":
        if args:
            raise _Error("HEALTHCHECK NONE takes no arguments")
        return _HealthcheckCommand({"Test": [typ]})
    interval = req.flags.add_string("interval")
    timeout = req.flags.add_string("timeout")
    start_period = req.flags.add_string("start-period")
    start_interval = req.flags.add_string("start-interval")
    retries_flag = req.flags.add_string("retries")
    req.flags.parse()
    if typ == "CMD":
        cmd = _handle_json_args(args, req.json)
        if not cmd:
            raise _Error("Missing command after HEALTHCHECK CMD")
        if not req.json:
            typ = "CMD-SHELL"
        health: dict[str, Any] = {"Test": [typ, *cmd]}
    else:
        raise _Error(f"Unknown type {go_quote(typ)} in HEALTHCHECK (try CMD)")
    for key, flag in (
        ("Interval", interval),
        ("Timeout", timeout),
        ("StartPeriod", start_period),
        ("StartInterval", start_interval),
    ):
        d = _opt_interval(flag)
        if d:
            health[key] = d
    if retries_flag.value != "":
        try:
            retries = _parse_int64(retries_flag.value)
        except ValueError as exc:
            raise _Error(str(exc)) from None
        if not -(1 << 31) <= retries < (1 << 31):
            raise _Error(f"strconv.ParseInt: parsing {go_quote(retries_flag.value)}: value out of range")
        if retries < 0:
            raise _Error(f"--retries cannot be negative ({retries})")
        if retries:
            health["Retries"] = retries
    return _HealthcheckCommand(health)


def _parse_command(node: _Node) -> _Command:
    """``instructions.ParseCommand`` for the instructions a change may be."""
    req = _Request(node)
    kind = _go_lower(node.value)
    if kind in ("env", "label"):
        req.flags.parse()
        pairs = _parse_kvps(req.args, kind.upper())
        return _EnvCommand(pairs) if kind == "env" else _LabelCommand(pairs)
    if kind == "onbuild":
        _at_least_one(req, "ONBUILD")
        req.flags.parse()
        trigger = _go_upper(_trim_space(req.args[0]))
        if trigger == "ONBUILD":
            raise _Error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger in ("MAINTAINER", "FROM"):
            raise _Error(f"{trigger} isn't allowed as an ONBUILD trigger")
        expression = _RE_ONBUILD.sub("", req.original, count=1)
        for heredoc in req.heredocs:
            expression += "\n" + heredoc.content + heredoc.name
        return _OnbuildCommand(expression)
    if kind == "workdir":
        _exactly_one(req, "WORKDIR")
        req.flags.parse()
        return _WorkdirCommand(req.args[0])
    if kind in ("cmd", "entrypoint"):
        req.flags.parse()
        cmdline: list[str] | None = _handle_json_args(req.args, req.json)
        if kind == "entrypoint":
            if not cmdline:
                cmdline = None
            return _EntrypointCommand(cmdline, not req.json)
        return _CmdCommand(cmdline, not req.json)
    if kind == "healthcheck":
        return _parse_healthcheck(req)
    if kind == "expose":
        _at_least_one(req, "EXPOSE")
        req.flags.parse()
        return _ExposeCommand(sorted(req.args))
    if kind == "user":
        _exactly_one(req, "USER")
        req.flags.parse()
        return _UserCommand(req.args[0])
    if kind == "volume":
        _at_least_one(req, "VOLUME")
        req.flags.parse()
        volumes = []
        for v in req.args:
            v = _trim_space(v)
            if v == "":
                raise _Error("VOLUME specified can not be an empty string")
            volumes.append(v)
        return _VolumeCommand(volumes)
    if kind == "stopsignal":
        _exactly_one(req, "STOPSIGNAL")
        return _StopSignalCommand(req.args[0])
    raise _Error(f"unknown instruction: {node.value}")  # pragma: no cover - refused earlier


# =============================================================================================
# What the dispatchers need: ports, signals, paths


def _parse_uint16(s: str) -> int:
    if not s or not all("0" <= c <= "9" for c in s):
        raise ValueError(s)
    n = int(s)
    if n > 0xFFFF:
        raise ValueError(s)
    return n


def _parse_port_range(ports: str) -> tuple[int, int]:
    """go-connections ``nat.ParsePortRange``."""
    if ports == "":
        raise ValueError("Empty string specified for ports")
    if "-" not in ports:
        start = _parse_uint16(ports)
        return start, start
    parts = ports.split("-")
    start = _parse_uint16(parts[0])
    end = _parse_uint16(parts[1])
    if end < start:
        raise ValueError(f"Invalid range specified for the Port: {ports}")
    return start, end


def _split_host_port(hostport: str) -> str:
    """``net.SplitHostPort`` for a ``[host]:`` form: the host, or the AddrError message."""

    def err(why: str) -> ValueError:
        return ValueError(f"address {hostport}: {why}")

    i = hostport.rfind(":")
    if i < 0:
        raise err("missing port in address")
    end = hostport.find("]")
    if end < 0:
        raise err("missing ']' in address")
    if end + 1 == len(hostport):
        raise err("missing port in address")
    if end + 1 != i:
        if hostport[end + 1] == ":":
            raise err("too many colons in address")
        raise err("missing port in address")
    host = hostport[1:end]
    if "[" in hostport[1:]:
        raise err("unexpected '[' in address")
    if "]" in hostport[end + 1 :]:
        raise err("unexpected ']' in address")
    return host


def _is_ip(s: str) -> bool:
    """``net.ParseIP(s) != nil``."""
    if "%" in s:
        return False
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _parse_port_spec(raw: str) -> list[str]:
    """go-connections ``nat.ParsePortSpec``: the container ports of ``[ip:][hostPort:]port[/proto]``."""
    parts = raw.split(":")
    if len(parts) == 1:
        ip, host_port, container_port = "", "", parts[0]
    elif len(parts) == 2:
        ip, host_port, container_port = "", parts[0], parts[1]
    else:
        ip, host_port, container_port = ":".join(parts[:-2]), parts[-2], parts[-1]
    port, _, proto = container_port.partition("/")
    if port == "":
        proto = ""
    elif proto == "":
        proto = "tcp"
    container_port = port
    proto = _go_lower(proto)
    if proto not in ("tcp", "udp", "sctp"):
        raise _Error("invalid proto: " + proto)
    if ip and ip[0] == "[":
        try:
            ip = _split_host_port(ip + ":")
        except ValueError as exc:
            raise _Error(f"invalid IP address {ip}: {exc}") from None
    if ip and not _is_ip(ip):
        raise _Error("invalid IP address: " + ip)
    if container_port == "":
        raise _Error(f"no port specified: {raw}<empty>")
    try:
        start, end = _parse_port_range(container_port)
    except ValueError:
        raise _Error("invalid containerPort: " + container_port) from None
    if host_port:
        try:
            host_start, host_end = _parse_port_range(host_port)
        except ValueError:
            raise _Error("invalid hostPort: " + host_port) from None
        if end - start != host_end - host_start and end != start:
            raise _Error(
                f"invalid ranges specified for container and host Ports: {container_port} and {host_port}"
            )
    return [f"{p}/{proto}" for p in range(start, end + 1)]


# moby/sys/signal signal_linux.go
_SIGNALS = frozenset(
    [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
        "RTMIN", "RTMAX",
        *(f"RTMIN+{i}" for i in range(1, 16)),
        *(f"RTMAX-{i}" for i in range(1, 15)),
    ]
)  # fmt: skip


def _check_signal(raw: str) -> None:
    """moby/sys/signal ``ParseSignal``: a nonzero number, or a name with or without ``SIG``."""
    digits = raw[1:] if raw[:1] in ("+", "-") else raw
    if digits and all("0" <= c <= "9" for c in digits) and -(1 << 63) <= int(raw) < (1 << 63):
        if int(raw) == 0:
            raise _Error(f"invalid signal: {raw}")
        return
    name = _go_upper(raw)
    name = name[3:] if name.startswith("SIG") else name
    if name not in _SIGNALS:
        raise _Error(f"invalid signal: {raw}")


def _clean_path(p: str) -> str:
    """Go's ``path.Clean``."""
    if p == "":
        return "."
    rooted = p[0] == "/"
    n = len(p)
    out: list[str] = []
    r = 0
    dotdot = 0
    if rooted:
        out.append("/")
        r = dotdot = 1
    while r < n:
        if p[r] == "/":
            r += 1
        elif p[r] == "." and (r + 1 == n or p[r + 1] == "/"):
            r += 1
        elif p[r] == "." and p[r + 1] == "." and (r + 2 == n or p[r + 2] == "/"):
            r += 2
            if len(out) > dotdot:
                w = len(out) - 1
                while w > dotdot and out[w] != "/":
                    w -= 1
                del out[w:]
            elif not rooted:
                if out:
                    out.append("/")
                out += [".", "."]
                dotdot = len(out)
        else:
            if (rooted and len(out) != 1) or (not rooted and len(out) != 0):
                out.append("/")
            while r < n and p[r] != "/":
                out.append(p[r])
                r += 1
    return "".join(out) or "."


def _normalize_workdir(current: str, requested: str) -> str:
    """dispatchers_unix.go ``normalizeWorkdir``."""
    if requested == "":
        raise _Error("cannot normalize nothing")
    if not requested.startswith("/"):
        return _clean_path("/".join(e for e in ("/", current, requested) if e))
    return _clean_path(requested)


# =============================================================================================
# The dispatchers (builder/dockerfile/dispatchers.go) on a config dict


def _str_slice(value: Any) -> list[str] | None:
    """A ``strslice.StrSlice`` as read from JSON: null, a string, or a list of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return list(value)


class _State:
    def __init__(self, config: dict[str, Any], os: str, escape: str) -> None:
        self.c = config
        self.os = os
        self.lex = _Lex(escape)
        self.cmd_set = False
        self.expand_env: list[str] | None = None  # the builder expands against Env + build args
        self.expanded_ports: list[str] = []

    def shell(self) -> list[str]:
        shell = _str_slice(self.c.get("Shell"))
        if not shell:
            return ["/bin/sh", "-c"]  # defaultShellForOS on a Unix daemon
        return list(shell)

    def resolve(self, cmd: _CmdLine) -> list[str] | None:
        result = cmd.cmdline
        if cmd.prepend_shell and result is not None:
            result = self.shell() + result
        return result

    def set_args_escaped(self, value: bool) -> None:
        if value:
            self.c["ArgsEscaped"] = True
        else:
            self.c.pop("ArgsEscaped", None)  # omitempty: false is absent

    def dispatch(self, cmd: _Command) -> None:
        c = self.c
        if isinstance(cmd, _StopSignalCommand) and self.os == "windows":
            raise _Error("The daemon on this platform does not support the command stopsignal")
        envs = _Env(self.expand_env if self.expand_env is not None else (c.get("Env") or ()))

        def expand(word: str) -> str:
            return self.lex.process_word(word, envs)

        if isinstance(cmd, _EnvCommand):  # ENV and LABEL
            for pair in cmd.pairs:
                pair[0] = expand(pair[0])
                pair[1] = expand(pair[1])
        elif isinstance(cmd, _WorkdirCommand):
            cmd.path = expand(cmd.path)
        elif isinstance(cmd, _UserCommand):
            cmd.user = expand(cmd.user)
        elif isinstance(cmd, _VolumeCommand):
            cmd.volumes = [expand(v) for v in cmd.volumes]
        elif isinstance(cmd, _StopSignalCommand):
            cmd.signal = expand(cmd.signal)

        if isinstance(cmd, _LabelCommand):
            labels = c.get("Labels")
            labels = {} if labels is None else dict(labels)
            for key, value in cmd.pairs:
                labels[key] = value
            c["Labels"] = labels
        elif isinstance(cmd, _EnvCommand):
            env = list(c.get("Env") or ())
            index: dict[str, int] = {}  # the first entry of each key, which a new value replaces
            for i, existing in enumerate(env):
                index.setdefault(existing.partition("=")[0], i)
            for key, value in cmd.pairs:
                entry = key + "=" + value
                i = index.get(key, -1)
                if i >= 0:
                    env[i] = entry
                else:
                    index[key] = len(env)
                    env.append(entry)
            c["Env"] = env
        elif isinstance(cmd, _OnbuildCommand):
            c["OnBuild"] = [*(c.get("OnBuild") or ()), cmd.expression]
        elif isinstance(cmd, _WorkdirCommand):
            c["WorkingDir"] = _normalize_workdir(c.get("WorkingDir") or "", cmd.path)
        elif isinstance(cmd, _CmdCommand):
            c["Cmd"] = self.resolve(cmd)
            self.set_args_escaped(False)
            if cmd.cmdline:
                self.cmd_set = True
        elif isinstance(cmd, _EntrypointCommand):
            c["Entrypoint"] = self.resolve(cmd)
            self.set_args_escaped(False)
            if not self.cmd_set:
                c["Cmd"] = None
        elif isinstance(cmd, _HealthcheckCommand):
            c["Healthcheck"] = copy.deepcopy(cmd.health)
        elif isinstance(cmd, _ExposeCommand):
            ports: list[str] = []
            for p in cmd.ports:
                ports.extend(self.lex.process_words(p, envs))
            self.expanded_ports = ports
            exposed_ports: list[str] = []
            for spec in ports:
                exposed_ports.extend(_parse_port_spec(spec))
            exposed = c.get("ExposedPorts")
            exposed = {} if exposed is None else dict(exposed)
            for port in exposed_ports:
                exposed.setdefault(port, {})
            if exposed:
                c["ExposedPorts"] = exposed
            else:
                c.pop("ExposedPorts", None)  # omitempty: an empty set is absent
        elif isinstance(cmd, _UserCommand):
            c["User"] = cmd.user
        elif isinstance(cmd, _VolumeCommand):
            volumes = c.get("Volumes")
            volumes = {} if volumes is None else dict(volumes)
            for v in cmd.volumes:
                if v == "":
                    raise _Error("VOLUME specified can not be an empty string")
                volumes[v] = {}
            c["Volumes"] = volumes
        elif isinstance(cmd, _StopSignalCommand):
            _check_signal(cmd.signal)
            c["StopSignal"] = cmd.signal


# =============================================================================================
# The entry point


def apply_changes(config: Mapping[str, Any] | None, changes: Iterable[str] | str, os: str = "linux") -> dict[str, Any]:
    """dockerd's ``BuildFromConfig``: ``config`` with the Dockerfile instructions ``changes`` applied.

    ``config`` is a container config in Docker's JSON names (``Cmd``, ``Entrypoint``, ``Env``,
    ``ExposedPorts``, ``Labels``, ``OnBuild``, ``User``, ``Volumes``, ``WorkingDir``,
    ``StopSignal``, ``Healthcheck``, ``Shell``…); it is not modified. ``changes`` is the list of the
    ``changes`` query parameters; each may hold several lines (instructions, line continuations,
    comments). ``os`` is the platform of the image (``windows`` refuses ``STOPSIGNAL``).

    The result is a new dict: fields Go would leave nil are ``None`` (``Cmd`` cleared by
    ``ENTRYPOINT``); ``ArgsEscaped``, which ``CMD`` and ``ENTRYPOINT`` reset, is dropped when false,
    and ``ExposedPorts`` when an ``EXPOSE`` expanded to nothing leaves it empty (both are
    ``omitempty``). With no changes the config comes back as it was (copied).

    Raises :class:`InvalidArgument` with dockerd's message: a parse error
    (``ENV must have two arguments``), ``from is not a valid change command``, an instruction's
    argument error (``unknown flag: --foo``), or a dispatch error (``invalid signal: FOO``).
    """
    result: dict[str, Any] = copy.deepcopy(dict(config or {}))
    if isinstance(changes, str):
        changes = [changes]
    changes = list(changes)
    if not changes:
        return result
    try:
        nodes, escape = _parse("\n".join(changes))
        for node in nodes:
            if _go_lower(node.value) not in VALID_CHANGE_COMMANDS:
                raise _Error(f"{_go_lower(node.value)} is not a valid change command")  # BuildKit's node.Value
        commands = [_parse_command(node) for node in nodes]
        state = _State(result, os, escape)
        for cmd in commands:
            state.dispatch(cmd)
    except _Error as exc:
        raise InvalidArgument(str(exc)) from None
    return result


# =============================================================================================
# The classic builder's metadata steps (``POST /build``)

#: The instructions :func:`builder_dispatch` applies (the ones that only change the config).
BUILDER_METADATA_COMMANDS = VALID_CHANGE_COMMANDS | {"shell", "maintainer"}


def _go_quote_rune(r: int) -> str:
    """Go's ``strconv.QuoteRune`` (what ``%q`` prints for an integer)."""
    if r > 0x10FFFF or 0xD800 <= r <= 0xDFFF or r < 0:
        r = 0xFFFD
    ch = chr(r)
    named = {0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v",
             0x27: "\\'", 0x5C: "\\\\"}
    if r in named:
        return "'" + named[r] + "'"
    if ch.isprintable():
        return "'" + ch + "'"
    if r < 0x20 or r == 0x7F:
        return f"'\\x{r:02x}'"
    return f"'\\u{r:04x}'" if r < 0x10000 else f"'\\U{r:08x}'"


def go_duration(ns: int) -> str:
    """Go's ``time.Duration.String``: ``1m30s``, ``1.5s``, ``100ms``, ``0s``."""

    def frac(v: int, prec: int) -> tuple[int, str]:
        whole, part = divmod(v, 10**prec)
        digits = f"{part:0{prec}d}".rstrip("0")
        return whole, ("." + digits if digits else "")

    neg, u = ns < 0, abs(ns)
    if u == 0:
        return "0s"
    if u < 1_000_000_000:
        if u < 1_000:
            out = f"{u}ns"
        elif u < 1_000_000:
            whole, f = frac(u, 3)
            out = f"{whole}{f}µs"
        else:
            whole, f = frac(u, 6)
            out = f"{whole}{f}ms"
    else:
        secs, f = frac(u, 9)
        out = f"{secs % 60}{f}s"
        minutes = secs // 60
        if minutes:
            out = f"{minutes % 60}m" + out
            if minutes // 60:
                out = f"{minutes // 60}h" + out
    return ("-" if neg else "") + out


def _go_q_list(items: Iterable[str] | None) -> str:
    """``%q`` of a Go ``[]string``: ``["a" "b"]``."""
    return "[" + " ".join(go_quote(i) for i in (items or [])) + "]"


def _health_text(h: Mapping[str, Any] | None) -> str:
    """``%q`` of a ``*container.HealthConfig`` as dockerd 20.10 prints it in the HEALTHCHECK history."""
    if h is None:
        return "<nil>"
    fields = [_go_q_list(h.get("Test")), go_quote(go_duration(int(h.get("Interval") or 0))),
              go_quote(go_duration(int(h.get("Timeout") or 0))),
              go_quote(go_duration(int(h.get("StartPeriod") or 0)))]
    if h.get("StartInterval"):  # a field dockerd 20.10 did not have
        fields.append(go_quote(go_duration(int(h["StartInterval"]))))
    fields.append(_go_quote_rune(int(h.get("Retries") or 0)))
    return "&{" + " ".join(fields) + "}"


class Dispatched:
    """What one metadata instruction did: the new ``config``, the ``message`` dockerd commits it with (the
    history's ``/bin/sh -c #(nop)  <message>``) and whether a CMD was set in the stage (``cmd_set``)."""

    __slots__ = ("config", "message", "cmd_set", "maintainer")

    def __init__(self, config: dict[str, Any], message: str, cmd_set: bool, maintainer: str | None) -> None:
        self.config = config
        self.message = message
        self.cmd_set = cmd_set
        self.maintainer = maintainer


# go-connections' port errors as dockerd 20.10 words them (newer releases lower-cased them)
_PORT_ERRORS_2010 = (("invalid proto: ", "Invalid proto: "), ("invalid containerPort: ", "Invalid containerPort: "),
                     ("invalid hostPort: ", "Invalid hostPort: "), ("no port specified: ", "No port specified: "),
                     ("invalid ranges specified", "Invalid ranges specified"))


def _docker_2010_words(message: str) -> str:
    for new, old in _PORT_ERRORS_2010:
        if message.startswith(new):
            return old + message[len(new):]
    return message


def builder_dispatch(config: Mapping[str, Any] | None, instruction: "str | _Node", *,
                     env: Iterable[str] | None = None, escape: str = "\\", cmd_set: bool = False) -> Dispatched:
    """One metadata instruction of a Dockerfile (``ENV``, ``LABEL``, ``CMD``, ``ENTRYPOINT``, ``EXPOSE``,
    ``VOLUME``, ``WORKDIR``, ``USER``, ``STOPSIGNAL``, ``HEALTHCHECK``, ``ONBUILD``, ``SHELL``,
    ``MAINTAINER``) applied as the classic builder's dispatcher applies it (``dispatchers.go``);
    ``instruction`` is its text or a node of the parsed Dockerfile.

    Words are expanded against ``env`` (the config's ``Env`` plus the stage's build args, as dockerd's
    ``dispatch``), or the config's ``Env`` if it is not given. ``cmd_set`` says whether a CMD with arguments
    came earlier in the stage (an ``ENTRYPOINT`` then keeps ``Cmd``). The commit message is dockerd's, with its
    Go formatting: ``CMD ["a" "b"]`` (``%q``), ``VOLUME [/a /b]`` and ``SHELL [/bin/sh -c]`` (``%v``),
    ``EXPOSE`` with the sorted ports, ``HEALTHCHECK &{["CMD-SHELL" "x"] "5s" "3s" "0s" '\\x02'}``.

    Raises :class:`InvalidArgument` with dockerd's message.
    """
    result: dict[str, Any] = copy.deepcopy(dict(config or {}))
    try:
        if isinstance(instruction, _Node):
            nodes = [instruction]
        else:
            nodes, _ = _parse(instruction if escape == "\\" else f"# escape={escape}\n{instruction}")
        if len(nodes) != 1:
            raise _Error("expected exactly one instruction")
        node = nodes[0]
        kind = _go_lower(node.value)
        if kind not in BUILDER_METADATA_COMMANDS:
            raise _Error(f"{node.value} is not a metadata instruction")
        if kind == "maintainer":
            req = _Request(node)
            _exactly_one(req, "MAINTAINER")
            req.flags.parse()
            return Dispatched(result, "MAINTAINER " + req.args[0], cmd_set, req.args[0])
        if kind == "shell":
            req = _Request(node)
            req.flags.parse()
            if not req.json:
                raise _Error("SHELL requires the arguments to be in JSON form")
            if not req.args:
                raise _Error("SHELL requires at least one argument")
            result["Shell"] = list(req.args)
            return Dispatched(result, "SHELL [" + " ".join(req.args) + "]", cmd_set, None)
        cmd = _parse_command(node)
        state = _State(result, "linux", escape)
        state.cmd_set = cmd_set
        state.expand_env = list(env) if env is not None else None
        state.dispatch(cmd)
    except _Error as exc:
        raise InvalidArgument(_docker_2010_words(str(exc))) from None
    c = state.c
    if isinstance(cmd, _LabelCommand):
        message = "LABEL" + "".join(f" {k}={v}" for k, v in cmd.pairs)
    elif isinstance(cmd, _EnvCommand):
        message = "ENV" + "".join(f" {k}={v}" for k, v in cmd.pairs)
    elif isinstance(cmd, _CmdCommand):
        message = "CMD " + _go_q_list(c.get("Cmd"))
    elif isinstance(cmd, _EntrypointCommand):
        message = "ENTRYPOINT " + _go_q_list(c.get("Entrypoint"))
    elif isinstance(cmd, _ExposeCommand):
        message = "EXPOSE " + " ".join(state.expanded_ports)
    elif isinstance(cmd, _VolumeCommand):
        message = "VOLUME [" + " ".join(cmd.volumes) + "]"
    elif isinstance(cmd, _WorkdirCommand):
        message = "WORKDIR " + str(c.get("WorkingDir") or "")
    elif isinstance(cmd, _UserCommand):
        message = "USER " + cmd.user
    elif isinstance(cmd, _StopSignalCommand):
        message = "STOPSIGNAL " + cmd.signal
    elif isinstance(cmd, _HealthcheckCommand):
        message = "HEALTHCHECK " + _health_text(c.get("Healthcheck"))
    elif isinstance(cmd, _OnbuildCommand):
        message = "ONBUILD " + cmd.expression
    else:  # pragma: no cover - every metadata command is listed above
        message = node.original
    return Dispatched(c, message, state.cmd_set, None)


def parse_dockerfile(data: bytes, name: str = "Dockerfile",
                     cancel: "threading.Event | None" = None) -> tuple[list[_Node], str]:
    """A build's Dockerfile: refused past :data:`MAX_DOCKERFILE_SIZE` (BuildKit's words), parsed, and every
    instruction checked as dockerd's ``instructions.Parse`` checks it (:func:`validate_instruction`). Linear in
    the file's size; meant to run off the event loop, ``cancel`` (an event set from another thread) stopping it
    with :class:`ParseCancelled`. Raises :class:`InvalidArgument`."""
    if len(data) > MAX_DOCKERFILE_SIZE:
        raise InvalidArgument(f"{name} exceeds maximum allowed size of {MAX_DOCKERFILE_SIZE} bytes")
    if not data:  # dockerd's readAndParseDockerfile, before the parser
        raise InvalidArgument(f"the Dockerfile ({name}) cannot be empty")
    with _collector_paused():
        try:
            nodes, escape = _parse(data.decode("utf-8", errors="replace"), cancel)
        except _Error as exc:  # the parser's own errors, wrapped by readAndParseDockerfile
            raise InvalidArgument(f"failed to parse {name}: {exc}") from exc
        for i, node in enumerate(nodes):
            if cancel is not None and not i % 1024 and cancel.is_set():
                raise ParseCancelled()
            validate_instruction(node)
    return nodes, escape


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a Dockerfile is parsed: a large one makes millions of
    objects (no cycles among them), and the collector's passes over them would double the time. Process-wide,
    counted across threads parsing at once; the collector is left as it was found."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


def check_env_size(env: Iterable[str], where: str) -> None:
    """Refuse an environment of more than :data:`MAX_ENV_SIZE` characters (``KEY=value`` entries): ``where`` names
    the instruction that made it."""
    total = 0
    for entry in env:
        total += len(entry)
        if total > MAX_ENV_SIZE:
            raise InvalidArgument(f"{where}: the environment and build arguments of the stage exceed the maximum "
                                  f"allowed size of {MAX_ENV_SIZE} characters")


#: The flags each instruction takes (``instructions.Parse``); RUN's are refused when dispatched, as dockerd's
#: classic builder does (they need BuildKit).
_BUILDER_FLAGS: dict[str, tuple[str, ...]] = {
    "from": ("platform",), "copy": ("from", "chown", "chmod"), "add": ("chown", "chmod"),
    "run": ("mount", "network", "security"),
}
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")


def validate_instruction(node: _Node) -> None:
    """The checks dockerd 20.10's ``instructions.Parse`` makes on every instruction of a Dockerfile before the
    build starts (flags, argument counts, SHELL's JSON form, ONBUILD triggers, stage names). Raises
    :class:`InvalidArgument` with ``dockerfile parse error line N: <message>``."""
    kind = _go_lower(node.value)
    try:
        if kind in VALID_CHANGE_COMMANDS:
            _parse_command(node)
            return
        req = _Request(node)
        if kind == "healthcheck":
            return
        for name in _BUILDER_FLAGS.get(kind, ()):
            req.flags.add_string(name)
        req.flags.parse()
        if kind == "from":
            if len(req.args) not in (1, 3) or (len(req.args) == 3 and _go_lower(req.args[1]) != "as"):
                raise _Error("FROM requires either one or three arguments")
            if len(req.args) == 3 and not _STAGE_NAME.match(_go_lower(req.args[2])):
                raise _Error(f"invalid name for build stage: {go_quote(req.args[2])}, name can't start with a "
                             "number or contain symbols")
        elif kind in ("copy", "add"):
            if len(req.args) < 2:
                raise _Error(f"{kind.upper()} requires at least two arguments, but only one was provided. "
                             "Destination could not be determined")
        elif kind == "arg":
            if not req.args:
                raise _Error("ARG requires at least one argument")
        elif kind == "maintainer":
            _exactly_one(req, "MAINTAINER")
        elif kind == "shell":
            if not req.json:
                raise _Error("SHELL requires the arguments to be in JSON form")
            if not req.args:
                raise _Error("SHELL requires at least one argument")
        elif kind != "run":
            raise _Error(f"unknown instruction: {_go_upper(node.value)}")
    except _Error as exc:
        msg = str(exc)
        m = re.match(r"unknown flag: --([^ ]+)", msg)
        if m:
            msg = f"Unknown flag: {m.group(1)}"  # dockerd 20.10's words
        raise InvalidArgument(f"dockerfile parse error line {node.start_line}: {msg}") from None
