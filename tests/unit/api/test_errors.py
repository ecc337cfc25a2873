"""Unit tests of api/errors.py: error kinds to status codes as dockerd maps them (IMPLEMENTER-NOTES §1), the
``{"message"}`` body, HEAD answers, and the in-band error line of a stream."""

from __future__ import annotations

import json

import pytest

from dockwright.api.errors import error_line, error_response, json_body, message_of, status_of, unwrap
from dockwright.errors import (
    AlreadyExists,
    Conflict,
    DataCorrupted,
    Forbidden,
    ImageNotFound,
    InvalidArgument,
    InvalidReference,
    NotFound,
    NotSupported,
    SystemError_,
    Unauthorized,
    Unavailable,
)


@pytest.mark.parametrize("exc,status", [
    (NotFound("x"), 404), (ImageNotFound("x"), 404), (InvalidArgument("x"), 400), (InvalidReference("x"), 400),
    (DataCorrupted("x"), 400), (Conflict("x"), 409), (AlreadyExists("x"), 409), (Unauthorized("x"), 401),
    (Forbidden("x"), 403), (Unavailable("x"), 503), (NotSupported("x"), 501), (SystemError_("x"), 500),
    (RuntimeError("x"), 500), (ValueError("x"), 500),
])
def test_status_of(exc: BaseException, status: int) -> None:
    assert status_of(exc) == status
    assert status_of(ExceptionGroup("g", [exc if isinstance(exc, Exception) else RuntimeError()])) == status


def test_unwrap_takes_the_first_leaf_of_nested_groups() -> None:
    inner = NotFound("deep")
    group = ExceptionGroup("outer", [ExceptionGroup("inner", [inner, Conflict("second")])])
    assert unwrap(group) is inner
    plain = Conflict("c")
    assert unwrap(plain) is plain


def test_message_of() -> None:
    assert message_of(NotFound("No such image: x")) == "No such image: x"
    assert message_of(KeyError()) == "KeyError"  # a bug without words still says something
    assert message_of(RuntimeError("boom")) == "boom"
    assert message_of(ExceptionGroup("g", [Conflict("in use")])) == "in use"


def test_error_response_body_and_status() -> None:
    resp = error_response(NotFound("No such container: <a&b>"))
    assert resp.status == 404 and resp.content_type == "application/json"
    assert resp.body == b'{"message":"No such container: <a&b>"}\n'  # WriteJSON: no HTML escaping
    head = error_response(Conflict("x"), head=True)
    assert head.status == 409 and not head.body


def test_json_body() -> None:
    resp = json_body([{"Id": "é"}], 201)
    assert resp.status == 201 and resp.headers["Content-Type"] == "application/json"
    assert resp.body == '[{"Id":"é"}]\n'.encode()
    assert json.loads(resp.body) == [{"Id": "é"}]


def test_error_line() -> None:
    assert error_line(InvalidArgument("a & b")) == (
        b'{"errorDetail":{"message":"a \\u0026 b"},"error":"a \\u0026 b"}\r\n')
    assert error_line(SystemError_("")) == b'{"errorDetail":{}}\r\n'  # omitempty
