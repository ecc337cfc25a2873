"""``commit``/``import`` changes as dockerd's ``BuildFromConfig`` applies them (moby's dispatchers
tests, BuildKit's parser, instructions and shell lexer tests)."""

from __future__ import annotations

import pytest

from dockwright.build import VALID_CHANGE_COMMANDS, apply_changes
from dockwright.build.changes import _Env, _Lex, _parse
from dockwright.errors import InvalidArgument

SH = ["/bin/sh", "-c"]


def apply(changes, config=None, os="linux"):
    return apply_changes(config if config is not None else {}, changes, os)


def error(changes, config=None, os="linux"):
    with pytest.raises(InvalidArgument) as exc:
        apply(changes, config, os)
    return str(exc.value)


# -- the allow-list -----------------------------------------------------------------------------


def test_valid_change_commands():
    assert VALID_CHANGE_COMMANDS == {
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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("FROM busybox", "from is not a valid change command"),
        ("from busybox", "from is not a valid change command"),
        ("RUN echo hi", "run is not a valid change command"),
        ("ADD . /app", "add is not a valid change command"),
        ("COPY . /app", "copy is not a valid change command"),
        ("ARG foo=bar", "arg is not a valid change command"),
        ("SHELL [\"/bin/bash\", \"-c\"]", "shell is not a valid change command"),
        ("MAINTAINER me", "maintainer is not a valid change command"),
        ("FOO bar", "foo is not a valid change command"),
        ("Bogus", "bogus is not a valid change command"),
    ],
)
def test_invalid_change_command(change, message):
    assert error([change]) == message


def test_instructions_are_case_insensitive():
    assert apply(["cmd echo hi", "Env a=b", "eXpOsE 80"]) == {
        "Cmd": [*SH, "echo hi"],
        "Env": ["a=b"],
        "ExposedPorts": {"80/tcp": {}},
    }


def test_parse_errors_come_before_the_allow_list():
    # the whole text is parsed first, then checked
    assert error(["FROM x", "ENV a"]) == "ENV must have two arguments"


def test_allow_list_comes_before_instruction_errors():
    assert error(["USER", "FROM x"]) == "from is not a valid change command"


def test_no_changes_returns_a_copy():
    config = {"Cmd": ["a"], "Labels": {"x": "y"}}
    out = apply_changes(config, [])
    assert out == config
    assert out is not config
    out["Labels"]["x"] = "z"
    assert config["Labels"]["x"] == "y"


def test_config_is_not_modified():
    config = {"Env": ["A=1"], "Labels": {"a": "b"}, "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/v": {}}}
    before = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in config.items()}
    apply(["ENV A=2 B=3", "LABEL c=d", "EXPOSE 90", "VOLUME /w"], config)
    assert config == before


def test_other_fields_are_kept():
    config = {"Image": "sha256:abc", "Hostname": "h", "Tty": True, "Cmd": ["x"]}
    out = apply(["USER me"], config)
    assert out == {"Image": "sha256:abc", "Hostname": "h", "Tty": True, "Cmd": ["x"], "User": "me"}


def test_a_single_string_is_one_change():
    assert apply_changes({}, "USER a\nWORKDIR /w") == {"User": "a", "WorkingDir": "/w"}


def test_none_config():
    assert apply_changes(None, ["USER a"]) == {"User": "a"}


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
    nodes, escape = _parse("ENV a=b c=d\nONBUILD RUN x\nHEALTHCHECK --interval=5s CMD [\"a\"]")
    assert escape == "\\"
    assert [n.value for n in nodes] == ["ENV", "ONBUILD", "HEALTHCHECK"]
    assert [a.value for a in nodes[0].args] == ["a", "b", "c", "d"]
    assert nodes[1].args[0].children[0].value == "RUN"
    assert nodes[2].flags == ["--interval=5s"]
    assert nodes[2].attributes == {"json": True}


# -- CMD / ENTRYPOINT -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "cmd"),
    [
        ("CMD echo hi", [*SH, "echo hi"]),
        ("CMD ./executable", [*SH, "./executable"]),
        ('CMD ["echo", "hi"]', ["echo", "hi"]),
        ('CMD [ "echo" , "hi" ]', ["echo", "hi"]),
        ("CMD []", []),
        ("CMD", SH),  # an empty shell form still gets the shell
        ("CMD [echo, hi]", [*SH, "[echo, hi]"]),  # not JSON: shell form
        ('CMD ["echo" "hi"]', [*SH, '["echo" "hi"]']),
        ('CMD ["a"] trailing', [*SH, '["a"] trailing']),
        ('CMD ["a\\u00e9", "\\n"]', ["a\u00e9", "\n"]),
        ('CMD ["$HOME"]', ["$HOME"]),  # no expansion
        ("CMD echo $HOME", [*SH, "echo $HOME"]),
        ('CMD ["1e999"]', ["1e999"]),
        ("CMD [1e999]", [*SH, "[1e999]"]),  # out of float64 range: not JSON to Go
        ("CMD [NaN]", [*SH, "[NaN]"]),
    ],
)
def test_cmd(change, cmd):
    out = apply([change])
    assert out["Cmd"] == cmd


@pytest.mark.parametrize(
    "change",
    ["CMD [1]", 'CMD ["a", 1]', "CMD [null]", "CMD [true]", 'CMD [["a"]]', "ENTRYPOINT [{}]", "VOLUME [1]"],
)
def test_json_array_of_non_strings(change):
    assert error([change]) == "when using JSON array syntax, arrays must be comprised of strings only"


def test_cmd_uses_config_shell():
    out = apply(["CMD echo hi"], {"Shell": ["/bin/bash", "-o", "pipefail", "-c"]})
    assert out["Cmd"] == ["/bin/bash", "-o", "pipefail", "-c", "echo hi"]
    assert apply(["CMD echo hi"], {"Shell": []})["Cmd"] == [*SH, "echo hi"]
    assert apply(["CMD echo hi"], {"Shell": None})["Cmd"] == [*SH, "echo hi"]


def test_cmd_resets_args_escaped():
    out = apply(["CMD echo hi"], {"ArgsEscaped": True, "Cmd": ["x"]})
    assert "ArgsEscaped" not in out
    out = apply(["ENTRYPOINT x"], {"ArgsEscaped": True})
    assert "ArgsEscaped" not in out


@pytest.mark.parametrize(
    ("changes", "config", "expected"),
    [
        # ENTRYPOINT clears CMD...
        (["ENTRYPOINT /usr/sbin/nginx"], {"Cmd": ["x"]}, {"Entrypoint": [*SH, "/usr/sbin/nginx"], "Cmd": None}),
        (['ENTRYPOINT ["nginx", "-g"]'], {"Cmd": ["x"]}, {"Entrypoint": ["nginx", "-g"], "Cmd": None}),
        # ...unless a CMD with arguments came before in the same changes
        (["CMD y", "ENTRYPOINT e"], {"Cmd": ["x"]}, {"Cmd": [*SH, "y"], "Entrypoint": [*SH, "e"]}),
        (['CMD ["y"]', "ENTRYPOINT e"], {}, {"Cmd": ["y"], "Entrypoint": [*SH, "e"]}),
        # an empty CMD does not count
        (["CMD []", "ENTRYPOINT e"], {"Cmd": ["x"]}, {"Cmd": None, "Entrypoint": [*SH, "e"]}),
        # CMD after ENTRYPOINT sets it again
        (["ENTRYPOINT e", "CMD y"], {"Cmd": ["x"]}, {"Entrypoint": [*SH, "e"], "Cmd": [*SH, "y"]}),
        # an empty ENTRYPOINT is nil
        (["ENTRYPOINT []"], {"Entrypoint": ["old"]}, {"Entrypoint": None, "Cmd": None}),
        (["ENTRYPOINT"], {"Entrypoint": ["old"]}, {"Entrypoint": None, "Cmd": None}),
        (["ENTRYPOINT [\"\"]"], {}, {"Entrypoint": [""], "Cmd": None}),
    ],
)
def test_entrypoint(changes, config, expected):
    assert apply(changes, config) == expected


# -- ENV --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "env", "expected"),
    [
        (["ENV var1=val1 var2=val2"], None, ["var1=val1", "var2=val2"]),
        (["ENV var1=val1"], ["var1=old", "var2=fromenv"], ["var1=val1", "var2=fromenv"]),
        (["ENV var1 val1"], None, ["var1=val1"]),
        (["ENV var1 val1 with  spaces"], None, ["var1=val1 with  spaces"]),
        (['ENV var1 "quoted value"'], None, ["var1=quoted value"]),
        (['ENV a="b c" d=e\\ f g=\'h i\''], None, ["a=b c", "d=e f", "g=h i"]),
        (["ENV a="], None, ["a="]),
        (['ENV a=""'], None, ["a="]),
        (["ENV a=b=c"], None, ["a=b=c"]),
        (["ENV PATH=$PATH:/x"], ["PATH=/bin"], ["PATH=/bin:/x"]),
        (["ENV PATH=${PATH}:/x"], None, ["PATH=:/x"]),
        # expansion sees the environment as it was before the instruction
        (["ENV a=1 b=$a"], None, ["a=1", "b="]),
        (["ENV a=1 b=$a"], ["a=0"], ["a=1", "b=0"]),
        (["ENV a=1", "ENV b=$a"], None, ["a=1", "b=1"]),
        (["ENV a=\\$b"], ["b=x"], ["b=x", "a=$b"]),
        (["ENV a='$b'"], ["b=x"], ["b=x", "a=$b"]),
        (['ENV a="$b"'], ["b=x"], ["b=x", "a=x"]),
        (["ENV $k=v"], ["k=name"], ["k=name", "name=v"]),
        # only the first entry of a name is replaced
        (["ENV a=new"], ["a=1", "b=2", "a=3"], ["a=new", "b=2", "a=3"]),
        # names are case-sensitive
        (["ENV A=2"], ["a=1"], ["a=1", "A=2"]),
        # an entry without = counts as a name
        (["ENV a=2"], ["a"], ["a=2"]),
    ],
)
def test_env(changes, env, expected):
    config = {} if env is None else {"Env": env}
    assert apply(changes, config)["Env"] == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("ENV", "ENV requires at least one argument"),
        ("ENV a", "ENV must have two arguments"),
        ("ENV a=b c", "Syntax error - can't find = in \"c\". Must be of the form: name=value"),
        ("ENV =b", "ENV names can not be blank"),
        ("ENV --foo a=b", "unknown flag: --foo"),
        ("ENV a=${b", 'failed to process "${b": unsupported modifier (\ufffd) in substitution'),
        ("ENV a=${b:?required}", 'failed to process "${b:?required}": b: required'),
        ("ENV a=${b:?is required}", "Syntax error - can't find = in \"required}\". Must be of the form: name=value"),
        ("ENV a=\"b", 'failed to process "\\"b": unexpected end of statement while looking for matching double-quote'),
    ],
)
def test_env_errors(change, message):
    assert error([change]) == message


# -- LABEL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "labels", "expected"),
    [
        (["LABEL label=value"], None, {"label": "value"}),
        (["LABEL a=b c=\"d e\" 'f g'=h"], None, {"a": "b", "c": "d e", "f g": "h"}),
        (["LABEL legacy form value"], None, {"legacy": "form value"}),
        (["LABEL a=1", "LABEL a=2"], {"a": "0", "b": "x"}, {"a": "2", "b": "x"}),
        (["LABEL v=$VERSION"], None, {"v": "1.0"}),
        (["LABEL com.example.vendor=\"ACME\\\" Inc\""], None, {"com.example.vendor": 'ACME" Inc'}),
        (["LABEL a=b"], {}, {"a": "b"}),
    ],
)
def test_label(changes, labels, expected):
    config = {"Env": ["VERSION=1.0"]}
    if labels is not None:
        config["Labels"] = labels
    assert apply(changes, config)["Labels"] == expected


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("LABEL", "LABEL requires at least one argument"),
        ("LABEL a", "LABEL must have two arguments"),
        ("LABEL a=b c", "Syntax error - can't find = in \"c\". Must be of the form: name=value"),
        ("LABEL =b", "LABEL names can not be blank"),
    ],
)
def test_label_errors(change, message):
    assert error([change]) == message


def test_label_key_blank_after_expansion():
    # the blank check is made before expansion only
    assert apply(['LABEL ""=b'])["Labels"] == {"": "b"}


# -- EXPOSE -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "ports"),
    [
        ("EXPOSE 80", ["80/tcp"]),
        ("EXPOSE 80 443/udp 8000-8002", ["443/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"]),
        ("EXPOSE 53/UDP", ["53/udp"]),
        ("EXPOSE 132/sctp", ["132/sctp"]),
        ("EXPOSE 80/", ["80/tcp"]),
        ("EXPOSE 8080:80", ["80/tcp"]),
        ("EXPOSE 127.0.0.1:8080:80/udp", ["80/udp"]),
        ("EXPOSE [::1]:8080:80", ["80/tcp"]),
        ("EXPOSE ::1:8080:80", ["80/tcp"]),
        ("EXPOSE 7000-7001:80", ["80/tcp"]),
        ("EXPOSE 1-2-3", ["1/tcp", "2/tcp"]),
        ("EXPOSE $PORTS", ["443/tcp", "80/tcp"]),  # one word expanded into two
        ('EXPOSE "$PORT"', ["8080/tcp"]),
        ("EXPOSE ${PORT}/udp", ["8080/udp"]),
        ("EXPOSE 80 80/tcp", ["80/tcp"]),
    ],
)
def test_expose(change, ports):
    config = {"Env": ["PORTS=80 443", "PORT=8080"]}
    out = apply([change], config)
    assert sorted(out["ExposedPorts"]) == sorted(ports)
    assert all(v == {} for v in out["ExposedPorts"].values())


def test_expose_adds_to_existing():
    out = apply(["EXPOSE 90"], {"ExposedPorts": {"80/tcp": {}}})
    assert out["ExposedPorts"] == {"80/tcp": {}, "90/tcp": {}}


def test_expose_nothing_after_expansion():
    # no port, no error; the empty set is omitted as Go's omitempty omits it
    assert apply(["EXPOSE $UNSET"]) == {}
    assert apply(["EXPOSE $UNSET"], {"ExposedPorts": {"80/tcp": {}}}) == {"ExposedPorts": {"80/tcp": {}}}


def test_expose_whole_range():
    assert len(apply(["EXPOSE 1-65535"])["ExposedPorts"]) == 65535


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("EXPOSE", "EXPOSE requires at least one argument"),
        ("EXPOSE 80/xyz", "invalid proto: xyz"),
        ("EXPOSE /tcp", "invalid proto: "),
        ("EXPOSE 70000", "invalid containerPort: 70000"),
        ("EXPOSE abc", "invalid containerPort: abc"),
        ("EXPOSE -80", "invalid containerPort: -80"),
        ("EXPOSE 90-80", "invalid containerPort: 90-80"),
        ("EXPOSE +80", "invalid containerPort: +80"),
        ("EXPOSE 8080:", "invalid proto: "),
        ("EXPOSE 80:80-81", "invalid ranges specified for container and host Ports: 80-81 and 80"),
        ("EXPOSE x:80", "invalid hostPort: x"),
        ("EXPOSE 1.2.3:80:80", "invalid IP address: 1.2.3"),
        ("EXPOSE [::1:80:80", "invalid IP address [::1: address [::1:: missing ']' in address"),
        ("EXPOSE [::1]x:80:80", "invalid IP address [::1]x: address [::1]x:: missing port in address"),
        ("EXPOSE --x 80", "unknown flag: --x"),
    ],
)
def test_expose_errors(change, message):
    assert error([change]) == message


# -- USER / WORKDIR / VOLUME / STOPSIGNAL ----------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "user"),
    [
        ("USER test", "test"),
        ("USER 1000:1000", "1000:1000"),
        ("USER $U", "app"),
        ("USER ${U}:${G:-staff}", "app:staff"),
        ("USER \"a b\"", "a b"),
        ("USER a b", "a b"),
        ("USER $NOPE", ""),
    ],
)
def test_user(change, user):
    assert apply([change], {"Env": ["U=app"], "User": "old"})["User"] == user


@pytest.mark.parametrize(
    ("changes", "current", "workdir"),
    [
        (["WORKDIR /app"], "", "/app"),
        (["WORKDIR /a", "WORKDIR b", "WORKDIR c"], "", "/a/b/c"),
        (["WORKDIR b"], "/a", "/a/b"),
        (["WORKDIR b"], "", "/b"),
        (["WORKDIR ../b"], "/a", "/b"),
        (["WORKDIR ../../.."], "/a", "/"),
        (["WORKDIR /a/../b/./c/"], "", "/b/c"),
        (["WORKDIR //a//b"], "", "/a/b"),
        (["WORKDIR $HOME/src"], "", "/root/src"),
        (["WORKDIR ${D:-data}"], "/srv", "/srv/data"),
        (["WORKDIR \"/with space\""], "", "/with space"),
    ],
)
def test_workdir(changes, current, workdir):
    assert apply(changes, {"WorkingDir": current, "Env": ["HOME=/root"]})["WorkingDir"] == workdir


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("USER", "USER requires exactly one argument"),
        ("WORKDIR", "WORKDIR requires exactly one argument"),
        ("WORKDIR $NOPE", "cannot normalize nothing"),
        ("STOPSIGNAL", "STOPSIGNAL requires exactly one argument"),
        ("VOLUME", "VOLUME requires at least one argument"),
        ("VOLUME []", "VOLUME requires at least one argument"),
        ('VOLUME ["/a", " "]', "VOLUME specified can not be an empty string"),
        ("VOLUME $NOPE", "VOLUME specified can not be an empty string"),
        ("USER --x=y root", "unknown flag: --x"),
        ("WORKDIR --chown=1 /a", "unknown flag: --chown"),
    ],
)
def test_argument_errors(change, message):
    assert error([change]) == message


@pytest.mark.parametrize(
    ("changes", "volumes"),
    [
        (["VOLUME /foo"], {"/foo": {}}),
        (["VOLUME /a /b"], {"/a": {}, "/b": {}}),
        (['VOLUME ["/c", "/d e"]'], {"/c": {}, "/d e": {}}),
        (["VOLUME $V"], {"/data": {}}),
        (["VOLUME /a", "VOLUME /a"], {"/a": {}}),
    ],
)
def test_volume(changes, volumes):
    assert apply(changes, {"Env": ["V=/data"]})["Volumes"] == volumes


def test_volume_adds_to_existing():
    assert apply(["VOLUME /b"], {"Volumes": {"/a": {}}})["Volumes"] == {"/a": {}, "/b": {}}


@pytest.mark.parametrize(
    "signal",
    ["SIGKILL", "KILL", "sigterm", "term", "9", "+9", "-9", "SIGRTMIN+3", "RTMAX-14", "SIGRTMAX", "$SIG", "SIGUSR1"],
)
def test_stopsignal(signal):
    out = apply([f"STOPSIGNAL {signal}"], {"Env": ["SIG=SIGQUIT"]})
    assert out["StopSignal"] == ("SIGQUIT" if signal == "$SIG" else signal)


@pytest.mark.parametrize(
    ("signal", "message"),
    [
        ("FOO", "invalid signal: FOO"),
        ("0", "invalid signal: 0"),
        ("SIGRTMIN+16", "invalid signal: SIGRTMIN+16"),
        ("SIGUNUSED", "invalid signal: SIGUNUSED"),
        ("$NOPE", "invalid signal: "),
        ("99999999999999999999", "invalid signal: 99999999999999999999"),
    ],
)
def test_stopsignal_errors(signal, message):
    assert error([f"STOPSIGNAL {signal}"]) == message


def test_stopsignal_windows():
    assert error(["STOPSIGNAL SIGKILL"], os="windows") == (
        "The daemon on this platform does not support the command stopsignal"
    )
    # the other instructions are fine for a Windows image
    assert apply(["USER ContainerUser"], os="windows") == {"User": "ContainerUser"}


# -- ONBUILD ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "onbuild"),
    [
        (["ONBUILD ADD . /app/src"], ["ADD . /app/src"]),
        (["ONBUILD RUN echo $HOME"], ["RUN echo $HOME"]),  # not expanded
        (["onbuild  run  x"], ["run  x"]),
        (["ONBUILD RUN a \\\n  b"], ["RUN a   b"]),
        (["ONBUILD ENV a=b", "ONBUILD LABEL x=y"], ["ENV a=b", "LABEL x=y"]),
        (["ONBUILD FOO bar"], ["FOO bar"]),  # any trigger but ONBUILD, FROM, MAINTAINER
        (["ONBUILD RUN <<EOF\necho hi\nEOF"], ["RUN <<EOF\necho hi\nEOF"]),
        (["ONBUILD RUN <<-EOF\n\techo hi\n\tEOF"], ["RUN <<-EOF\n\techo hi\nEOF"]),
        (['ONBUILD RUN ["a", "<<EOF"]'], ['RUN ["a", "<<EOF"]']),
    ],
)
def test_onbuild(changes, onbuild):
    assert apply(changes, {"OnBuild": None})["OnBuild"] == onbuild


def test_onbuild_appends():
    assert apply(["ONBUILD RUN b"], {"OnBuild": ["RUN a"]})["OnBuild"] == ["RUN a", "RUN b"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("ONBUILD", "ONBUILD requires at least one argument"),
        ("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        ("ONBUILD FROM busybox", "FROM isn't allowed as an ONBUILD trigger"),
        ("ONBUILD maintainer me", "MAINTAINER isn't allowed as an ONBUILD trigger"),
        ("ONBUILD ENV a", "ENV must have two arguments"),
        ("ONBUILD RUN <<EOF\necho", "unterminated heredoc"),
        ("ONBUILD RUN [1]", "when using JSON array syntax, arrays must be comprised of strings only"),
    ],
)
def test_onbuild_errors(change, message):
    assert error([change]) == message


# -- HEALTHCHECK ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "health"),
    [
        ("HEALTHCHECK NONE", {"Test": ["NONE"]}),
        ("HEALTHCHECK none", {"Test": ["NONE"]}),
        ("HEALTHCHECK --interval=5s NONE", {"Test": ["NONE"]}),  # flags are not read for NONE
        ("HEALTHCHECK CMD curl -f http://localhost/ || exit 1", {"Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]}),
        ('HEALTHCHECK CMD ["curl", "-f", "http://localhost/"]', {"Test": ["CMD", "curl", "-f", "http://localhost/"]}),
        ("healthcheck cmd true", {"Test": ["CMD-SHELL", "true"]}),
        (
            "HEALTHCHECK --interval=5m --timeout=3s --start-period=1m30s --start-interval=2s --retries=3 CMD true",
            {
                "Test": ["CMD-SHELL", "true"],
                "Interval": 300_000_000_000,
                "Timeout": 3_000_000_000,
                "StartPeriod": 90_000_000_000,
                "StartInterval": 2_000_000_000,
                "Retries": 3,
            },
        ),
        ("HEALTHCHECK --interval=0s --retries=0 CMD true", {"Test": ["CMD-SHELL", "true"]}),
        ("HEALTHCHECK --interval=1ms CMD true", {"Test": ["CMD-SHELL", "true"], "Interval": 1_000_000}),
        ("HEALTHCHECK --interval=\"10s\" CMD true", {"Test": ["CMD-SHELL", "true"], "Interval": 10_000_000_000}),
    ],
)
def test_healthcheck(change, health):
    out = apply([change], {"Healthcheck": {"Test": ["CMD", "old"], "Retries": 9}})
    assert out["Healthcheck"] == health


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
        ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
        ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK CMD []", "Missing command after HEALTHCHECK CMD"),
        ("HEALTHCHECK FOO bar", 'Unknown type "FOO" in HEALTHCHECK (try CMD)'),
        ("HEALTHCHECK --interval=1us CMD true", 'Interval "interval" cannot be less than 1ms'),
        ("HEALTHCHECK --timeout=-1s CMD true", 'Interval "timeout" cannot be less than 1ms'),
        ("HEALTHCHECK --start-period=x CMD true", 'time: invalid duration "x"'),
        ("HEALTHCHECK --interval=5 CMD true", 'time: missing unit in duration "5"'),
        ("HEALTHCHECK --retries=-1 CMD true", "--retries cannot be negative (-1)"),
        ("HEALTHCHECK --retries=x CMD true", 'strconv.ParseInt: parsing "x": invalid syntax'),
        ("HEALTHCHECK --retries=4294967296 CMD true", 'strconv.ParseInt: parsing "4294967296": value out of range'),
        ("HEALTHCHECK --intervl=5s CMD true", "unknown flag: --intervl (did you mean interval?)"),
        ("HEALTHCHECK --foo=5s CMD true", "unknown flag: --foo"),
        ("HEALTHCHECK --interval CMD true", "missing a value on flag: --interval"),
        ("HEALTHCHECK --interval=1s --interval=2s CMD true", "duplicate flag specified: --interval"),
        ("HEALTHCHECK CMD [1]", "when using JSON array syntax, arrays must be comprised of strings only"),
    ],
)
def test_healthcheck_errors(change, message):
    assert error([change]) == message


# -- flags ----------------------------------------------------------------------------------


def test_double_dash_ends_flags():
    assert apply(["CMD -- --not-a-flag"])["Cmd"] == [*SH, "--not-a-flag"]


def test_double_dash_alone():
    assert error(["USER --"]) == "USER requires exactly one argument"


def test_flag_quoting():
    out = apply(['HEALTHCHECK --interval="1s" CMD true'])
    assert out["Healthcheck"]["Interval"] == 1_000_000_000


# -- a whole commit ---------------------------------------------------------------------------


def test_docker_py_style_single_string():
    changes = ["ENV FOO=bar\nLABEL org.example=yes\nCMD [\"/bin/app\", \"--serve\"]\nEXPOSE 8080\nWORKDIR /srv\nUSER app"]
    config = {"Env": ["PATH=/usr/bin"], "Cmd": ["sh"], "Image": "sha256:0"}
    assert apply(changes, config) == {
        "Env": ["PATH=/usr/bin", "FOO=bar"],
        "Labels": {"org.example": "yes"},
        "Cmd": ["/bin/app", "--serve"],
        "ExposedPorts": {"8080/tcp": {}},
        "WorkingDir": "/srv",
        "User": "app",
        "Image": "sha256:0",
    }


def test_cli_style_repeated_changes():
    changes = ['ENTRYPOINT ["/entry"]', "CMD --help", "ENV A=1"]
    assert error(changes) == "unknown flag: --help"
    changes = ['ENTRYPOINT ["/entry"]', 'CMD ["--help"]', "ENV A=1"]
    assert apply(changes, {"Cmd": ["x"]}) == {"Entrypoint": ["/entry"], "Cmd": ["--help"], "Env": ["A=1"]}


# -- the shell lexer (BuildKit's envVarTest and wordsTest) -------------------------------------

ENVS = _Env(["PWD=/home", "SHELL=bash", "KOREAN=한국어", "NULL="])

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
    lex = _Lex("\\")
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
        _Lex("\\").process_word(source, ENVS)
    assert str(exc.value) == f"failed to process {_go(source)}: {message}"


def _go(s: str) -> str:
    from dockwright.timestamps import go_quote

    return go_quote(s)


def test_process_word_backtick_escape():
    lex = _Lex("`")
    assert lex.process_word("a`$PWD", ENVS) == "a$PWD"
    assert lex.process_word("C:\\dir", ENVS) == "C:\\dir"


WORD_ENVS = _Env(["hi=hi", "space=abc  def", "leading=  ab c", "trailing=ab c   "])


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
    assert _Lex("\\").process_words(source, WORD_ENVS) == words


def test_process_words_unterminated():
    with pytest.raises(Exception, match="unexpected end of statement"):
        _Lex("\\").process_words('hello" there', WORD_ENVS)


# -- hostile input: linear time, bounded sizes (issue 10) -----------------------------------------------------

import gc  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from dockwright.build import changes as _c  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def test_sixteen_doublings_expand_in_linear_time():
    lex = _Lex("\\")

    def doublings():
        out = "abcdefgh"
        for _ in range(16):
            out = lex.process_word("${X}${X}", _Env([f"X={out}"]))
        return out

    out, took = _timed(doublings)
    assert took < 1.0
    assert out == "abcdefgh" * (1 << 16)
    words, took = _timed(lambda: lex.process_words("a ${X} b", _Env([f"X={'x y ' * (1 << 17)}"])))
    assert took < 1.0 and len(words) == 2 + (1 << 18)


def test_an_expansion_past_the_limit_is_refused_quickly():
    big = "a" * (1 << 19)
    lex = _Lex("\\")
    assert len(lex.process_word("${X}${X}", _Env([f"X={big}"]))) == _c.MAX_EXPANDED_SIZE  # at the limit: fine
    for word in ("${X}${X}${X}", '"${X}${X}${X}"', "${X:-a}${X}${X}", "${X//a/aaa}", "${X}" * 100_000):
        with pytest.raises(_c._Error) as exc:
            _timed(lambda: lex.process_word(word, _Env([f"X={big}"])))
        msg = str(exc.value)
        assert msg.endswith("the expansion exceeds the maximum allowed size of 1048576 characters"), msg
        assert len(msg) < 300  # the source is quoted shortened
    _, took = _timed(lambda: pytest.raises(_c._Error, lex.process_word, "${X}" * 100_000, _Env([f"X={big}"])))
    assert took < 1.0


def test_literal_runs_and_quotes_are_taken_at_once():
    lex = _Lex("\\")
    text = "x" * 60_000
    assert lex.process_word(f"'{text}'\"{text}\"{text}", _Env([])) == text * 3
    assert lex.process_words(f"{text} {text}", _Env([])) == [text, text]
    (_, took) = _timed(lambda: [lex.process_word(f"'{text}'\"{text}\"{text}", _Env([])) for _ in range(20)])
    assert took < 1.0


def _backtracking_regex(pattern, greedy, anchored):
    """The regular expression BuildKit's ``convertShellPatternToRegex`` makes (what Go's regexp runs)."""
    out, star = (["^"] if anchored else []), (".*" if greedy else ".*?")
    for tok in _c._pattern_tokens(pattern):
        out.append(star if tok == _c._STAR else "." if tok == _c._ANY else re.escape(tok))
    return re.compile("".join(out))


def test_shell_patterns_match_as_the_regular_expression_does():
    """Leftmost-first spans, newlines that neither ``*`` nor ``?`` cross, greedy and not: the linear matcher agrees
    with the backtracking one on every small case tried."""
    rng = random.Random(10)
    for _ in range(20_000):
        pat = "".join(rng.choice("ab*?\n") for _ in range(rng.randint(0, 6)))
        val = "".join(rng.choice("ab\n") for _ in range(rng.randint(0, 10)))
        greedy = rng.random() < 0.5
        p = _c._ShellPattern(pat, greedy)
        m = _backtracking_regex(pat, greedy, True).match(val)
        assert p.match_prefix(val) == (None if m is None else m.end()), (pat, val, greedy)
        pos = rng.randint(0, len(val))
        m = _backtracking_regex(pat, greedy, False).search(val, pos)
        assert p.search(_c._Text(val), pos) == (None if m is None else m.span()), (pat, val, greedy, pos)


def test_shell_patterns_do_not_backtrack():
    env = _Env(["X=" + "a" * ((1 << 20) - 16), "Y=" + "a\n" * 200_000])
    lex = _Lex("\\")
    for word in ("${X#*a*a*a*a*a*a*a*b}", "${X##*a*a*a*a*a*b}", "${X%a*a*a*a*a*b}", "${X%%*a*a*a*a*b}",
                 "${X/a*a*a*a*b/c}", "${X//a*a*a*b/c}", "${Y//a*a*b/c}", "${Y/#a*a*b/}"):
        out, took = _timed(lambda: lex.process_word(word, env))
        assert took < 1.0, (word, took)
    assert lex.process_word("${X#*a*b}", env) == env.get("X")[0]
    assert lex.process_word("${X##*a}", env) == ""
    assert lex.process_word("${X%%a*}", env) == ""


def test_continuation_lines_parse_in_linear_time():
    data = ("FROM b\nRUN true \\\n" + "  && true \\\n" * 200_000 + "  && true\n").encode()
    (nodes, _), took = _timed(lambda: _c.parse_dockerfile(data))
    assert took < 2.0
    assert nodes[1].original == "RUN true " + "  && true " * 200_000 + "  && true"
    data = b"FROM b\n" + b"# comment\n\n   \n" * 500_000 + b"LABEL a=b \\\n" + b"\\\n" * 1_000_000 + b"c=d\n"
    (nodes, _), took = _timed(lambda: _c.parse_dockerfile(data))
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
    nodes, _ = _parse(text)
    assert [(n.original, n.start_line) for n in nodes[1:]] == instructions


def test_heredocs_are_read_at_once():
    body = "line\n" * 300_000
    text = f"FROM a\nRUN <<EOF\n{body}EOF\nCOPY <<-X <<Y /d\n\t\tone\n\tX\ntwo\nY\nRUN z\n"
    (nodes, _), took = _timed(lambda: _parse(text))
    assert took < 1.0
    assert nodes[1].heredocs[0].content == body and nodes[1].heredocs[0].name == "EOF"
    assert [(h.name, h.content, h.chomp) for h in nodes[2].heredocs] == [("X", "\t\tone\n", True), ("Y", "two\n", False)]
    assert (nodes[3].original, nodes[3].start_line) == ("RUN z", 300_009)
    with pytest.raises(_c._Error, match="unterminated heredoc"):
        _parse("FROM a\nRUN <<EOF\nx\nEOFX\n")


def test_a_dockerfile_past_the_limit_is_refused_before_parsing():
    data = b"FROM a\n" + b"#" * _c.MAX_DOCKERFILE_SIZE
    with pytest.raises(InvalidArgument) as exc:
        _c.parse_dockerfile(data, "sub/Dockerfile.dev")
    assert str(exc.value) == "sub/Dockerfile.dev exceeds maximum allowed size of 16777216 bytes"


def test_a_large_dockerfile_parses_in_bounded_time_and_leaves_the_collector_as_it_was():
    data = b"FROM b\n" + b"LABEL a=b\n" * 200_000
    assert gc.isenabled()
    (nodes, _), took = _timed(lambda: _c.parse_dockerfile(data))
    assert len(nodes) == 200_001 and took < 8.0
    assert gc.isenabled()


def test_a_parse_stops_when_cancelled():
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(_c.ParseCancelled):
        _c.parse_dockerfile(b"FROM a\nRUN b\n", cancel=cancel)
    assert gc.isenabled()


def test_env_size_limit():
    _c.check_env_size(["A=" + "x" * (_c.MAX_ENV_SIZE - 2)], "ARG")
    with pytest.raises(InvalidArgument, match="^ENV: the environment and build arguments of the stage exceed the "
                                              "maximum allowed size of 4194304 characters$"):
        _c.check_env_size(["A=" + "x" * (_c.MAX_ENV_SIZE - 3), "B=1"], "ENV")


def test_env_with_many_pairs_is_linear():
    pairs = " ".join(f"k{i}=v" for i in range(7_000)) + " k5=w"
    config, took = _timed(lambda: apply([f"ENV {pairs}"], {"Env": ["k0=old", "PATH=/bin"]}))
    assert took < 2.0
    assert config["Env"][:2] == ["k0=v", "PATH=/bin"] and config["Env"][6] == "k5=w" and len(config["Env"]) == 7_001


def test_the_limit_is_on_what_variables_add():
    """A word of literal text (a large COPY heredoc, say) is never refused: the Dockerfile's size bounds it."""
    lex = _Lex("\\")
    lex.skip_process_quotes = True
    text = "x'\"" * (1 << 20)
    assert lex.process_word(text + "$X", _Env(["X=" + "y" * 1000])) == text + "y" * 1000
    with pytest.raises(_c._Error, match="the expansion exceeds"):
        lex.process_word(text + "$X", _Env(["X=" + "y" * ((1 << 20) + 10)]))
