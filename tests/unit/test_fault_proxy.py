"""The fault proxy (tests/support/fault_proxy.py) knows a MongoDB request by its command, so that
a test can cut the connections at the next write of a kind."""

from __future__ import annotations

import struct

import bson

from tests.support.fault_proxy import command_name


def op_msg(body: dict[str, object], op_code: int = 2013) -> bytes:
    payload = struct.pack("<I", 0) + b"\x00" + bson.encode(body)
    return struct.pack("<iiii", 16 + len(payload), 7, 0, op_code) + payload


def test_a_request_is_known_by_its_command() -> None:
    assert command_name(op_msg({"insert": "tasks", "ordered": False})) == "insert"
    assert command_name(op_msg({"update": "tasks"})) == "update"
    assert command_name(op_msg({"find": "tasks", "filter": {}})) == "find"


def test_anything_else_has_no_command() -> None:
    assert command_name(op_msg({"insert": "tasks"}, op_code=2004)) is None  # OP_QUERY
    assert command_name(b"\x10\x00\x00\x00") is None
