"""BuildKit's Dockerfile parser (``frontend/dockerfile/parser``): lines, continuations, directives, the
per-instruction argument parsers, JSON forms and heredocs, into a tree of :class:`Node`. Kept whole (a little
over 600 lines): it is one Go file's state machine, and splitting it would scatter its helpers."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence

from ..timestamps import go_quote
from .shell import EMPTY_ENV, Lex
from .text import GO_SPACE, RE_WS, DockerfileError, from_bytes, go_lower, trim_left_space, trim_space

# =============================================================================================
# BuildKit's Dockerfile parser (frontend/dockerfile/parser)


class Heredoc:
    """A heredoc of an instruction: its delimiter ``name``, whether it is expanded and chomped, its ``content``."""

    __slots__ = ("name", "expand", "chomp", "content")

    def __init__(self, name: str, expand: bool, chomp: bool) -> None:
        self.name = name
        self.expand = expand
        self.chomp = chomp
        self.content = ""


class Node:
    """A parse-tree node; ``args`` is Go's ``Next`` chain as a list. Empty sequences are the shared empty tuple
    and a node's fields are assigned, never appended to: a Dockerfile of a million lines makes millions of
    nodes, and every list the garbage collector tracks slows each of its passes."""

    __slots__ = ("value", "args", "children", "attributes", "original", "flags", "heredocs", "start_line")

    def __init__(self, value: str = "", children: Sequence[Node] = ()) -> None:
        self.value = value
        self.args: Sequence[Node] = ()
        self.children = children
        self.attributes: dict[str, bool] = {}  # an empty dict is not tracked by the collector
        self.original = ""
        self.flags: Sequence[str] = ()
        self.heredocs: Sequence[Heredoc] = ()
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
            raise DockerfileError(f"invalid escape token '{s}' does not match ` or \\")
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
            raise DockerfileError(f"only one {key} parser directive can be used")
        self.seen.add(key)
        if key == "escape":
            self.set_escape(m.group(2))
        return True


_SPACE_NO_NL = "".join(re.escape(c) for c in sorted(GO_SPACE - {"\n"}))
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
    return trim_left_space(line).startswith("#")


def _process_line(d: _Directives, token: str, strip_left: bool) -> str:
    token = _trim_newline(token)
    if strip_left:
        token = trim_left_space(token)
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


def parse(text: str, cancel: threading.Event | None = None) -> tuple[list[Node], str]:
    """``parser.Parse``: the instructions of ``text`` and the escape token. Linear in the text; ``cancel`` (set
    from another thread) stops it between instructions."""
    d = _Directives()
    lines = _Lines(text)
    children: list[Node] = []
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
            if trim_left_space(_trim_newline(nb)) == "":
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
                    raise DockerfileError("unterminated heredoc")
                heredoc.content = content
                heredocs.append(heredoc)
            child.heredocs = heredocs
        children.append(child)
    if not children:
        raise DockerfileError("file with no instructions")
    if lines.too_long:
        raise DockerfileError(f"dockerfile line greater than max allowed size of {_MAX_LINE - 1}")
    return children, d.escape


def _new_node_from_line(line: str, d: _Directives) -> Node:
    cmd, flags, args = _split_command(line)
    fn = _LINE_PARSERS.get(go_lower(cmd), _parse_ignore)
    nodes, attrs = fn(args, d)
    node = Node(cmd)
    node.original = line
    node.flags = flags
    node.args = nodes
    node.attributes = attrs
    return node


def _split_command(line: str) -> tuple[str, list[str], str]:
    cmdline = RE_WS.split(trim_space(line), maxsplit=1)
    args = ""
    flags: list[str] = []
    if len(cmdline) == 2:
        args, flags = _extract_builder_flags(cmdline[1])
    return cmdline[0], flags, trim_space(args)


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
            if chr(ch) in GO_SPACE:
                pos += 1
                continue
            if ch != 0x2D or pos + 1 == n or b[pos + 1] != 0x2D:
                return from_bytes(b[pos:]), words
            phase = in_word
        if phase in (in_word, in_quote) and pos == n:
            w = "".join(word)
            if w != "--" and (blank_ok or w):
                words.append(w)
            break
        if phase == in_word:
            if chr(ch) in GO_SPACE:
                w = "".join(word)
                phase = in_spaces
                if w == "--":
                    return from_bytes(b[pos:]), words
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
        elif ch == quote:  # in_quote: its end
            phase = in_word
            pos += 1
            continue
        if ch == 0x5C:  # in a word or a quote: the next byte as it is; a trailing one ends the quote
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

_LineResult = tuple[list[Node], dict[str, bool]]


def _parse_ignore(rest: str, d: _Directives) -> _LineResult:
    return [Node()], {}


def _parse_sub_command(rest: str, d: _Directives) -> _LineResult:
    if rest == "":
        return [], {}
    child = _new_node_from_line(rest, d)
    return [Node(children=[child])], {}


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
            if ch in GO_SPACE:
                pos += 1
                continue
            phase = in_word
        if phase in (in_word, in_quote) and at_end:
            if blank_ok or word:
                words.append("".join(word))
            break
        if phase == in_word:
            if ch in GO_SPACE:
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


def _parse_name_val(rest: str, key: str, d: _Directives) -> list[Node]:
    words = _parse_words(rest, d)
    if not words:
        return []
    if "=" not in words[0]:  # the legacy form: KEY name value
        parts = RE_WS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise DockerfileError(f"{key} must have two arguments")
        return [Node(parts[0]), Node(parts[1])]
    nodes: list[Node] = []
    for word in words:
        if "=" not in word:
            raise DockerfileError(f"Syntax error - can't find = in {go_quote(word)}. Must be of the form: name=value")
        k, _, v = word.partition("=")
        nodes += [Node(k), Node(v)]
    return nodes


def _parse_env(rest: str, d: _Directives) -> _LineResult:
    return _parse_name_val(rest, "ENV", d), {}


def _parse_label(rest: str, d: _Directives) -> _LineResult:
    return _parse_name_val(rest, "LABEL", d), {}


def _parse_name_or_name_val(rest: str, d: _Directives) -> _LineResult:
    return [Node(w) for w in _parse_words(rest, d)], {}


def _parse_strings_whitespace_delimited(rest: str, d: _Directives) -> _LineResult:
    if rest == "":
        return [], {}
    return [Node(s) for s in RE_WS.split(rest)], {}


def _parse_string(rest: str, d: _Directives) -> _LineResult:
    if rest == "":
        return [], {}
    return [Node(rest)], {}


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
    rest = trim_left_space(rest)
    if not rest.startswith("["):
        raise _NotJSON
    try:
        doc = json.loads(rest, parse_float=_json_number, parse_int=_json_int, parse_constant=_json_constant)
    except (ValueError, _NotJSON, RecursionError):
        raise _NotJSON from None
    if not isinstance(doc, list):
        raise _NotJSON
    nodes: list[Node] = []
    for item in doc:
        if not isinstance(item, str):
            raise DockerfileError(_NOT_STRING_ARRAY)
        nodes.append(Node(_fix_surrogates(item)))
    return nodes, {"json": True}


def _parse_maybe_json(rest: str, d: _Directives) -> _LineResult:
    if rest == "":
        return [], {}
    try:
        return _parse_json(rest)
    except _NotJSON:
        return [Node(rest)], {}


def _parse_maybe_json_to_list(rest: str, d: _Directives) -> _LineResult:
    try:
        return _parse_json(rest)
    except _NotJSON:
        return _parse_strings_whitespace_delimited(rest, d)


def _parse_health_config(rest: str, d: _Directives) -> _LineResult:
    # Go walks the bytes here, one byte taken as one rune.
    b = rest.encode("utf-8", "surrogatepass")
    sep = 0
    while sep < len(b) and chr(b[sep]) not in GO_SPACE:
        sep += 1
    nxt = sep
    while nxt < len(b) and chr(b[nxt]) in GO_SPACE:
        nxt += 1
    if sep == 0:
        return [], {}
    typ = Node(from_bytes(b[:sep]))
    cmd, attrs = _parse_maybe_json(from_bytes(b[nxt:]), d)
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


def _can_contain_heredoc(node: Node) -> bool:
    if go_lower(node.value) == "onbuild" and node.args and node.args[0].children:
        node = node.args[0].children[0]
    if go_lower(node.value) not in ("add", "copy", "run"):
        return False
    return not node.attributes.get("json", False)


def parse_heredoc(src: str) -> Heredoc | None:
    """BuildKit's ``ParseHeredoc``: the heredoc a word (``<<EOF``, ``<<-"EOF"``) starts, or None."""
    m = _RE_HEREDOC.match(src)
    if m is None:
        return None
    chomp = m.group(2) == "-"
    rest = m.group(3)
    if rest == "":
        return None
    lex = Lex("\\")
    lex.skip_unset_env = True
    words = lex.process_words(rest, EMPTY_ENV)
    if len(words) != 1:
        return None
    lex.raw_quotes = True
    words_raw = lex.process_words(rest, EMPTY_ENV)
    if len(words_raw) != len(words):
        raise DockerfileError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    word = words[0]
    count = word.count("'") + word.count('"')
    raw = words_raw[0]
    raw_count = raw.count("'") + raw.count('"')
    return Heredoc(word, count == raw_count, chomp)


def _heredocs_from_line(line: str) -> list[Heredoc]:
    lex = Lex("\\")
    lex.raw_quotes = True
    lex.raw_escapes = True
    lex.skip_unset_env = True
    try:
        words = lex.process_words(line, EMPTY_ENV)
    except DockerfileError:
        words = []
    docs = []
    for word in words:
        heredoc = parse_heredoc(word)
        if heredoc is not None:
            docs.append(heredoc)
    return docs


# =============================================================================================
# BuildKit's shell lexer (frontend/dockerfile/shell/lex.go)
