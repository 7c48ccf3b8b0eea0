"""Fixtures of the API suite: tenants made quickly (the admin token straight through
app.auth.tokens, the other roles through createApiToken; test_cli covers `syncstatus token
create`), and module-wide tenants for modules that only read."""

from __future__ import annotations

import httpx
import pytest

from app.auth.tokens import create_token, tenant_by_name
from app.store.engine import open_database
from tests.api import Api
from tests.conftest import Tenant
from tests.server import Server, _run_async

CREATE_TOKEN = """mutation($name: String!, $role: Role!) {
  createApiToken(name: $name, role: $role) { token role name } }"""

_counter = iter(range(1_000_000))


def admin_token(database_url: str, tenant: str) -> str:
    """A new ADMIN token of the tenant (created if missing), as `token create` makes it."""

    async def create() -> str:
        db = open_database(database_url)
        try:
            async with db.write() as session:
                row = await tenant_by_name(session, tenant, create=True)
                assert row is not None
                return await create_token(session, row.id, "tests", "ADMIN")
        finally:
            await db.dispose()

    return str(_run_async(create()))


class ApiTenant(Tenant):
    """The admin token comes from app.auth.tokens; the others from the admin's createApiToken."""

    server: Server  # the API suite's servers run in processes of their own, not in-process

    def api(self, role: str) -> Api:
        if role in self._apis:
            return self._apis[role]
        if role == "admin":
            token = admin_token(self.server.database_url, self.name)
            self._apis[role] = Api(self.server.graphql_url, self.server.ws_url, token)
            return self._apis[role]
        admin = self.api("admin")
        response = httpx.post(
            self.server.graphql_url,
            json={"query": CREATE_TOKEN, "variables": {"name": role, "role": role.upper()}},
            headers={"Authorization": f"Bearer {admin.token}"},
            timeout=30,
        )
        body = response.json()
        assert "errors" not in body, body
        created = body["data"]["createApiToken"]
        assert created["role"] == role.upper() and created["name"] == role
        self._apis[role] = Api(self.server.graphql_url, self.server.ws_url, created["token"])
        return self._apis[role]


def new_tenant(server: Server, label: str) -> ApiTenant:
    return ApiTenant(server, f"api{next(_counter)}-{label[:40]}")


@pytest.fixture
def tenant(server: Server, request: pytest.FixtureRequest) -> ApiTenant:
    """A tenant of its own for each test."""
    return new_tenant(server, request.node.name)


@pytest.fixture
def other_tenant(server: Server) -> ApiTenant:
    return new_tenant(server, "other")


@pytest.fixture(scope="module")
def module_tenant(server: Server, request: pytest.FixtureRequest) -> ApiTenant:
    """One tenant for a module whose tests only read what its setup created."""
    return new_tenant(server, request.module.__name__.rsplit(".", 1)[-1])
