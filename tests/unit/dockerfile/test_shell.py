"""BuildKit's shell lexer (its envVarTest and wordsTest), and its bounds on hostile input (issue 10)."""

from __future__ import annotations

import time

import pytest

from dockwright.dockerfile import MAX_EXPANDED_SIZE, DockerfileError, Env, Lex
from dockwright.timestamps import go_quote

# -- the shell lexer (BuildKit's envVarTest and wordsTest) -------------------------------------

ENVS = Env(["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="])

ENV_VAR_TESTS = [
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ("he'llo", None),
    ("he\\'llo", "he'llo"),
    ("he\\\\'llo", None),
    ("abc\\tdef", "abctdef"),
    ('"abc\\tdef"', "abc\\tdef"),
    ('"abc\\\\tdef"', "abc\\tdef"),
    ("'abc\\tdef'", "abc\\tdef"),
    ("hello\\", "hello"),
    ("hello\\\\", "hello\\"),
    ('"hello', None),
    ('"hello\\"', None),
    ('"hel\'lo"', "hel'lo"),
    ("'hello", None),
    ("'hello\\'", "hello\\"),
    ("'hello\\there'", "hello\\there"),
    ("'hello\\\\there'", "hello\\\\there"),
    ('"\'\'"', "''"),
    ("$.", "$."),
    ("he$1x", "hex"),
    ("he$.x", "he$.x"),
    ("he$pwd.", "he."),
    ("he$PWD", "he/home"),
    ("he\\$PWD", "he$PWD"),
    ("he\\\\$PWD", "he\\/home"),
    ('"he\\$PWD"', "he$PWD"),
    ('"he\\\\$PWD"', "he\\/home"),
    ("\\${}", "${}"),
    ("\\${}aaa", "${}aaa"),
    ("he\\${}", "he${}"),
    ("he\\${}xx", "he${}xx"),
    ("${}", None),
    ("${}aaa", None),
    ("he${}", None),
    ("he${}xx", None),
    ("he${hi}", "he"),
    ("he${hi}xx", "hexx"),
    ("he${PWD}", "he/home"),
    ("he${.}", None),
    ("he${XXX:-000}xx", "he000xx"),
    ("he${PWD:-000}xx", "he/homexx"),
    ("he${XXX:-$PWD}xx", "he/homexx"),
    ("he${XXX:-${PWD:-yyy}}xx", "he/homexx"),
    ("he${XXX:-${YYY:-yyy}}xx", "heyyyxx"),
    ("he${XXX:YYY}", None),
    ("he${XXX?}", None),
    ("he${XXX:?}", None),
    ("he${PWD?}", "he/home"),
    ("he${PWD:?}", "he/home"),
    ("he${NULL?}", "he"),
    ("he${NULL:?}", None),
    ("he${XXX:+${PWD}}xx", "hexx"),
    ("he${PWD:+${XXX}}xx", "hexx"),
    ("he${PWD:+${SHELL}}xx", "hebashxx"),
    ("he${XXX:+000}xx", "hexx"),
    ("he${PWD:+000}xx", "he000xx"),
    ("'he${XX}'", "he${XX}"),
    ('"he${PWD}"', "he/home"),
    ("\"he'$PWD'\"", "he'/home'"),
    ('"$PWD"', "/home"),
    ("'$PWD'", "$PWD"),
    ("'\\$PWD'", "\\$PWD"),
    ("'\"hello\"'", '"hello"'),
    ("he\\$PWD", "he$PWD"),
    ('"he\\$PWD"', "he$PWD"),
    ("'he\\$PWD'", "he\\$PWD"),
    ("he${PWD", None),
    ("he${PWD:=000}xx", None),
    ("he${PWD:+${PWD}:}xx", "he/home:xx"),
    ("he${XXX:-\\$PWD:}xx", "he$PWD:xx"),
    ("he${XXX:-\\${PWD}z}xx", "he${PWDz}xx"),
    ("안녕하세요", "안녕하세요"),
    ("안'녕'하세요", "안녕하세요"),
    ("안'녕하세요", None),
    ("안녕\\'하세요", "안녕'하세요"),
    ("안\\\\'녕하세요", None),
    ("안녕\\t하세요", "안녕t하세요"),
    ('"안녕\\t하세요"', "안녕\\t하세요"),
    ("'안녕\\t하세요", None),
    ("안녕$1x", "안녕x"),
    ("$KOREAN", "한국어"),
    ("안녕$KOREAN", "안녕한국어"),
    ("${{aaa}", None),
    ("${aaa}}", "}"),
    ("${aaa", None),
    ("${{aaa:-bbb}", None),
    ("${aaa:-bbb}}", "bbb}"),
    ("${aaa:-bbb", None),
    ("${aaa:-bbb}", "bbb"),
    ("${aaa:-${bbb:-ccc}}", "ccc"),
    ("${aaa:-bbb ${foo}", None),
    ("${aaa:-bbb {foo}", "bbb {foo"),
    ("${:}", None),
    ("${:-bbb}", None),
    ("${:+bbb}", None),
    ("$1", ""),
    ("${1}", ""),
    ("${1:+bbb}", ""),
    ("${1:-bbb}", "bbb"),
    ("$999aaa", "aaa"),
    ("${999}aaa", "aaa"),
    ("${999:-bbb}aaa", "bbbaaa"),
    ("$001aaa", "aaa"),
    ("$@", ""),
    ("$@@@", "@@"),
    ("$@aaa", "aaa"),
    ("${@:-bbb}aaa", "bbbaaa"),
    ("$*", ""),
    ("$#", ""),
    ("${#:-bbb}", "bbb"),
    ("$?", ""),
    ("$-", ""),
    ("$$", ""),
    ("${$:+bbb}", ""),
    ("$!", ""),
    ("$0", ""),
    ("${0:-bbb}", "bbb"),
    # pattern modifiers
    ("${PWD#/}", "home"),
    ("${PWD#*o}", "me"),
    ("${PWD##*o}", "me"),
    ("${SHELL#b*}", "ash"),
    ("${SHELL##b*}", ""),
    ("${SHELL%h}", "bas"),
    ("${SHELL%a*}", "b"),
    ("${SHELL%%a*}", "b"),
    ("${SHELL%s*}", "ba"),
    ("${SHELL/a/A}", "bAsh"),
    ("${SHELL//[a-z]/x}", "bash"),
    ("${SHELL/?/x}", "xash"),
    ("${SHELL//?/x}", "xxxx"),
    ("${PWD//\\//:}", ":home"),
    ("${SHELL/*/x${0}y}", "xy"),  # the replacement is expanded first
    ("${SHELL/*/x$0y}", "xy"),
    ("${SHELL/*/$$}", ""),
    ("${SHELL//a/\\$0}", "b\\ash"),  # a raw \$0 reaches Go's template: $0 is the match
    ("${SHELL/s/\\$}", "ba\\$h"),
    ("${NOPE#x}", ""),
    ("${PWD:#x}", None),
    ("${PWD#\\x}", None),
    ("${PWD/x", None),
]


@pytest.mark.parametrize(("source", "expected"), ENV_VAR_TESTS)
def test_process_word(source, expected):
    lex = Lex("\\")
    if expected is None:
        with pytest.raises(Exception) as exc:
            lex.process_word(source, ENVS)
        assert str(exc.value).startswith("failed to process ")
    else:
        assert lex.process_word(source, ENVS) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("${a", "unsupported modifier (\ufffd) in substitution"),
        ("${", "syntax error: missing '}'"),
        ("${}", "syntax error: bad substitution"),
        ("${a:=b}", "unsupported modifier (:=) in substitution"),
        ("${a:-b", "syntax error: missing '}'"),
        ("${a?}", "a: is not allowed to be unset"),
        ("${NULL:?}", "NULL: is not allowed to be empty"),
        ("${a?custom message}", "a: custom message"),
        ("'abc", "unexpected end of statement while looking for matching single-quote"),
        ('"abc', "unexpected end of statement while looking for matching double-quote"),
        ("${a/b", "syntax error: missing '/' in ${}"),
        ("${a/b/c", "syntax error: missing '}'"),
        ("${a:#b}", "unsupported modifier (:#) in substitution"),
        ("${PWD#\\x}", "invalid pattern (\\x) in substitution: invalid escape '\\x'"),
    ],
)
def test_process_word_errors(source, message):
    with pytest.raises(Exception) as exc:
        Lex("\\").process_word(source, ENVS)
    assert str(exc.value) == f"failed to process {_go(source)}: {message}"


def _go(s: str) -> str:
    return go_quote(s)


def test_process_word_backtick_escape():
    lex = Lex("`")
    assert lex.process_word("a`$PWD", ENVS) == "a$PWD"
    assert lex.process_word("C:\\dir", ENVS) == "C:\\dir"


WORD_ENVS = Env(["hi=hi", "space=abc  def", "leading=  ab c", "trailing=ab c   "])


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("hello", ["hello"]),
        ("hello${nope}bye", ["hellobye"]),
        ("hello${hi}bye", ["hellohibye"]),
        ("hello${space}bye", ["helloabc", "defbye"]),
        ('hello"${space}"bye', ["helloabc  defbye"]),
        ('hello "${space}"bye', ["hello", "abc  defbye"]),
        ("hello${leading}def", ["hello", "ab", "cdef"]),
        ('hello"${leading}" def', ["hello  ab c", "def"]),
        ('hello"${leading}"', ["hello  ab c"]),
        ("hello${leading}", ["hello", "ab", "c"]),
        ("hello${trailing}", ["helloab", "c"]),
        ("hello${trailing}d", ["helloab", "c", "d"]),
        ('hello"${trailing}"d', ["helloab c   d"]),
        ('hel"lo${trailing}"', ["helloab c   "]),
        ('hello" there  "', ["hello there  "]),
        ("hello there     ", ["hello", "there"]),
        ("hello\\ there", ["hello there"]),
        ('hello\\" there', ['hello"', "there"]),
        ("", []),
        # BuildKit shares one words buffer between nested expansions: a ${...:-...} drops
        # what came before it in the same word
        ("8${nope:-0}", ["0"]),
    ],
)
def test_process_words(source, words):
    assert Lex("\\").process_words(source, WORD_ENVS) == words


def test_process_words_unterminated():
    with pytest.raises(Exception, match="unexpected end of statement"):
        Lex("\\").process_words('hello" there', WORD_ENVS)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def test_sixteen_doublings_expand_in_linear_time():
    lex = Lex("\\")

    def doublings():
        out = "abcdefgh"
        for _ in range(16):
            out = lex.process_word("${X}${X}", Env([f"X={out}"]))
        return out

    out, took = _timed(doublings)
    assert took < 1.0
    assert out == "abcdefgh" * (1 << 16)
    words, took = _timed(lambda: lex.process_words("a ${X} b", Env([f"X={'x y ' * (1 << 17)}"])))
    assert took < 1.0 and len(words) == 2 + (1 << 18)


def test_an_expansion_past_the_limit_is_refused_quickly():
    big = "a" * (1 << 19)
    lex = Lex("\\")
    assert len(lex.process_word("${X}${X}", Env([f"X={big}"]))) == MAX_EXPANDED_SIZE  # at the limit: fine
    for word in ("${X}${X}${X}", '"${X}${X}${X}"', "${X:-a}${X}${X}", "${X//a/aaa}", "${X}" * 100_000):
        with pytest.raises(DockerfileError) as exc:
            _timed(lambda word=word: lex.process_word(word, Env([f"X={big}"])))
        msg = str(exc.value)
        assert msg.endswith("the expansion exceeds the maximum allowed size of 1048576 characters"), msg
        assert len(msg) < 300  # the source is quoted shortened
    _, took = _timed(lambda: pytest.raises(DockerfileError, lex.process_word, "${X}" * 100_000, Env([f"X={big}"])))
    assert took < 1.0


def test_literal_runs_and_quotes_are_taken_at_once():
    lex = Lex("\\")
    text = "x" * 60_000
    assert lex.process_word(f"'{text}'\"{text}\"{text}", Env([])) == text * 3
    assert lex.process_words(f"{text} {text}", Env([])) == [text, text]
    (_, took) = _timed(lambda: [lex.process_word(f"'{text}'\"{text}\"{text}", Env([])) for _ in range(20)])
    assert took < 1.0


def test_the_limit_is_on_what_variables_add():
    """A word of literal text (a large COPY heredoc, say) is never refused: the Dockerfile's size bounds it."""
    lex = Lex("\\")
    lex.skip_process_quotes = True
    text = "x'\"" * (1 << 20)
    assert lex.process_word(text + "$X", Env(["X=" + "y" * 1000])) == text + "y" * 1000
    with pytest.raises(DockerfileError, match="the expansion exceeds"):
        lex.process_word(text + "$X", Env(["X=" + "y" * ((1 << 20) + 10)]))
