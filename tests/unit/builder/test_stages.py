"""A build's plan (global ARGs, stages, ``target``, ``--label`` steps) and what a stage's words expand against."""

from __future__ import annotations

import pytest

from dockwright.builder.options import BUILD_LABEL, BuildOptions
from dockwright.builder.stages import Stage, arg_value, cache_parent, expand_args, plan, stage_env
from dockwright.dockerfile import Lex, parse
from dockwright.errors import InvalidArgument


def _nodes(text: str) -> list:
    return parse(text)[0]


def test_plan_cuts_stages_and_adds_labels_to_the_target() -> None:
    nodes = _nodes("ARG V=1\nFROM a AS one\nRUN x\nFROM b AS two\nRUN y\nFROM c\n")
    p = plan(nodes, BuildOptions(target="TWO", labels={"z": "$V", "a": "b"}))
    assert [n.value for n in p.meta_nodes] == ["ARG"]
    assert [[n.original for n in s] for s in p.stages] == [
        ["FROM a AS one", "RUN x"], ["FROM b AS two", "RUN y", "LABEL a=b", "LABEL z=$V"]]
    assert p.names == ["one", "two", ""] and p.total == 7
    label = p.stages[-1][-1]
    assert label.attributes == {BUILD_LABEL: True} and [a.value for a in label.args] == ["z", "$V"]


@pytest.mark.parametrize(("text", "opts", "message"), [
    ("RUN x\n", BuildOptions(), "Please provide a source image with `from` prior to commit"),
    ("ARG A\n", BuildOptions(), "No image was generated. Is your Dockerfile empty?"),
    ("FROM a\n", BuildOptions(target="x"), "failed to reach build target x in Dockerfile"),
])
def test_plan_errors(text: str, opts: BuildOptions, message: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        plan(_nodes(text), opts)
    assert str(exc.value) == message


def test_args_and_env() -> None:
    stage = Stage("", None, {"Env": ["A=env", "PATH=/bin"]}, args={"A": "arg", "B": None, "C": "c"},
                  meta_args={"B": "global"})
    opts = BuildOptions(buildargs={"C": "request", "D": "unused"})
    assert [arg_value(stage, opts, k) for k in ("A", "B", "C", "D")] == ["arg", "global", "request", "unused"]
    assert stage_env(stage, opts) == ["A=env", "PATH=/bin", "B=global", "C=request"]
    assert stage_env(stage, opts, {"Env": ["X=1"]}) == ["X=1", "A=arg", "B=global", "C=request"]
    assert expand_args(Lex("\\"), _nodes("ARG X=$C Y")[0].args, ["C=3"]) == [("X", "3"), ("Y", None)]
    assert cache_parent(None, {"b": 1, "a": 2}) == '|{"a": 2, "b": 1}'
