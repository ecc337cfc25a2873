"""Shell patterns (``${x#…}``, ``${x%…}``, ``${x/…/…}``): the linear matcher agrees with BuildKit's regular
expression and does not backtrack."""

from __future__ import annotations

import random
import re
import time

from dockwright.dockerfile import Env, Lex
from dockwright.dockerfile.patterns import ANY, STAR, ShellPattern, Text, pattern_tokens


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def _backtracking_regex(pattern, greedy, anchored):
    """The regular expression BuildKit's ``convertShellPatternToRegex`` makes (what Go's regexp runs)."""
    out, star = (["^"] if anchored else []), (".*" if greedy else ".*?")
    for tok in pattern_tokens(pattern):
        out.append(star if tok == STAR else "." if tok == ANY else re.escape(tok))
    return re.compile("".join(out))


def test_shell_patterns_match_as_the_regular_expression_does():
    """Leftmost-first spans, newlines that neither ``*`` nor ``?`` cross, greedy and not: the linear matcher agrees
    with the backtracking one on every small case tried."""
    rng = random.Random(10)
    for _ in range(20_000):
        pat = "".join(rng.choice("ab*?\n") for _ in range(rng.randint(0, 6)))
        val = "".join(rng.choice("ab\n") for _ in range(rng.randint(0, 10)))
        greedy = rng.random() < 0.5
        p = ShellPattern(pat, greedy)
        m = _backtracking_regex(pat, greedy, True).match(val)
        assert p.match_prefix(val) == (None if m is None else m.end()), (pat, val, greedy)
        pos = rng.randint(0, len(val))
        m = _backtracking_regex(pat, greedy, False).search(val, pos)
        assert p.search(Text(val), pos) == (None if m is None else m.span()), (pat, val, greedy, pos)


def test_shell_patterns_do_not_backtrack():
    env = Env(["X=" + "a" * ((1 << 20) - 16), "Y=" + "a\n" * 200_000])
    lex = Lex("\\")
    for word in ("${X#*a*a*a*a*a*a*a*b}", "${X##*a*a*a*a*a*b}", "${X%a*a*a*a*a*b}", "${X%%*a*a*a*a*b}",
                 "${X/a*a*a*a*b/c}", "${X//a*a*a*b/c}", "${Y//a*a*b/c}", "${Y/#a*a*b/}"):
        out, took = _timed(lambda word=word: lex.process_word(word, env))
        assert took < 1.0, (word, took)
    assert lex.process_word("${X#*a*b}", env) == env.get("X")[0]
    assert lex.process_word("${X##*a}", env) == ""
    assert lex.process_word("${X%%a*}", env) == ""
