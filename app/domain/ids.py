"""Opaque global ids: base64url of "<Type>:<row id>". The tenant is checked on every lookup,
so an id from another tenant behaves as if it did not exist."""

from __future__ import annotations

import base64
import binascii

from app.domain.errors import BadUserInput

NODE_TYPES = (
    "SyncUser",
    "SyncRun",
    "Policy",
    "ApiTokenInfo",
    "AuditEvent",
    "Webhook",
    "WebhookDelivery",
)
MAX_ID_LENGTH = 200
MAX_ROW_ID = 2**31 - 1  # INTEGER primary keys: larger ids are never issued (nor storable)


def encode_id(type_name: str, row_id: int) -> str:
    raw = f"{type_name}:{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_any_id(global_id: str) -> tuple[str, int]:
    """Returns (type name, row id); BAD_USER_INPUT when the id is not one of ours."""
    if not isinstance(global_id, str) or not global_id or len(global_id) > MAX_ID_LENGTH:
        raise BadUserInput("Malformed id.")
    try:
        padded = global_id + "=" * (-len(global_id) % 4)
        type_name, _, raw_id = base64.urlsafe_b64decode(padded).decode().partition(":")
        row_id = int(raw_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadUserInput(f"Malformed id: {global_id!r}.") from None
    if (
        type_name not in NODE_TYPES
        or not 0 < row_id <= MAX_ROW_ID
        or encode_id(type_name, row_id) != global_id
    ):
        raise BadUserInput(f"Malformed id: {global_id!r}.")
    return type_name, row_id


def decode_id(global_id: str, expected_type: str) -> int:
    type_name, row_id = decode_any_id(global_id)
    if type_name != expected_type:
        raise BadUserInput(f"Id {global_id!r} is not a {expected_type} id.")
    return row_id
