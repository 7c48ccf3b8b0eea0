"""GET /export/sync-users.csv on a real server: RFC 4180 CSV with a header, the same users in
the same order as syncUsers for every filter, formula cells neutralised, the token only in the
Authorization header, bad parameters refused with BAD_USER_INPUT, one tenant only."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from app.web.csv_export import HEADER
from tests.api_tests import helpers as h
from tests.api_tests.conftest import ApiTenant
from tests.server import Server

NASTY_MESSAGE = '=HYPERLINK("http://evil.example","click"), then "quotes"\nand a new line'


def _get(server: Server, token: str | None, params: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(
        f"{server.url}/export/sync-users.csv", params=params, headers=headers, timeout=60
    )


def _rows(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "charset=utf-8" in response.headers["content-type"]
    text = response.content.decode("utf-8")
    assert text.endswith("\r\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == list(HEADER)
    return rows[1:]


@pytest.fixture(scope="module")
async def world(module_tenant: ApiTenant) -> dict[str, Any]:
    admin, worker = module_tenant.admin, module_tenant.worker
    sums = (await h.create_policy(admin, "=SUM(A1:A9), daily"))["id"]
    plain = (await h.create_policy(admin, "plain", active=False))["id"]
    emails = ["=cmd@x.example", "+call@x.example", "-minus@x.example", "zoe@x.example"]
    emails += [f"user{k}@x.example" for k in range(8)]
    users = await h.add_users(admin, emails[:8], sums) + await h.add_users(admin, emails[8:], plain)
    ids = [u["id"] for u in users]
    runs = await h.batch(worker, "startSyncRun", [{"userId": i} for i in ids[:10]])
    finishes = [
        {"runId": runs[0]["id"], "errorCode": "ERR_QUOTA", "errorMessage": NASTY_MESSAGE},
        {"runId": runs[1]["id"], "errorCode": "@ERR_AT", "errorMessage": "-1 left"},
        {"runId": runs[2]["id"], "errorCode": "ERR_QUOTA", "errorMessage": "plain"},
        {"runId": runs[3]["id"]},
        {"runId": runs[4]["id"], "failedItems": [h.item("m-1")]},
        *({"runId": run["id"]} for run in runs[5:9]),
    ]
    await h.batch(worker, "finishSyncRun", finishes)  # runs[9] stays RUNNING
    return {"users": await h.all_users(module_tenant.viewer), "sums": sums}


def _expected_emails(users: list[dict[str, Any]], filt: dict[str, Any], order: str) -> list[str]:
    by_id = {u["id"]: u for u in users}
    kept = []
    for user in users:
        code = filt.get("errorCode")
        last = user["lastFinishedRun"] or {}
        if code is not None and (user["status"] != "FAILED" or last.get("errorCode") != code):
            continue
        if h.matches(user, {k: v for k, v in filt.items() if k != "errorCode"}):
            kept.append(user)
    return [by_id[i]["email"] for i in h.expected_ids(kept, {}, order)]


def _neutral(value: str) -> str:
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


async def test_all_columns(server: Server, world: dict[str, Any], module_tenant: ApiTenant) -> None:
    rows = _rows(_get(server, module_tenant.viewer.token))
    users = world["users"]
    assert [r[0] for r in rows] == [_neutral(u["email"]) for u in users]  # email order
    by_email = {_neutral(u["email"]): u for u in users}
    for row in rows:
        user = by_email[row[0]]
        record = dict(zip(HEADER, row, strict=True))
        assert record["destination_email"] == _neutral(user["destinationEmail"])
        policy = "'=SUM(A1:A9), daily" if user["policy"]["id"] == world["sums"] else "plain"
        assert record["policy"] == policy
        assert record["status"] == user["status"]
        assert record["latest_sync_at"] == (user["latestSyncAt"] or "")
        assert bool(record["next_scheduled_sync_at"]) == (policy != "plain")
        last = user["lastFinishedRun"] or {}
        code = last.get("errorCode") if user["status"] == "FAILED" else None
        assert record["error_code"] == _neutral(code or "")
        assert record["unresolved_failure_count"] == str(user["unresolvedFailureCount"])
    messages = {(r[HEADER.index("error_code")], r[HEADER.index("error_message")]) for r in rows}
    assert messages >= {("'@ERR_AT", "'-1 left"), ("ERR_QUOTA", "'" + NASTY_MESSAGE)}
    assert all(not cell or cell[0] not in "=+-@" for row in rows for cell in row)


@pytest.mark.parametrize(
    "filt",
    [
        {"status": "FAILED"},
        {"errorCode": "ERR_QUOTA"},
        {"errorCode": "ERR_QUOTA", "status": "SYNCED"},
        {"emailContains": "USER"},
        {"status": "SYNCED", "emailContains": "user"},
        {"policyId": "sums"},
        {"latestSyncFrom": "2000-01-01T00:00:00Z"},
        {"latestSyncTo": "2000-01-01T00:00:00+02:00"},
    ],
)
@pytest.mark.parametrize("order", ["EMAIL_ASC", "LATEST_SYNC_DESC"])
async def test_filters_and_orders(
    server: Server,
    world: dict[str, Any],
    module_tenant: ApiTenant,
    filt: dict[str, Any],
    order: str,
) -> None:
    filt = {k: (world["sums"] if v == "sums" else v) for k, v in filt.items()}
    rows = _rows(_get(server, module_tenant.viewer.token, {**filt, "orderBy": order}))
    expected = _expected_emails(world["users"], filt, order)
    assert [r[0] for r in rows] == [_neutral(e) for e in expected]
    assert expected or filt.get("status") == "SYNCED" or "latestSyncTo" in filt


async def test_empty_parameters_are_unset(
    server: Server, world: dict[str, Any], module_tenant: ApiTenant
) -> None:
    params = {"emailContains": "", "status": "", "orderBy": ""}
    assert len(_rows(_get(server, module_tenant.viewer.token, params))) == len(world["users"])


def _refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == code


async def test_tokens(server: Server, world: dict[str, Any], module_tenant: ApiTenant) -> None:
    refused = _get(server, None)
    _refused(refused, 401, "UNAUTHENTICATED")
    assert refused.headers["www-authenticate"].startswith("Bearer")
    _refused(_get(server, "sst_not-a-token"), 401, "UNAUTHENTICATED")
    token = module_tenant.viewer.token
    # Never a token in the URL: it is an unknown parameter, and does not authenticate.
    _refused(_get(server, None, {"token": token}), 401, "UNAUTHENTICATED")
    _refused(_get(server, token, {"token": token}), 400, "BAD_USER_INPUT")
    for role in ("operator", "worker", "admin"):
        assert len(_rows(_get(server, module_tenant.api(role).token))) == len(world["users"])


@pytest.mark.parametrize(
    "params",
    [
        {"status": "BROKEN"},
        {"orderBy": "EMAIL_DESC"},
        {"latestSyncFrom": "yesterday"},
        {"latestSyncFrom": "2026-02-01T00:00:00Z", "latestSyncTo": "2026-01-01T00:00:00Z"},
        # No UTC value (year 0 and 10000 in UTC): the GraphQL DateTime refuses them too.
        {"latestSyncFrom": "0001-01-01T00:00:00+01:00"},
        {"latestSyncTo": "9999-12-31T23:59:59-01:00"},
        {"policyId": "not-an-id"},
        {"errorCode": " "},
        {"emailContains": "x" * 300},
        {"emailContains": "a\x00b"},
        [("status", "FAILED"), ("status", "SYNCED")],
    ],
)
async def test_bad_parameters(server: Server, module_tenant: ApiTenant, params: Any) -> None:
    _refused(_get(server, module_tenant.viewer.token, params), 400, "BAD_USER_INPUT")


async def test_another_tenant_sees_none_of_it(
    server: Server, world: dict[str, Any], other_tenant: ApiTenant
) -> None:
    await h.add_users(other_tenant.admin, ["mine@y.example"])
    token = other_tenant.viewer.token
    assert [r[0] for r in _rows(_get(server, token))] == ["mine@y.example"]
    assert _rows(_get(server, token, {"policyId": world["sums"]})) == []
    assert _rows(_get(server, token, {"errorCode": "ERR_QUOTA"})) == []
