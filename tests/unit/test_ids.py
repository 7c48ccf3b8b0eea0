"""app.domain.ids: opaque global ids, and everything that is not exactly one of ours refused."""

from __future__ import annotations

import base64

import pytest

from app.domain.errors import BadUserInput
from app.domain.ids import MAX_ROW_ID, NODE_TYPES, decode_any_id, decode_id, encode_id


@pytest.mark.parametrize("type_name", NODE_TYPES)
def test_round_trip_without_padding(type_name: str) -> None:
    for row_id in (1, 7, 12345, MAX_ROW_ID):
        global_id = encode_id(type_name, row_id)
        assert "=" not in global_id
        assert decode_any_id(global_id) == (type_name, row_id)
        assert decode_id(global_id, type_name) == row_id


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "global_id",
    [
        "",
        "!!!",
        "x" * 201,
        _raw("SyncUser:0"),
        _raw("SyncUser:-1"),
        _raw(f"SyncUser:{MAX_ROW_ID + 1}"),
        _raw("SyncUser:01"),  # another spelling of 1: ids have one form
        _raw("SyncUser: 1"),
        _raw("Tenant:1"),  # not a node type
        _raw("SyncUser"),
        _raw("SyncUser:1") + "==",  # padded
        base64.urlsafe_b64encode(b"\xff\xfe:1").decode(),
    ],
)
def test_anything_else_is_malformed(global_id: str) -> None:
    with pytest.raises(BadUserInput, match="Malformed id"):
        decode_any_id(global_id)


def test_an_id_of_another_type() -> None:
    with pytest.raises(BadUserInput, match="is not a SyncRun id"):
        decode_id(encode_id("SyncUser", 3), "SyncRun")
