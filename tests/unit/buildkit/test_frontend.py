"""The Dockerfile frontend's plan: stages, their dependencies, the target's closure, vertex numbering, the
``RUN --mount`` parser and the ``# syntax=`` check, with BuildKit's messages."""

from __future__ import annotations

import pytest

from dockwright.buildkit.frontend import check_syntax, parse_mount, plan_build, vertex_text
from dockwright.dockerfile import Env, Lex, parse
from dockwright.errors import InvalidArgument, NotSupported

MULTI = b"""\
ARG BASE=bb:1
FROM ${BASE} AS base
RUN echo base
FROM base AS builder
RUN echo build
FROM bb:1 AS unused
RUN exit 9
FROM bb:1 AS final
COPY --from=builder /a /a
RUN --mount=type=bind,from=base,target=/m ls /m
WORKDIR /app
ENV X=1
"""


def test_the_target_needs_only_the_stages_it_uses():
    plan = plan_build(MULTI, "Dockerfile", "", {})
    assert [s.name for s in plan.stages] == ["base", "builder", "unused", "final"]
    assert plan.target == 3
    assert plan.needed == [0, 1, 3]  # "unused" is skipped
    assert plan.stages[0].base == "bb:1"  # the global ARG expanded
    assert plan.stages[1].base_stage == 0
    assert plan.stages[3].deps == {0, 1}


def test_target_by_name_and_a_missing_target():
    assert plan_build(MULTI, "Dockerfile", "builder", {}).needed == [0, 1]
    with pytest.raises(InvalidArgument, match="failed to reach build target nope in Dockerfile"):
        plan_build(MULTI, "Dockerfile", "nope", {})


def test_build_args_override_global_args_in_from():
    plan = plan_build(MULTI, "Dockerfile", "", {"BASE": "other:2"})
    assert plan.stages[0].base == "other:2"


def test_vertex_numbering_counts_from_only_for_image_bases():
    plan = plan_build(MULTI, "Dockerfile", "", {})
    assert [(s.display, s.total) for s in plan.stages] == [("base", 2), ("builder", 1), ("unused", 2),
                                                           ("final", 4)]
    single = plan_build(b"FROM bb:1\nENV A=1\nRUN true\n", "Dockerfile", "", {})
    assert (single.stages[0].display, single.stages[0].total) == ("", 2)


@pytest.mark.parametrize("text,message", [
    (b"FROM bb:1\nFOO bar\n", "dockerfile parse error line 2: unknown instruction: FOO"),
    (b"FROM bb:1\nCOPY a\n", "dockerfile parse error line 2: COPY requires at least two arguments"),
    (b"RUN true\n", "no build stage in current context"),
    (b"FROM bb:1\nCOPY --nope=1 a b\n", "dockerfile parse error line 2: unknown flag: nope"),
    (b"FROM bb:1\nRUN --mount=type=cache true\n", "mount target must be specified"),
])
def test_parse_errors_are_buildkits(text, message):
    with pytest.raises(InvalidArgument, match=message):
        plan_build(text, "Dockerfile", "", {})


def test_mount_defaults():
    cache = parse_mount("type=cache,target=/root/.cache")
    assert (cache.id, cache.sharing, cache.readonly, cache.mode) == ("/root/.cache", "shared", False, 0o755)
    secret = parse_mount("type=secret,id=tok")
    assert (secret.target, secret.mode, secret.readonly) == ("/run/secrets/tok", 0o400, True)
    bind = parse_mount("target=/m,from=base,source=/x,rw")
    assert (bind.type, bind.from_, bind.source, bind.readonly) == ("bind", "base", "/x", False)
    tmp = parse_mount("type=tmpfs,target=/t,size=1024")
    assert (tmp.type, tmp.size) == ("tmpfs", 1024)
    with pytest.raises(InvalidArgument, match="unsupported mount type"):
        parse_mount("type=volume,target=/v")
    with pytest.raises(InvalidArgument, match="unsupported sharing value"):
        parse_mount("type=cache,target=/c,sharing=sometimes")


def test_vertex_text_expands_variables_and_keeps_quotes():
    node = parse('run echo "$GREETING world" > /g\n')[0][0]
    assert vertex_text(node, Lex("\\"), Env(["GREETING=hey"])) == 'RUN echo "hey world" > /g'


def test_vertex_text_keeps_what_the_stage_does_not_have_as_written():
    # dockerd 20.10's BuildKit names this step 'RUN echo 1 $B "${C}" ${D:-x} y zz ${E:?oops}x' (A an ENV, Z an ARG)
    node = parse('RUN echo $A $B "${C}" ${D:-x} ${A:+y} $Z ${E:?oops}x\n')[0][0]
    assert vertex_text(node, Lex("\\"), Env(["A=1", "Z=zz"])) == 'RUN echo 1 $B "${C}" ${D:-x} y zz ${E:?oops}x'


def test_syntax_directive():
    assert check_syntax("# syntax=docker/dockerfile:1\nFROM x\n") == "docker/dockerfile:1"
    assert check_syntax("# syntax=docker/dockerfile:1.4-labs\n") == "docker/dockerfile:1.4-labs"
    assert check_syntax("FROM x\n") == ""
    with pytest.raises(NotSupported, match="other frontend images are not supported"):
        check_syntax("# syntax=example.com/my/frontend:2\n")
