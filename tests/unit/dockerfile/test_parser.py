"""BuildKit's Dockerfile parser: lines, continuations, comments, directives, heredocs, and its bounds."""

from __future__ import annotations

import gc
import threading
import time

import pytest
from changes_helpers import apply, error

from dockwright.dockerfile import (
    MAX_DOCKERFILE_SIZE,
    DockerfileError,
    ParseCancelled,
    parse,
    parse_dockerfile,
)
from dockwright.errors import InvalidArgument

SH = ["/bin/sh", "-c"]



# -- parsing: lines, continuations, comments, directives ----------------------------------------


def test_each_change_may_hold_several_lines():
    assert apply(["USER a\nWORKDIR /w\n\n", "LABEL x=y"]) == {"User": "a", "WorkingDir": "/w", "Labels": {"x": "y"}}


@pytest.mark.parametrize(
    ("change", "cmd"),
    [
        ("CMD echo \\\n  hi", [*SH, "echo   hi"]),
        ("CMD echo\\\nhi", [*SH, "echohi"]),
        ("CMD echo \\  \n hi", [*SH, "echo  hi"]),
        ("CMD echo \\\n# a comment\n hi", [*SH, "echo  hi"]),
        ("CMD echo \\\n\n hi", [*SH, "echo  hi"]),  # empty continuation line
        ("CMD echo \\\\", [*SH, "echo \\\\"]),  # not a continuation: the \ is escaped
        ("CMD echo hi\r\n", [*SH, "echo hi"]),
        ("   CMD    echo hi   ", [*SH, "echo hi"]),
        ("\ufeffCMD echo hi", [*SH, "echo hi"]),
        ("# comment\nCMD x", [*SH, "x"]),
        ("  # indented comment\nCMD x", [*SH, "x"]),
        ("CMD echo #not a comment", [*SH, "echo #not a comment"]),
        ("# escape=`\nCMD a `\n b", [*SH, "a  b"]),
        ("# escape=`\nCMD a \\\n", [*SH, "a \\"]),
        ("#syntax=docker/dockerfile:1\n# escape = `\nCMD a `\nb", [*SH, "a b"]),
        ("CMD a \\", [*SH, "a"]),  # a continuation at the end of the text
    ],
)
def test_lines(change, cmd):
    assert apply([change])["Cmd"] == cmd


def test_escape_directive_must_come_first():
    # once an instruction is seen "# escape=`" is a comment: "b" is an instruction of its own
    assert error(["CMD x\n# escape=`\nCMD a `\nb"]) == "b is not a valid change command"
    assert apply(["CMD x\n# escape=`\nCMD a `"])["Cmd"] == [*SH, "a `"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "file with no instructions"),
        ("\n\n", "file with no instructions"),
        ("# just a comment", "file with no instructions"),
        ("# escape=x\nCMD a", "invalid escape token 'x' does not match ` or \\"),
        ("# escape=`\n# escape=\\\nCMD a", "only one escape parser directive can be used"),
        ("# syntax=a\n# SYNTAX=b\nCMD a", "only one syntax parser directive can be used"),
        ("CMD " + "a" * 70000, "file with no instructions"),  # the scan stops before any line
        ("USER a\nCMD " + "a" * 70000, "dockerfile line greater than max allowed size of 65535"),
        ("USER a\nCMD " + "a" * 65532, "dockerfile line greater than max allowed size of 65535"),
        ("ENV a\nCMD " + "a" * 70000, "ENV must have two arguments"),
    ],
)
def test_parse_errors(text, message):
    assert error([text]) == message


def test_empty_change_strings():
    assert error([""]) == "file with no instructions"
    assert apply(["", "USER a"]) == {"User": "a"}


def test_long_line_just_below_the_limit():
    out = apply(["LABEL a=" + "b" * (65535 - len("LABEL a="))])
    assert len(out["Labels"]["a"]) == 65535 - len("LABEL a=")


def test_parse_tree():
    nodes, escape = parse("ENV a=b c=d\nONBUILD RUN x\nHEALTHCHECK --interval=5s CMD [\"a\"]")
    assert escape == "\\"
    assert [n.value for n in nodes] == ["ENV", "ONBUILD", "HEALTHCHECK"]
    assert [a.value for a in nodes[0].args] == ["a", "b", "c", "d"]
    assert nodes[1].args[0].children[0].value == "RUN"
    assert nodes[2].flags == ["--interval=5s"]
    assert nodes[2].attributes == {"json": True}


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def test_continuation_lines_parse_in_linear_time():
    data = ("FROM b\nRUN true \\\n" + "  && true \\\n" * 200_000 + "  && true\n").encode()
    (nodes, _), took = _timed(lambda: parse_dockerfile(data))
    assert took < 2.0
    assert nodes[1].original == "RUN true " + "  && true " * 200_000 + "  && true"
    data = b"FROM b\n" + b"# comment\n\n   \n" * 500_000 + b"LABEL a=b \\\n" + b"\\\n" * 1_000_000 + b"c=d\n"
    (nodes, _), took = _timed(lambda: parse_dockerfile(data))
    assert took < 3.0
    assert [(n.value, n.start_line) for n in nodes] == [("FROM", 1), ("LABEL", 1_500_002)]
    assert [a.value for a in nodes[1].args] == ["a", "b", "c", "d"]


@pytest.mark.parametrize("text,instructions", [
    # blank and comment lines inside a continuation are skipped, a comment ending in the escape too
    ("FROM a\nRUN x \\\n# c \\\n\n  \t\ny \\\n  z\nRUN w\n", [("RUN x y   z", 2), ("RUN w", 8)]),
    # an escaped escape ends the instruction; carriage returns before the newline are dropped
    ("FROM a\nRUN x \\\\\nRUN y \\ \t\r\r\nz\r\n", [("RUN x \\\\", 2), ("RUN y z", 3)]),
    # the end of the file while continuing
    ("FROM a\nRUN x \\\n  y \\\n\n# c\n", [("RUN x   y ", 2)]),
    # a line that is only the escape token continues with nothing
    ("FROM a\nRUN x \\\n\\\n\\\ny\n", [("RUN x y", 2)]),
    # the backtick escape of the directive
    ("# escape=`\nFROM a\nRUN x `\n  y \\\nRUN z\n", [("RUN x   y \\", 3), ("RUN z", 5)]),
    # a carriage return after the escape token and spaces: not a continuation
    ("FROM a\nRUN x \\ \r \nRUN y\n", [("RUN x \\ \r ", 2), ("RUN y", 3)]),
])
def test_continuations(text, instructions):
    nodes, _ = parse(text)
    assert [(n.original, n.start_line) for n in nodes[1:]] == instructions


def test_heredocs_are_read_at_once():
    body = "line\n" * 300_000
    text = f"FROM a\nRUN <<EOF\n{body}EOF\nCOPY <<-X <<Y /d\n\t\tone\n\tX\ntwo\nY\nRUN z\n"
    (nodes, _), took = _timed(lambda: parse(text))
    assert took < 1.0
    assert nodes[1].heredocs[0].content == body and nodes[1].heredocs[0].name == "EOF"
    assert [(h.name, h.content, h.chomp) for h in nodes[2].heredocs] == [("X", "\t\tone\n", True),
                                                                         ("Y", "two\n", False)]
    assert (nodes[3].original, nodes[3].start_line) == ("RUN z", 300_009)
    with pytest.raises(DockerfileError, match="unterminated heredoc"):
        parse("FROM a\nRUN <<EOF\nx\nEOFX\n")


def test_a_dockerfile_past_the_limit_is_refused_before_parsing():
    data = b"FROM a\n" + b"#" * MAX_DOCKERFILE_SIZE
    with pytest.raises(InvalidArgument) as exc:
        parse_dockerfile(data, "sub/Dockerfile.dev")
    assert str(exc.value) == "sub/Dockerfile.dev exceeds maximum allowed size of 16777216 bytes"


def test_a_large_dockerfile_parses_in_bounded_time_and_leaves_the_collector_as_it_was():
    data = b"FROM b\n" + b"LABEL a=b\n" * 200_000
    assert gc.isenabled()
    (nodes, _), took = _timed(lambda: parse_dockerfile(data))
    assert len(nodes) == 200_001 and took < 8.0
    assert gc.isenabled()


def test_a_parse_stops_when_cancelled():
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ParseCancelled):
        parse_dockerfile(b"FROM a\nRUN b\n", cancel=cancel)
    assert gc.isenabled()
