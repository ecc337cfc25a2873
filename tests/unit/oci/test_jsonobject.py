"""json_object: a JSON object or the caller's error with the decoder's words."""

from __future__ import annotations

import pytest

from dockwright.errors import InvalidArgument
from dockwright.oci.jsonobject import json_object


def test_object_returned() -> None:
    assert json_object(b'{"a": 1}', InvalidArgument, "bad") == {"a": 1}


def test_not_json_names_the_decoder_error() -> None:
    with pytest.raises(InvalidArgument, match=r"^bad: Expecting value") as info:
        json_object("nope", InvalidArgument, "bad")
    assert isinstance(info.value.__cause__, ValueError)


def test_not_an_object() -> None:
    with pytest.raises(InvalidArgument, match=r"^bad: not a JSON object$"):
        json_object(b"[1]", InvalidArgument, "bad")
