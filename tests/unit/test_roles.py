"""app.domain.roles: the roles, what each grants, and schema/enums.py's Role mirroring them."""

from __future__ import annotations

from app.domain import roles
from app.domain.roles import Role
from schema import enums


def test_graphql_role_mirrors_the_domain() -> None:
    assert [(m.name, m.value) for m in enums.Role] == [(m.name, m.value) for m in Role]
    assert all(m.name == m.value for m in Role)


def test_role_grants() -> None:
    assert roles.ROLES == ("VIEWER", "OPERATOR", "WORKER", "ADMIN")
    granted = {role: {needed for needed in Role if roles.grants(role, needed)} for role in Role}
    assert granted == {
        Role.VIEWER: {Role.VIEWER},
        Role.OPERATOR: {Role.VIEWER, Role.OPERATOR},
        Role.WORKER: {Role.VIEWER, Role.WORKER},
        Role.ADMIN: set(Role),
    }
    assert roles.grants("WORKER", "VIEWER")  # roles read back from the database are plain str
    assert not roles.grants("VIEWER", "ADMIN")
