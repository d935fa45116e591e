"""JSON depth, measured without recursion: the body check counts brackets outside strings as
the parser would nest them, and the value check agrees with it."""

from __future__ import annotations

import json

import pytest

from contracts.json_depth import JSONTooDeep, loads, nests_deeper


def brackets(levels: int) -> str:
    return "[" * levels + "]" * levels


@pytest.mark.parametrize(("text", "depth"), [
    ("1", 0), ("{}", 1), ("[[]]", 2), ('{"a": [1, {"b": 2}]}', 3),
    ('["[[[[", "\\"[[[["]', 1),  # brackets inside strings, escaped quotes too, do not count
    ('[{}, [], {"a": {}}]', 3),
])
def test_the_text_and_the_value_agree_on_the_depth(text: str, depth: int) -> None:
    assert loads(text, max_depth=depth) == json.loads(text)
    assert not nests_deeper(json.loads(text), depth)
    if depth > 0:
        with pytest.raises(JSONTooDeep):
            loads(text, max_depth=depth - 1)
        assert nests_deeper(json.loads(text), depth - 1)


def test_a_document_far_too_deep_for_the_parser_is_refused_before_parsing() -> None:
    with pytest.raises(JSONTooDeep) as refused:
        loads(brackets(100_000).encode(), max_depth=128)

    # A JSONDecodeError, so readers that skip an unparsable body skip this one too.
    assert isinstance(refused.value, json.JSONDecodeError)
    assert (refused.value.msg, refused.value.pos) == ("nested deeper than 128 levels", 128)


def test_bytes_as_the_parser_takes_them() -> None:
    assert loads('{"ü": [1]}'.encode("utf-16")) == {"ü": [1]}
    with pytest.raises(UnicodeDecodeError):
        loads(b'{"a": "\xff"}')
