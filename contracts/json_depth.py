"""How deep JSON nests, measured without recursion, so a document too deep for the recursive
parser and serializers (contracts.limits, MAX_BODY_DEPTH) is refused as bad input."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from contracts.limits import MAX_BODY_DEPTH

# A string (skipped whole: brackets inside it are text) or one bracket.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


class JSONTooDeep(json.JSONDecodeError):
    """A document nested deeper than the cap: not JSON this service takes. A JSONDecodeError, so
    a reader that treats unparsable bodies as absent treats this one so too."""


def loads(raw: bytes | str, max_depth: int = MAX_BODY_DEPTH) -> Any:
    """`json.loads`, but JSONTooDeep for a document nested deeper than `max_depth`, found
    before parsing (UnicodeDecodeError and JSONDecodeError as `json.loads` raises them)."""
    text = raw.decode(json.detect_encoding(raw), "surrogatepass") if isinstance(raw, bytes) \
        else raw
    position = _too_deep_at(text, max_depth)
    if position is not None:
        raise JSONTooDeep(f"nested deeper than {max_depth} levels", text, position)
    return json.loads(text)


def _too_deep_at(text: str, max_depth: int) -> int | None:
    # Fewer brackets than the cap cannot nest past it: most bodies stop at this C-speed count.
    if text.count("[") + text.count("{") <= max_depth:
        return None
    depth = 0
    for token in _TOKEN.finditer(text):
        char = text[token.start()]
        if char in "[{":
            depth += 1
            if depth > max_depth:
                return token.start()
        elif char in "]}":
            depth -= 1
    return None


def nests_deeper(value: Any, max_depth: int) -> bool:
    """Whether a parsed value nests dicts and lists (or tuples) deeper than `max_depth`
    levels; `{}` is one level, as `{` is one in the text."""
    level = [value] if _container(value) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            return True
        level = [child for item in level for child in _children(item) if _container(child)]
    return False


def _container(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple)


def _children(value: Any) -> Any:
    return value.values() if isinstance(value, Mapping) else value
