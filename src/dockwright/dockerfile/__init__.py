"""Dockerfiles: BuildKit's parser and shell lexer, the typed instructions, and the dispatchers that apply them to a
config (``POST /build`` metadata steps, ``docker commit -c`` and ``docker import -c`` changes).

``parser`` reads the text into :class:`Node` trees, ``shell`` expands words (:class:`Lex` against an :class:`Env`),
``instructions`` types and checks them, ``dispatch`` applies them; ``text`` and ``patterns`` serve them.
"""

from __future__ import annotations

from .dispatch import (
    BUILDER_METADATA_COMMANDS,
    Dispatched,
    apply_changes,
    builder_dispatch,
    check_env_size,
    go_duration,
    parse_dockerfile,
)
from .instructions import VALID_CHANGE_COMMANDS, validate_instruction
from .parser import Heredoc, Node, ParseCancelled, parse, parse_heredoc
from .shell import Env, Lex
from .text import MAX_DOCKERFILE_SIZE, MAX_ENV_SIZE, MAX_EXPANDED_SIZE, DockerfileError

__all__ = [
    "BUILDER_METADATA_COMMANDS",
    "MAX_DOCKERFILE_SIZE",
    "MAX_ENV_SIZE",
    "MAX_EXPANDED_SIZE",
    "VALID_CHANGE_COMMANDS",
    "DockerfileError",
    "Dispatched",
    "Env",
    "Heredoc",
    "Lex",
    "Node",
    "ParseCancelled",
    "apply_changes",
    "builder_dispatch",
    "check_env_size",
    "go_duration",
    "parse",
    "parse_dockerfile",
    "parse_heredoc",
    "validate_instruction",
]
