"""Apollo's automatic persisted queries, its exact protocol on a real server: the hash alone
gets PERSISTED_QUERY_NOT_FOUND, the client retries with the document, later GETs with the hash
alone succeed."""

from __future__ import annotations

import hashlib
import json

import httpx

from schema.limits import DocumentLimits
from schema.persisted_queries import MAX_ENTRIES, PersistedQueries, PersistedQueryError
from tests.api_tests.conftest import ApiTenant

QUERY = "query Apq($first: Int) { syncUsers(first: $first) { totalCount } }"
HASH = hashlib.sha256(QUERY.encode()).hexdigest()
EXTENSIONS = {"persistedQuery": {"version": 1, "sha256Hash": HASH}}


def test_the_apollo_protocol(tenant: ApiTenant) -> None:
    url = tenant.server.graphql_url
    headers = {"Authorization": f"Bearer {tenant.viewer.token}"}
    with httpx.Client(headers=headers, timeout=30) as client:
        unknown = {"extensions": EXTENSIONS, "variables": {"first": 5}}
        response = client.post(url, json=unknown)
        assert response.status_code == 200
        (error,) = response.json()["errors"]
        assert error["message"] == "PersistedQueryNotFound"
        assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        response = client.post(url, json={**unknown, "query": QUERY})
        assert response.json() == {"data": {"syncUsers": {"totalCount": 0}}}
        params = {
            "extensions": json.dumps(EXTENSIONS),
            "variables": json.dumps({"first": 5}),
            "operationName": "Apq",
        }
        for _ in range(2):
            response = client.get(url, params=params)
            assert response.status_code == 200
            assert response.json() == {"data": {"syncUsers": {"totalCount": 0}}}
        wrong = {"query": "{ __typename }", "extensions": EXTENSIONS}
        (error,) = client.post(url, json=wrong).json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        bad_version = {"extensions": {"persistedQuery": {"version": 2, "sha256Hash": HASH}}}
        (error,) = client.post(url, json=bad_version).json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"


def test_the_store_is_bounded() -> None:
    persisted = PersistedQueries(DocumentLimits())
    for i in range(MAX_ENTRIES + 50):
        query = f"{{ a{i}: __typename }}"
        digest = hashlib.sha256(query.encode()).hexdigest()
        extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
        assert persisted.resolve(query, extensions) == query
    assert len(persisted.cache) == MAX_ENTRIES
    first = hashlib.sha256(b"{ a0: __typename }").hexdigest()
    try:
        persisted.resolve(None, {"persistedQuery": {"version": 1, "sha256Hash": first}})
    except PersistedQueryError as error:
        assert error.code == "PERSISTED_QUERY_NOT_FOUND"
    else:
        raise AssertionError("the oldest entry should have been evicted")
