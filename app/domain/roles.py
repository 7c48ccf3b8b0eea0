"""What a token may do: its role, and the roles it is granted by it. Written here once;
schema/enums.py mirrors Role for GraphQL (tests/unit/test_roles.py checks they match)."""

from __future__ import annotations

from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Role(StrEnum):
    VIEWER = "VIEWER"
    OPERATOR = "OPERATOR"
    WORKER = "WORKER"
    ADMIN = "ADMIN"


ROLES: Final = tuple(Role)
# What each role may do beyond reading: a worker reports runs, an operator requests syncs.
GRANTS: Final = MappingProxyType(
    {
        Role.VIEWER: frozenset({Role.VIEWER}),
        Role.OPERATOR: frozenset({Role.VIEWER, Role.OPERATOR}),
        Role.WORKER: frozenset({Role.VIEWER, Role.WORKER}),
        Role.ADMIN: frozenset(Role),
    }
)


def grants(role: str, needed: str) -> bool:
    """Whether a token of `role` may do what needs `needed`."""
    return needed in GRANTS[Role(role)]
