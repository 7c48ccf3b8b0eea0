"""GraphQL over HTTP and WebSocket through the gql client, as integrations use the service.

An Api given an httpx transport (tests/app_server.py: the app itself through httpx's ASGI
transport) sends the same HTTP requests without a socket; it has no WebSocket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from gql import Client, gql
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.async_transport import AsyncTransport
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport


class _AsciiJsonHTTPXTransport(HTTPXAsyncTransport):
    """Bodies as aiohttp sends them (json.dumps, ASCII with escapes), not as httpx does (UTF-8,
    which cannot carry the lone surrogates the bad-input tests send)."""

    def _prepare_request(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        post_args = super()._prepare_request(*args, **kwargs)
        if "json" in post_args:
            body = json.dumps(post_args.pop("json")).encode()
            post_args["content"] = body
            post_args["headers"] = {"Content-Type": "application/json"}
        return post_args


class Api:
    """One caller (one token) of one server."""

    def __init__(
        self,
        graphql_url: str,
        ws_url: str,
        token: str | None,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.graphql_url = graphql_url
        self.ws_url = ws_url
        self.token = token
        self.http_transport = http_transport

    def _transport(self) -> AsyncTransport:
        if self.http_transport is not None:
            return _AsciiJsonHTTPXTransport(
                url=self.graphql_url, headers=self._headers(), transport=self.http_transport
            )
        return AIOHTTPTransport(url=self.graphql_url, headers=self._headers())

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def execute(self, query: str, **variables: Any) -> dict[str, Any]:
        """Data of a successful operation; raises TransportQueryError on GraphQL errors."""
        async with Client(transport=self._transport(), execute_timeout=60) as session:
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
        if self.http_transport is not None:
            raise RuntimeError(
                "an in-process Api has no WebSocket: use the `server` of an e2e test"
            )
        payload = {"authorization": f"Bearer {self.token}"} if self.token else {}
        transport = WebsocketsTransport(
            url=self.ws_url,
            init_payload=payload,
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        )
        async with Client(transport=transport) as session:
            yield session
