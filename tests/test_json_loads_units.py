"""``worker.core.json_loads``: orjson's answer for every value, without importing orjson for
the values the standard library reads the same way (what ``check`` decodes).

Answers are compared by ``repr``: types (``1`` and ``1.0``, ``True``), ``-0.0`` and key order
count, as they do in what a probe prints.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.helpers import REPO
from tests.support.processes import run as run_process
from worker.core.json_loads import _NO_ANSWER, _standard, loads


def _orjson(raw: Any) -> tuple[str, ...]:
    try:
        return ("value", repr(orjson.loads(raw)))
    except Exception as exc:  # the error is part of the answer (a reason quotes it)
        return ("error", type(exc).__name__, str(exc))


def _assert_orjsons(raw: Any) -> None:
    """The standard library's answer is orjson's, or there is none."""
    value = _standard(raw)
    if value is not _NO_ANSWER:
        assert ("value", repr(value)) == _orjson(raw), raw


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                               max_size=4),
    max_leaves=20)

NUMBERS = st.from_regex(r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,30})?([eE][-+]?[0-9]{1,4})?",
                        fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.booleans())
def test_json_documents_read_as_orjson_reads_them(value: Any, ascii_only: bool) -> None:
    """NaN and infinities written as ``json`` writes them, integers past 64 bits, escapes."""
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    _assert_orjsons(text.encode())
    _assert_orjsons(text)


@settings(max_examples=500, deadline=None)
@given(NUMBERS)
def test_numbers_read_as_orjson_reads_them(text: str) -> None:
    _assert_orjsons(text.encode())
    _assert_orjsons(f'{{"n": [{text}]}}'.encode())


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=32).map(str.encode))
def test_any_bytes_read_as_orjson_reads_them(raw: bytes) -> None:
    _assert_orjsons(raw)
    _assert_orjsons(b'{"a": "' + raw + b'"}')


@pytest.mark.parametrize("raw", [
    b"NaN", b"[Infinity]", b"-Infinity", b"1e400", b"-1e400", b"1.7976931348623159e308",
    str(2**64).encode(), str(-(2**63) - 1).encode(), b"1" * 5000,  # orjson: a float
    b'"\\ud800"', b'"\\uDC00x"', b'"\\ud83d\\ude00"',  # surrogate escapes, alone or paired
    "\ud800".encode(errors="surrogatepass"), b"\xff", b'"\xc3"',  # not UTF-8
    b"\xef\xbb\xbf{}", b"[" * 1000 + b"]" * 1000, b"", b"{", b'{"a":1} x',
    "\ud800", bytearray(b"{}"), memoryview(b"[1]"), 7, None,
])
def test_what_the_standard_library_cannot_vouch_for_is_left_to_orjson(raw: Any) -> None:
    assert _standard(raw) is _NO_ANSWER


@pytest.mark.parametrize("raw", [
    b'{"seq": 42, "ts_ms": 1800000000000, "interval_s": 10, "queue_lag_ms": 3.0, '
    b'"checks": {"redis": {"status": "ok", "latency_ms": 0.1}}, "worker": null, "x": true}',
    str(2**64 - 1).encode(), str(-(2**63)).encode(), b"-0", b"-0.0", b"1E2", b"0.1e-400",
    b' \t\r\n[1, "\\u00e9\\n\\"", "\xc3\xa9"] ', b'{"a": 1, "a": 2, "b": 3}', '{"é": "ü"}',
])
def test_what_a_probe_reads_is_answered_by_the_standard_library(raw: Any) -> None:
    value = _standard(raw)
    assert value is not _NO_ANSWER
    assert ("value", repr(value)) == _orjson(raw)


def test_once_orjson_is_imported_it_answers_everything() -> None:
    assert "orjson" in sys.modules  # this test's own import
    assert repr(loads(b'{"a": [1, 2.5, null]}')) == "{'a': [1, 2.5, None]}"
    with pytest.raises(orjson.JSONDecodeError) as caught:
        loads(b"NaN")
    assert str(caught.value) == _orjson(b"NaN")[2]


SAMPLES: list[Any] = [
    b'{"seq": 1, "m": "x", "f": 1.5}', "[1, 2]", b"2", b"NaN", b"1e400", str(2**65).encode(),
    b'"\\ud800"', b"\xff", b"{", b"", bytearray(b"{}"), 7,
]


def test_without_orjson_loads_gives_its_answers_and_imports_it_only_when_needed() -> None:
    """In a fresh interpreter: every answer (value or error) is orjson's; the values the
    standard library reads alike leave orjson unimported."""
    code = ("import json, sys\n"
            "from worker.core.json_loads import loads\n"
            "out = []\n"
            "for raw in eval(sys.argv[1]):\n"
            "    try:\n"
            "        answer = ['value', repr(loads(raw))]\n"
            "    except Exception as exc:\n"
            "        answer = ['error', type(exc).__name__, str(exc)]\n"
            "    out.append([answer, 'orjson' in sys.modules])\n"
            "print(json.dumps(out))\n")
    done = run_process([sys.executable, "-c", code, repr(SAMPLES)], cwd=REPO,
                       capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(done.stdout)
    assert [tuple(answer) for answer, _ in out] == [_orjson(raw) for raw in SAMPLES]
    assert [imported for _, imported in out] == [False] * 3 + [True] * 9
