"""api.request_body: the Content-Type check of a body that must be JSON (httputils.CheckForJSON), in dockerd's words."""

from __future__ import annotations

import pytest

from dockwright.api import request_body
from dockwright.errors import InvalidArgument


def test_check_content_type() -> None:
    request_body.check_content_type("application/json", True)
    request_body.check_content_type("application/json; charset=utf-8", True)
    request_body.check_content_type("", False)
    for ct in ("text/plain", ""):
        with pytest.raises(InvalidArgument) as exc:
            request_body.check_content_type(ct, True)
        assert str(exc.value) == f"Content-Type specified ({ct}) must be 'application/json'"


@pytest.mark.parametrize("ct,has_body", [("application/json", True), ("application/json; charset=utf-8", True),
                                         ("Application/JSON", True), (" application/json ", True), ("", False),
                                         ("application/json", False)])
def test_check_content_type_accepts(ct: str, has_body: bool) -> None:
    request_body.check_content_type(ct, has_body)


@pytest.mark.parametrize("ct", ["text/plain", "application/jsonx", "application/x-tar"])
def test_check_content_type_refuses_with_dockerds_words(ct: str) -> None:
    for has_body in (True, False):
        with pytest.raises(InvalidArgument) as exc:
            request_body.check_content_type(ct, has_body)
        assert str(exc.value) == f"Content-Type specified ({ct}) must be 'application/json'"
