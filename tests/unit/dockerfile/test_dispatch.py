"""The config changes of ``commit``/``import`` as dockerd's ``BuildFromConfig`` applies them (moby's
dispatchers tests), and the classic builder's metadata steps with the history texts dockerd 20.10 records."""

from __future__ import annotations

import time

import pytest
from changes_helpers import apply, error

from dockwright.dockerfile import (
    MAX_ENV_SIZE,
    VALID_CHANGE_COMMANDS,
    apply_changes,
    builder_dispatch,
    check_env_size,
    go_duration,
)
from dockwright.errors import InvalidArgument

SH = ["/bin/sh", "-c"]



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
        ("HEALTHCHECK CMD curl -f http://localhost/ || exit 1",
         {"Test": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]}),
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
    changes = ["ENV FOO=bar\nLABEL org.example=yes\nCMD [\"/bin/app\", \"--serve\"]\n"
               "EXPOSE 8080\nWORKDIR /srv\nUSER app"]
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


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def test_env_size_limit():
    check_env_size(["A=" + "x" * (MAX_ENV_SIZE - 2)], "ARG")
    with pytest.raises(InvalidArgument, match="^ENV: the environment and build arguments of the stage exceed the "
                                              "maximum allowed size of 4194304 characters$"):
        check_env_size(["A=" + "x" * (MAX_ENV_SIZE - 3), "B=1"], "ENV")


def test_env_with_many_pairs_is_linear():
    pairs = " ".join(f"k{i}=v" for i in range(7_000)) + " k5=w"
    config, took = _timed(lambda: apply([f"ENV {pairs}"], {"Env": ["k0=old", "PATH=/bin"]}))
    assert took < 2.0
    assert config["Env"][:2] == ["k0=v", "PATH=/bin"] and config["Env"][6] == "k5=w" and len(config["Env"]) == 7_001


@pytest.mark.parametrize(("instruction", "message"), [
    ('ENV A=1 B="two words"', "ENV A=1 B=two words"),
    ("ENV C $A", "ENV C=1"),
    ('LABEL l1=x "l 2"="y z"', "LABEL l1=x l 2=y z"),
    ("EXPOSE 8080 53/udp", "EXPOSE 53/udp 8080"),
    ("EXPOSE 80/tcp 1000-1002", "EXPOSE 1000-1002 80/tcp"),
    ("VOLUME /data /logs", "VOLUME [/data /logs]"),
    ('SHELL ["/bin/sh", "-c"]', "SHELL [/bin/sh -c]"),
    ("STOPSIGNAL SIGTERM", "STOPSIGNAL SIGTERM"),
    ("HEALTHCHECK --interval=5s --timeout=3s --retries=2 CMD cat /x.txt",
     """HEALTHCHECK &{["CMD-SHELL" "cat /x.txt"] "5s" "3s" "0s" '\\x02'}"""),
    ("HEALTHCHECK NONE", """HEALTHCHECK &{["NONE"] "0s" "0s" "0s" '\\x00'}"""),
    ("ONBUILD RUN echo onbuild", "ONBUILD RUN echo onbuild"),
    ('ENTRYPOINT ["/bin/sh", "-c"]', 'ENTRYPOINT ["/bin/sh" "-c"]'),
    ('CMD ["cat /x.txt"]', 'CMD ["cat /x.txt"]'),
    ("CMD echo hi", 'CMD ["/bin/sh" "-c" "echo hi"]'),
    ("WORKDIR rel", "WORKDIR /rel"),
    ("USER $E", "USER /p/q"),
    ("MAINTAINER $E", "MAINTAINER $E"),
])
def test_history_texts_are_dockerds(instruction: str, message: str) -> None:
    d = builder_dispatch({"Env": ["PATH=/bin"]}, instruction, env=["PATH=/bin", "A=1", "E=/p/q"])
    assert d.message == message


def test_builder_dispatch_config() -> None:
    d = builder_dispatch({"Env": ["PATH=/bin"], "Cmd": ["x"]}, "ENTRYPOINT top", cmd_set=False)
    assert d.config["Entrypoint"] == ["/bin/sh", "-c", "top"] and d.config["Cmd"] is None
    d = builder_dispatch({"Cmd": ["x"]}, "ENTRYPOINT top", cmd_set=True)
    assert d.config["Cmd"] == ["x"]
    d = builder_dispatch({}, "ENV X=$ARG", env=["ARG=from-arg"])
    assert d.config["Env"] == ["X=from-arg"]  # build args expand, but do not land in Env
    assert builder_dispatch({}, "MAINTAINER me").maintainer == "me"


def test_go_duration() -> None:
    assert [go_duration(n) for n in (0, 5_000_000_000, 90_000_000_000, 1_500_000_000, 3_600_000_000_000,
                                     100_000_000, 1_500)] == ["0s", "5s", "1m30s", "1.5s", "1h0m0s", "100ms", "1.5µs"]
