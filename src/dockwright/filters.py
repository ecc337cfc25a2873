"""The ``filters`` query parameter: a port of moby ``api/types/filters`` (``Args``, ``parse.go``).

On the wire a filter set is JSON, ``{"key": {"value": true}}``; the deprecated form
``{"key": ["value"]}`` (API < 1.22, still sent by some clients) is read too. A key maps to a set of
values; the matching helpers (:meth:`Filters.exact_match`, :meth:`Filters.fuzzy_match`,
:meth:`Filters.match_kv_list`…) have moby's semantics, including "no value for the key matches
everything". Errors are :class:`InvalidArgument` with moby's words (``invalid filter 'foo'``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping

from .errors import InvalidArgument

__all__ = ["Filters"]


def _invalid_filter(name: str = "", values: list[str] | None = None) -> InvalidArgument:
    """moby's ``invalidFilter`` error: ``invalid filter``, ``invalid filter 'k'``, ``invalid filter 'k=[a b]'``."""
    msg = "invalid filter"
    if name:
        msg += " '" + name
        if values is not None:
            msg += "=[" + " ".join(values) + "]"
        msg += "'"
    return InvalidArgument(msg)


class _Invalid(Exception):
    pass


def _reject_constant(_: str) -> object:
    raise _Invalid  # NaN / Infinity are not JSON to Go


def _go_json(raw: str) -> object:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, _Invalid, RecursionError):
        raise _Invalid from None


def _fix_str(s: str) -> str:
    # Go replaces lone surrogates (from "\ud800" escapes) by U+FFFD.
    if any(0xD800 <= ord(c) <= 0xDFFF for c in s):
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in s)
    return s


def _decode_current(doc: object) -> dict[str, dict[str, bool] | None] | None:
    """``json.Unmarshal`` into ``map[string]map[string]bool``; None when Go would fail."""
    if doc is None:
        return {}  # JSON null leaves the (empty) map as it is
    if not isinstance(doc, dict):
        return None
    fields: dict[str, dict[str, bool] | None] = {}
    for key, values in doc.items():
        if values is None:
            fields[_fix_str(key)] = None
            continue
        if not isinstance(values, dict):
            return None
        inner: dict[str, bool] = {}
        for value, flag in values.items():
            if flag is None:
                flag = False  # null into a bool leaves it false
            elif not isinstance(flag, bool):
                return None
            inner[_fix_str(value)] = flag
        fields[_fix_str(key)] = inner
    return fields


def _decode_legacy(doc: object) -> dict[str, dict[str, bool] | None] | None:
    """``json.Unmarshal`` into ``map[string][]string`` then ``deprecatedArgs``; None on failure."""
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        return None
    fields: dict[str, dict[str, bool] | None] = {}
    for key, values in doc.items():
        inner: dict[str, bool] = {}
        if values is not None:
            if not isinstance(values, list):
                return None
            for value in values:
                if value is None:
                    value = ""  # null into a string leaves it empty
                elif not isinstance(value, str):
                    return None
                inner[_fix_str(value)] = True
        fields[_fix_str(key)] = inner
    return fields


class Filters:
    """A mapping of filter keys to sets of values (moby's ``filters.Args``).

    Values keep the order in which they were first seen; a value may map to ``False`` when the
    client sent ``{"key": {"value": false}}`` (moby keeps those: :meth:`get` lists them, the
    matchers ignore them).
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, Mapping[str, bool] | None] | None = None) -> None:
        self._fields: dict[str, dict[str, bool] | None] = {}
        if fields:
            for key, values in fields.items():
                self._fields[key] = None if values is None else dict(values)

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def parse(cls, raw: str | bytes | None) -> Filters:
        """moby's ``FromJSON``: the ``filters`` query parameter; ``""``/``None`` is empty.

        Both ``{"key":{"value":true}}`` and the deprecated ``{"key":["value"]}`` are accepted;
        anything else raises :class:`InvalidArgument` ``invalid filter``.
        """
        if raw is None:
            return cls()
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        if raw == "":
            return cls()
        try:
            doc = _go_json(raw)
        except _Invalid:
            raise _invalid_filter() from None
        fields = _decode_current(doc)
        if fields is None:
            fields = _decode_legacy(doc)
            if fields is None:
                raise _invalid_filter()
        out = cls()
        out._fields = fields
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Iterable[str] | Mapping[str, bool] | str] | None) -> Filters:
        """Build filters in Python code: ``{"label": ["a=b"], "dangling": "true"}``.

        A value may be one string, an iterable of strings, or a ``{value: bool}`` mapping.
        """
        out = cls()
        for key, values in (d or {}).items():
            if isinstance(values, str):
                out.add(key, values)
            elif isinstance(values, Mapping):
                out._fields[key] = {str(v): bool(flag) for v, flag in values.items()}
            else:
                out._fields.setdefault(key, {})
                for value in values:
                    out.add(key, value)
        return out

    def add(self, key: str, value: str) -> None:
        """Add ``value`` to the set at ``key``."""
        values = self._fields.get(key)
        if values is None:
            self._fields[key] = {value: True}
        else:
            values[value] = True

    def delete(self, key: str, value: str) -> None:
        """Remove ``value`` from ``key``; the key goes when its last value does (moby's ``Del``)."""
        if key in self._fields:
            values = self._fields[key]
            if values is not None:
                values.pop(value, None)
            if not values:
                del self._fields[key]

    def clone(self) -> Filters:
        """An independent copy: changing it leaves this one as it is."""
        return Filters(self._fields)

    # -- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, dict[str, bool]]:
        """The wire form, ``{"key": {"value": true}}``."""
        return {k: dict(v or {}) for k, v in self._fields.items()}

    def to_json(self) -> str:
        """moby's ``ToJSON``: ``""`` when empty, else the JSON of :meth:`to_dict`."""
        if not self._fields:
            return ""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    # -- queries ---------------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """The filter names given, in the order they were first set."""
        return list(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __bool__(self) -> bool:
        return bool(self._fields)

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __contains__(self, key: object) -> bool:
        return key in self._fields

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Filters):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Filters({self.to_dict()!r})"

    def contains(self, key: str) -> bool:
        """Whether ``key`` was given at all (even with no value)."""
        return key in self._fields

    def get(self, key: str) -> list[str]:
        """The values at ``key`` (every value sent, as moby's ``Get``), ``[]`` if none."""
        return list(self._fields.get(key) or ())

    def validate(self, accepted: Iterable[str]) -> None:
        """Raise ``invalid filter 'k'`` for the first key not in ``accepted``."""
        allowed = set(accepted)
        for name in self._fields:
            if name not in allowed:
                raise _invalid_filter(name)

    def walk_values(self, key: str) -> list[str]:
        """The values at ``key``, as :meth:`get` (named after moby's ``WalkValues``, which calls a function on each)."""
        return self.get(key)

    # -- matching --------------------------------------------------------------------------------

    def exact_match(self, key: str, source: str) -> bool:
        """True when no value is set at ``key``, or ``source`` is one of the values."""
        values = self._fields.get(key)
        if not values:
            return True
        return values.get(source, False)

    def unique_exact_match(self, key: str, source: str) -> bool:
        """True when no value is set, or exactly one value is set and it is ``source``."""
        values = self._fields.get(key)
        if not values:
            return True
        if len(values) != 1:
            return False
        return values.get(source, False)

    def fuzzy_match(self, key: str, source: str) -> bool:
        """True when :meth:`exact_match` is, or ``source`` starts with one of the values."""
        if self.exact_match(key, source):
            return True
        return any(source.startswith(prefix) for prefix in self._fields.get(key) or ())

    def match(self, key: str, source: str) -> bool:
        """moby's ``Match``: an exact match, or a value that is a regular expression found in
        ``source`` (values that are not valid expressions are skipped)."""
        if self.exact_match(key, source):
            return True
        for pattern in self._fields.get(key) or ():
            try:
                if re.search(pattern, source):
                    return True
            except (re.error, RecursionError):
                continue
        return False

    def match_kv_list(self, key: str, sources: Mapping[str, str] | None) -> bool:
        """Label semantics: every value at ``key`` (``k`` or ``k=v``) must be in ``sources``.

        No value at ``key`` matches everything; empty ``sources`` then match nothing.
        """
        values = self._fields.get(key)
        if not values:
            return True
        if not sources:
            return False
        for value in values:
            test_key, sep, test_value = value.partition("=")
            if test_key not in sources:
                return False
            if sep and sources[test_key] != test_value:
                return False
        return True

    def match_labels(self, labels: Mapping[str, str] | None) -> bool:
        """A prune's label filters, as dockerd's: every ``label`` (``k`` or ``k=v``) matches and no ``label!``
        does."""
        if not self.match_kv_list("label", labels):
            return False
        return not (self.contains("label!") and self.match_kv_list("label!", labels))

    def get_bool_or_default(self, key: str, default: bool) -> bool:
        """The boolean at ``key`` (``1``/``true`` or ``0``/``false``), ``default`` if not given.

        Raises ``invalid filter 'k=[v…]'`` for other, or conflicting, values and
        ``invalid filter 'k'`` for a key with no value.
        """
        if key not in self._fields:
            return default
        values = self._fields[key]
        if not values:
            raise _invalid_filter(key)
        is_false = values.get("0", False) or values.get("false", False)
        is_true = values.get("1", False) or values.get("true", False)
        if is_false == is_true:
            raise _invalid_filter(key, self.get(key))
        return is_true
