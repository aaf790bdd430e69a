"""``jsontext.parse``: what it reads (the same values as Python's json for ordinary
documents) and what it refuses (deep nesting, not JSON), always as a ``ValueError``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blobgate.jsontext import MAX_DEPTH, parse

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=40,
)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(JSON)
def test_ordinary_documents_read_as_pythons_json_reads_them(value: Any) -> None:
    text = json.dumps(value)
    assert parse(text) == json.loads(text)
    assert parse(text.encode()) == json.loads(text)


def nest(depth: int, inner: str = "") -> str:
    """``depth`` levels of alternating arrays and objects around ``inner``."""
    text = inner
    for level in range(depth):
        text = f"[{text}]" if level % 2 else f'{{"k":{text or 0}}}'
    return text


def test_nesting_up_to_the_limit_is_read() -> None:
    assert parse(nest(MAX_DEPTH)) == json.loads(nest(MAX_DEPTH))
    assert parse(f'{{"a":1,"b":{nest(MAX_DEPTH - 1)}}}')["a"] == 1


@pytest.mark.parametrize("text", [nest(MAX_DEPTH + 1), "[" * 1000 + "]" * 1000,
                                  "[" * 3000 + "]" * 3000, '{"a":[1,2,' + nest(100) + "]}"])
def test_deeper_nesting_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"nested|depth"):
        parse(text)


@pytest.mark.parametrize("text", ["", "[", "{'a': 1}", "NaN", '"\\ud800"', "\xff", "[1,]"])
def test_what_is_not_json_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):  # any ValueError, with a message
        parse(text)
