"""``orjson.loads`` for a value or two, without importing orjson unless it is needed.

orjson decodes every value the readers read: fast, and strict (NaN, infinities, invalid
UTF-8 and lone surrogates are errors, not values). Importing it, though, loads dataclasses,
inspect, uuid and platform: about 14 ms of CPU, a sixth of what ``check`` cost in all,
where ``check`` decodes one payload and a marker. So until something in the process has
imported orjson (``status``, ``serve``, the monitor, a fleet read), ``loads`` asks the
standard library's ``json`` first, and keeps its answer only where it is orjson's: any
error, NaN or an infinity, an integer orjson would make a float (outside -2**63..2**64-1),
a surrogate escape, text that is not UTF-8, goes to orjson instead. The value or the error
is always orjson's own (tests/test_json_loads_units.py compares the two).
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

_INT_RANGE = (-(2**63), 2**64 - 1)
"""The integers orjson returns as int: it makes any other a float."""

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""A ``\\uD800``-``\\uDFFF`` escape: half a pair, which orjson refuses alone."""


class _UnsureError(Exception):
    """A value the standard library reads differently from orjson."""


def _int(text: str) -> int:
    value = int(text)
    if not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        raise _UnsureError
    return value


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # orjson: "number is infinity when parsed as double"
        raise _UnsureError
    return value


def _constant(name: str) -> Any:
    raise _UnsureError  # NaN, Infinity, -Infinity: not JSON to orjson


_DECODER = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant)

_NO_ANSWER = object()


def _standard(raw: object) -> Any:
    """The standard library's value of ``raw`` where it is orjson's, else ``_NO_ANSWER``."""
    if type(raw) is bytes:
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return _NO_ANSWER
    elif type(raw) is str:
        text = raw
        try:
            text.encode()
        except UnicodeEncodeError:  # a lone surrogate in the text itself
            return _NO_ANSWER
    else:
        return _NO_ANSWER
    if _SURROGATE_ESCAPE.search(text):
        return _NO_ANSWER
    try:
        return _DECODER.decode(text)
    except Exception:  # any error, or _UnsureError: orjson says what it is
        return _NO_ANSWER


def loads(raw: Any) -> Any:
    """``orjson.loads(raw)``: the same value, or the same exception."""
    module = sys.modules.get("orjson")
    if module is None:
        value = _standard(raw)
        if value is not _NO_ANSWER:
            return value
        import orjson

        return orjson.loads(raw)
    return module.loads(raw)
