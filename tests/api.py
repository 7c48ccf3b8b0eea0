"""GraphQL over HTTP and WebSocket through the gql client, as integrations use the service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from gql import Client, gql
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport


class Api:
    """One caller (one token) of one server."""

    def __init__(self, graphql_url: str, ws_url: str, token: str | None) -> None:
        self.graphql_url = graphql_url
        self.ws_url = ws_url
        self.token = token

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def execute(self, query: str, **variables: Any) -> dict[str, Any]:
        """Data of a successful operation; raises TransportQueryError on GraphQL errors."""
        transport = AIOHTTPTransport(url=self.graphql_url, headers=self._headers())
        async with Client(transport=transport, execute_timeout=60) as session:
            return await session.execute(gql(query), variable_values=variables or None)

    async def errors(self, query: str, **variables: Any) -> list[dict[str, Any]]:
        """The errors of an operation that must fail (fails the test if it succeeds)."""
        try:
            data = await self.execute(query, **variables)
        except TransportQueryError as error:
            return list(error.errors or [])
        raise AssertionError(f"expected errors, got data {data}")

    async def error_code(self, query: str, **variables: Any) -> str:
        errors = await self.errors(query, **variables)
        return str(errors[0]["extensions"]["code"])

    @asynccontextmanager
    async def websocket(self) -> AsyncIterator[Any]:
        payload = {"authorization": f"Bearer {self.token}"} if self.token else {}
        transport = WebsocketsTransport(
            url=self.ws_url,
            init_payload=payload,
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        )
        async with Client(transport=transport) as session:
            yield session
