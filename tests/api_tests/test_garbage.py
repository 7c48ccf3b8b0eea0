"""Garbage over raw HTTP is never a server error: a status below 500, a JSON body with errors
that each carry one of the contract's codes, and nothing masked as INTERNAL_SERVER_ERROR."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.api_tests.conftest import ApiTenant

CODES = {
    "BAD_USER_INPUT",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "CONFLICT",
    "QUERY_TOO_COMPLEX",
}
JSON = "application/json"

# (id, content type, raw body)
BODIES: list[tuple[str, str, bytes]] = [
    ("invalid-json", JSON, b"{not json"),
    ("empty-body", JSON, b""),
    ("truncated", JSON, b'{"query": "{ syncMetrics { totalUsers } }"'),
    ("json-string", JSON, b'"just a string"'),
    ("json-number", JSON, b"42"),
    ("json-null", JSON, b"null"),
    ("empty-object", JSON, b"{}"),
    ("empty-batch", JSON, b"[]"),
    ("batch-of-junk", JSON, b"[1, 2]"),
    ("query-number", JSON, b'{"query": 5}'),
    ("query-object", JSON, b'{"query": {"a": 1}}'),
    ("query-null", JSON, b'{"query": null}'),
    ("query-empty", JSON, b'{"query": ""}'),
    ("variables-string", JSON, b'{"query": "{ __typename }", "variables": "x"}'),
    ("variables-list", JSON, b'{"query": "{ __typename }", "variables": [1]}'),
    ("extensions-string", JSON, b'{"query": "{ __typename }", "extensions": "x"}'),
    ("operation-name-number", JSON, b'{"query": "{ __typename }", "operationName": 5}'),
    ("binary", JSON, bytes(range(256))),
    ("latin-1", JSON, '{"query": "{ syncUser(id: \\"\u00e9\\") { id } }"}'.encode("latin-1")),
    ("text-plain", "text/plain", b'{"query": "{ __typename }"}'),
    ("form", "application/x-www-form-urlencoded", b"query=%7B__typename%7D"),
    ("no-content-type", "", b'{"query": "{ __typename }"}'),
    ("multipart-junk", "multipart/form-data; boundary=x", b"--x\r\njunk\r\n--x--"),
    # Deeper than Python's JSON decoder recurses (~1,000): a RecursionError, once a 500.
    ("nested-json", JSON, b"[" * 3000 + b"]" * 3000),
    (
        "nested-variables",
        JSON,
        b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * 3000 + b"]" * 3000 + b"}}",
    ),
    # Past the interpreter's 4,300 digits json.loads raises ValueError: once a 500.
    (
        "huge-integer",
        JSON,
        b'{"query": "{ __typename }", "variables": {"a": ' + b"9" * 4301 + b"}}",
    ),
]

# GraphQL documents that are wrong in every way a client can get them wrong.
DOCUMENTS: list[tuple[str, dict[str, Any]]] = [
    ("syntax-eof", {"query": "{ syncMetrics { "}),
    ("syntax-junk", {"query": "}}}{{{"}),
    ("syntax-bad-string", {"query": '{ syncUser(id: "unterminated) { id } }'}),
    ("unknown-field", {"query": "{ nope }"}),
    ("unknown-nested-field", {"query": "{ syncMetrics { nope } }"}),
    ("unknown-argument", {"query": "{ syncUsers(nope: 1) { totalCount } }"}),
    ("unknown-type", {"query": "query($x: Nope) { __typename }", "variables": {"x": 1}}),
    ("missing-selection", {"query": "{ syncMetrics }"}),
    # 1,200 copies of one field: graphql-core's overlap check alone took 0.8 s.
    ("repeated-field", {"query": "{" + " viewer { role }" * 1200 + " }"}),
    ("schema-described-six-times", {"query": "{" + " a: __schema { types { name } }" * 6 + "}"}),
    ("scalar-selection", {"query": "{ syncMetrics { totalUsers { a } } }"}),
    ("wrong-literal", {"query": '{ syncUsers(first: "ten") { totalCount } }'}),
    ("wrong-enum", {"query": "{ syncUsers(orderBy: NOPE) { totalCount } }"}),
    ("missing-variable", {"query": "query($n: Int!) { syncUsers(first: $n) { totalCount } }"}),
    (
        "wrong-variable",
        {
            "query": "query($n: Int!) { syncUsers(first: $n) { totalCount } }",
            "variables": {"n": "x"},
        },
    ),
    (
        "int-overflow",
        {
            "query": "query($n: Int!) { syncUsers(first: $n) { totalCount } }",
            "variables": {"n": 2**40},
        },
    ),
    (
        "unused-variable",
        {"query": "query($n: Int) { __typename }", "variables": {"n": 1, "extra": 2}},
    ),
    ("unknown-operation", {"query": "{ __typename }", "operationName": "Nope"}),
    # GraphQL's GetOperation: several operations and none named (Strawberry ran the first).
    ("two-operations-unnamed", {"query": "query A { __typename } query B { __typename }"}),
    ("unknown-directive", {"query": "{ __typename @nope }"}),
    (
        "fragment-cycle",
        {"query": "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"},
    ),
    (
        "too-many-tokens",
        {"query": "{ " + " ".join(f"a{i}: __typename" for i in range(3000)) + " }"},
    ),
    (
        "too-deep",
        {
            "query": "{ syncUsers { edges { node { currentRun { user { currentRun { user {"
            " currentRun { user { currentRun { user { currentRun { user { id } } } } } } } } } }"
            " } } } }"
        },
    ),
    ("huge-string", {"query": '{ syncUser(id: "' + "x" * 200_000 + '") { id } }'}),
    # The cost estimate converted literals with int(): past 4,300 digits an error without a code.
    ("huge-int-literal", {"query": "{ syncUsers(first: " + "9" * 4301 + ") { totalCount } }"}),
    (
        "huge-negative-literal",
        {"query": "{ failureReasons(first: -" + "9" * 4301 + ") { errorCode } }"},
    ),
    (
        "huge-list-limit",
        {"query": "mutation { claimDueSyncRuns(limit: " + "9" * 4301 + ") { id } }"},
    ),
    ("subscription-over-http", {"query": "subscription { syncMetricsUpdated { totalUsers } }"}),
    ("mutation-bad-input-type", {"query": "mutation { addSyncUsers(users: 5) { id } }"}),
    ("null-for-non-null", {"query": "mutation { startSyncRun(userId: null) { id } }"}),
]


def check(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code < 500, response.text
    body = response.json()
    assert isinstance(body, dict) and body.get("errors"), body
    codes = [e.get("extensions", {}).get("code") for e in body["errors"]]
    assert all(code in CODES for code in codes), body
    return body["errors"]


# Garbage needs a valid token, not a tenant of its own per test: the module's viewer (a tenant
# with its tokens per test was most of this module's time). A fresh client per test, as before.
@pytest.fixture
def client(module_tenant: ApiTenant) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {module_tenant.viewer.token}"}
    with httpx.Client(headers=headers, timeout=30) as session:
        yield session


@pytest.mark.parametrize(
    ("content_type", "body"), [b[1:] for b in BODIES], ids=[b[0] for b in BODIES]
)
def test_garbage_bodies(
    module_tenant: ApiTenant, client: httpx.Client, content_type: str, body: bytes
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = client.post(module_tenant.server.graphql_url, content=body, headers=headers)
    check(response)


@pytest.mark.parametrize("payload", [d[1] for d in DOCUMENTS], ids=[d[0] for d in DOCUMENTS])
def test_bad_documents(
    module_tenant: ApiTenant, client: httpx.Client, payload: dict[str, Any]
) -> None:
    response = client.post(module_tenant.server.graphql_url, json=payload)
    errors = check(response)
    # Documents over the size limit (schema/limits.py) are QUERY_TOO_COMPLEX.
    refused = {"BAD_USER_INPUT", "QUERY_TOO_COMPLEX"}
    assert all(e["extensions"]["code"] in refused for e in errors), errors
    data = response.json().get("data")
    assert data is None or set(data.values()) == {None}, data


def test_get_requests(tenant: ApiTenant) -> None:
    """A tenant of its own: its metrics say 0 users."""
    url = tenant.server.graphql_url
    headers = {"Authorization": f"Bearer {tenant.viewer.token}"}
    with httpx.Client(headers=headers, timeout=30) as client:
        ok = client.get(url, params={"query": "{ syncMetrics { totalUsers } }"})
        assert ok.json() == {"data": {"syncMetrics": {"totalUsers": 0}}}
        for params in (
            {"query": 'mutation { createApiToken(name: "x", role: ADMIN) { token } }'},
            {"query": "{ syncMetrics { "},
            {"query": "{ __typename }", "variables": "{not json"},
            {"query": "{ __typename }", "variables": "[1]"},
            {"query": "{ __typename }", "variables": "[" * 3000 + "]" * 3000},
            {},
        ):
            check(client.get(url, params=params, headers={"Accept": JSON}))


def test_garbage_with_no_token_is_still_answered(module_tenant: ApiTenant) -> None:
    for body in (
        b"{not json",
        b'{"query": "{ nope }"}',
        b'{"query": "{ syncMetrics { totalUsers } }"}',
    ):
        response = httpx.post(
            module_tenant.server.graphql_url, content=body, headers={"Content-Type": JSON}
        )
        check(response)


def test_the_server_logged_no_unexpected_error(
    module_tenant: ApiTenant, client: httpx.Client
) -> None:
    server = module_tenant.server
    start = len(server.log())
    for _, content_type, body in BODIES:
        headers = {"Content-Type": content_type} if content_type else {}
        client.post(server.graphql_url, content=body, headers=headers)
    for _, payload in DOCUMENTS:
        client.post(server.graphql_url, content=json.dumps(payload), headers={"Content-Type": JSON})
    log = server.log()[start:]
    assert "Traceback" not in log and "unexpected error" not in log, log
