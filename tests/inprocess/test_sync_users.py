"""syncUsers: every filter alone and combined, both orders, forward and backward pages and exact
totalCount, each checked against a brute-force expectation computed from the created users."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.api_tests import helpers as h
from tests.conftest import Tenant

# (source, destination) per kind of user; "%" and "_" are literal characters of some emails,
# with look-alike decoys a LIKE wildcard would also match.
KINDS = (
    lambda i: (f"alice.smith{i}@contoso.example", f"alice.smith{i}@gw.example"),
    lambda i: (f"Bob.Jones{i}@Fabrikam.EXAMPLE", f"bj{i}@gw.example"),
    lambda i: (f"pct%{i}@contoso.example", f"pct{i}@gw.example"),
    lambda i: (f"under_score{i}@contoso.example", f"us{i}@gw.example"),
    lambda i: (f"underxscore{i}@contoso.example", f"ux{i}@gw.example"),
    lambda i: (f"c{i}@tiny.example", f"zq{i}@alias.example"),
)
USERS = 90
PLUS_2 = timezone(timedelta(hours=2))


@dataclass
class World:
    tenant: Tenant
    users: list[dict[str, Any]]  # as listed by the API
    policies: dict[str, str]  # name -> id


@pytest.fixture(scope="module")
async def world(module_tenant: Tenant) -> World:
    admin = module_tenant.admin
    rng = random.Random(20261125)
    policies = {
        "one": (await h.create_policy(admin, "One"))["id"],
        "two": (await h.create_policy(admin, "Two", interval=240))["id"],
        "off": (await h.create_policy(admin, "Off", active=False))["id"],
    }
    groups: dict[str | None, list[dict[str, Any]]] = {}
    plan: list[tuple[str, str, str | None, str]] = []
    for i in range(USERS):
        source, destination = KINDS[i % len(KINDS)](i)
        policy = ("one", "two", "off", None)[(i // 2) % 4]
        status = h.STATUSES[(i * 3 + i // 7) % 5]
        plan.append((source, destination, policy, status))
        groups.setdefault(policy, []).append(
            {
                "email": source,
                "destinationEmail": destination,
                "policyId": policies[policy] if policy else None,
            }
        )
    added: dict[str, dict[str, Any]] = {}
    for group in groups.values():
        for node in (await admin.execute(h.ADD_USERS, users=group))["addSyncUsers"]:
            added[node["email"]] = node
    targets = [(added[source.lower()]["id"], status) for source, _, _, status in plan]
    rng.shuffle(targets)  # start order differs from email order
    await h.drive(module_tenant.worker, targets)
    # Some users run twice: their latestSyncAt is the start of the second run.
    again = [(u, "SYNCED") for u, s in targets[:12] if s not in ("NEVER_SYNCED", "IN_PROGRESS")]
    await h.drive(module_tenant.worker, again)
    final = dict(targets) | dict(again)

    users = await h.all_users(module_tenant.viewer)
    assert len(users) == USERS
    by_email = {u["email"]: u for u in users}
    for source, destination, policy, status in plan:
        found = by_email[source.lower()]  # emails are stored lower-case
        assert found["destinationEmail"] == destination
        assert found["status"] == final[found["id"]]
        assert (found["policy"] or {}).get("id") == (policies[policy] if policy else None)
        assert (found["latestSyncAt"] is None) == (status == "NEVER_SYNCED")
        assert (found["currentRun"] is None) == (status != "IN_PROGRESS")
    return World(module_tenant, users, policies)


def expected(world: World, filt: dict[str, Any], order: str) -> list[str]:
    return h.expected_ids(world.users, filt, order)


async def page(world: World, filt: dict[str, Any], order: str, **args: Any) -> dict[str, Any]:
    data = await world.tenant.viewer.execute(h.SYNC_USERS, filter=filt, order=order, **args)
    return data["syncUsers"]


def check_page_info(found: dict[str, Any]) -> list[str]:
    edges = found["edges"]
    info = found["pageInfo"]
    assert info["startCursor"] == (edges[0]["cursor"] if edges else None)
    assert info["endCursor"] == (edges[-1]["cursor"] if edges else None)
    return [e["node"]["id"] for e in edges]


async def walk_forward(world: World, filt: dict[str, Any], order: str, size: int) -> list[str]:
    ids: list[str] = []
    after = None
    total = len(expected(world, filt, order))
    while True:
        found = await page(world, filt, order, first=size, after=after)
        assert found["totalCount"] == total
        got = check_page_info(found)
        ids += got
        assert found["pageInfo"]["hasPreviousPage"] == (after is not None)
        if not found["pageInfo"]["hasNextPage"]:
            return ids
        assert len(got) == size
        after = found["pageInfo"]["endCursor"]


async def walk_backward(world: World, filt: dict[str, Any], order: str, size: int) -> list[str]:
    ids: list[str] = []
    before = None
    while True:
        found = await page(world, filt, order, last=size, before=before)
        got = check_page_info(found)
        assert found["pageInfo"]["hasNextPage"] == (before is not None)
        ids = got + ids
        if not found["pageInfo"]["hasPreviousPage"]:
            return ids
        assert len(got) == size
        before = found["pageInfo"]["startCursor"]


def filters(world: World) -> list[dict[str, Any]]:
    times = sorted(h.when(u["latestSyncAt"]) for u in world.users if u["latestSyncAt"])
    at = [h.iso(t) for t in times]
    one, two, off = world.policies["one"], world.policies["two"], world.policies["off"]
    return [
        {},
        {"emailContains": "alice"},
        {"emailContains": "ALICE.Smith1"},
        {"emailContains": "bob.jones"},  # given in mixed case
        {"emailContains": "gw.example"},  # destinations only
        {"emailContains": "alias"},
        {"emailContains": "zq1"},
        {"emailContains": "%"},
        {"emailContains": "_"},
        {"emailContains": "t%1"},
        {"emailContains": "r_s"},
        {"emailContains": "%1"},
        {"emailContains": "_s"},
        {"emailContains": "q"},
        {"emailContains": "Q1"},
        {"emailContains": "1"},
        {"emailContains": "@"},
        {"emailContains": "e1"},
        {"emailContains": "no-such-user"},
        # Spans an email's end and the destination's start: PostgreSQL's trigram index holds
        # them as one text with a newline between (migration 0012); no email contains this.
        {"emailContains": "contoso.example\nalice.smith"},
        {"latestSyncFrom": at[10]},
        {"latestSyncTo": at[20]},
        {"latestSyncFrom": at[5], "latestSyncTo": at[30]},
        {"latestSyncFrom": at[7], "latestSyncTo": at[7]},  # bounds inclusive: one user
        {"latestSyncFrom": h.iso(times[-1] + timedelta(microseconds=1))},
        {"latestSyncTo": h.iso(times[0] - timedelta(microseconds=1))},
        {"latestSyncFrom": times[3].astimezone(PLUS_2).isoformat()},  # another offset
        {"policyId": one},
        {"policyId": two},
        {"policyId": off},
        *({"status": s} for s in h.STATUSES),
        {"status": "FAILED", "policyId": one},
        {"status": "NEVER_SYNCED", "policyId": off},
        {"status": "SYNCED", "emailContains": "contoso"},
        {"emailContains": "%", "policyId": two},
        {"latestSyncFrom": at[10], "status": "IN_PROGRESS"},
        {"latestSyncTo": at[40], "policyId": one, "emailContains": "o"},
        {
            "emailContains": "example",
            "latestSyncFrom": at[2],
            "latestSyncTo": at[50],
            "policyId": two,
            "status": "COMPLETED_WITH_WARNING",
        },
    ]


ORDERS = ("EMAIL_ASC", "LATEST_SYNC_DESC")


@pytest.mark.parametrize("order", ORDERS)
async def test_every_filter_gives_exactly_the_matching_users(world: World, order: str) -> None:
    nonempty = 0
    for filt in filters(world):
        want = expected(world, filt, order)
        found = await page(world, filt, order, first=100)
        assert found["totalCount"] == len(want), filt
        assert check_page_info(found) == want, filt
        assert found["pageInfo"]["hasNextPage"] is False
        assert found["pageInfo"]["hasPreviousPage"] is False
        nonempty += bool(want)
    assert nonempty >= 30  # the data set exercises the filters


async def test_default_order_is_email(world: World) -> None:
    data = await world.tenant.viewer.execute("{ syncUsers(first: 100) { edges { node { id } } } }")
    ids = [e["node"]["id"] for e in data["syncUsers"]["edges"]]
    assert ids == expected(world, {}, "EMAIL_ASC")
    default = await world.tenant.viewer.execute("{ syncUsers { edges { node { id } } } }")
    assert [e["node"]["id"] for e in default["syncUsers"]["edges"]] == ids[:10]
    # orderBy is nullable in the contract: an explicit null is the default order.
    found = await page(world, {}, None, first=100)  # type: ignore[arg-type]
    assert check_page_info(found) == ids
    inline = "{ syncUsers(orderBy: null, first: 3) { edges { node { id } } } }"
    data = await world.tenant.viewer.execute(inline)
    assert [e["node"]["id"] for e in data["syncUsers"]["edges"]] == ids[:3]


async def test_small_search_terms_and_wildcards_are_literal(world: World) -> None:
    emails = {u["email"] for u in world.users}
    for term, matches in (
        ("%", lambda e: "%" in e),
        ("_", lambda e: "_" in e),
        ("r_s", lambda e: "r_s" in e),
        ("t%1", lambda e: "t%1" in e),
    ):
        found = await page(world, {"emailContains": term}, "EMAIL_ASC", first=100)
        got = {e["node"]["email"] for e in found["edges"]}
        assert got == {e for e in emails if matches(e)} and got, term
    # A search never treats % or _ as wildcards, so the decoys do not match.
    found = await page(world, {"emailContains": "r_s"}, "EMAIL_ASC", first=100)
    assert all("underxscore" not in e["node"]["email"] for e in found["edges"])


PAGED: tuple[dict[str, str], ...] = (
    {},
    {"emailContains": "example"},
    {"status": "SYNCED"},
    {"policyId": "two"},
    {"emailContains": "o", "status": "NEVER_SYNCED"},
)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("which", range(len(PAGED)))
async def test_pages_forward_and_backward(world: World, order: str, which: int) -> None:
    filt = dict(PAGED[which])
    if "policyId" in filt:
        filt["policyId"] = world.policies[filt["policyId"]]
    want = expected(world, filt, order)
    assert want
    assert await walk_forward(world, filt, order, 7) == want
    assert await walk_backward(world, filt, order, 6) == want
    # first/before and the middle of the list: the rows just before a cursor.
    if len(want) > 12:
        middle = await page(world, filt, order, first=10)
        cursor = middle["edges"][9]["cursor"]
        back = await page(world, filt, order, last=4, before=cursor)
        assert check_page_info(back) == want[5:9]
        assert back["pageInfo"]["hasPreviousPage"] is True
        assert back["pageInfo"]["hasNextPage"] is True
        ahead = await page(world, filt, order, first=3, after=cursor)
        assert check_page_info(ahead) == want[10:13]


async def test_an_empty_page(world: World) -> None:
    found = await page(world, {"emailContains": "nobody-here"}, "EMAIL_ASC", first=5)
    assert found == {
        "totalCount": 0,
        "pageInfo": {
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
        "edges": [],
    }
    last = await page(world, {}, "EMAIL_ASC", first=100)
    end = last["edges"][-1]["cursor"]
    beyond = await page(world, {}, "EMAIL_ASC", first=5, after=end)
    assert beyond["edges"] == [] and beyond["pageInfo"]["hasNextPage"] is False
    assert beyond["totalCount"] == USERS


NESTED = """
query($first: Int) {
  a: syncUsers(first: $first) { ...Conn }
  b: syncUsers(first: $first, orderBy: LATEST_SYNC_DESC) {
    total: totalCount
    edges { node { id ... on SyncUser { cr: currentRun { id state } } lastFinishedRun { id }
      v: version policy { id name } runs(first: 2) { totalCount edges { node { id } } } } }
  }
}
fragment Conn on SyncUserConnection { totalCount edges { node { ...U } } }
fragment U on SyncUser {
  id currentRun { id itemsProcessed } lastFinishedRun { state } version policy { id }
}
"""
SINGLE = """id currentRun { id state itemsProcessed } lastFinishedRun { id state } version
  policy { id name } runs(first: 2) { totalCount edges { node { id } } }"""


async def test_nested_fields_of_a_page_match_single_lookups(world: World) -> None:
    """Fields read with the page (fragments, aliases, both orders) equal what syncUser says."""
    viewer = world.tenant.viewer
    data = await viewer.execute(NESTED, first=100)
    assert data["a"]["totalCount"] == data["b"]["total"] == USERS
    ids = [e["node"]["id"] for e in data["a"]["edges"]]
    aliases = " ".join(
        f'u{i}: syncUser(id: "{user_id}") {{ {SINGLE} }}' for i, user_id in enumerate(ids)
    )
    single = await viewer.execute(f"{{ {aliases} }}")
    by_id = {single[f"u{i}"]["id"]: single[f"u{i}"] for i in range(len(ids))}
    for edge in data["a"]["edges"]:
        node, want = edge["node"], by_id[edge["node"]["id"]]
        assert node["version"] == want["version"]
        assert node["policy"] == ({"id": want["policy"]["id"]} if want["policy"] else None)
        current = want["currentRun"]
        assert node["currentRun"] == (
            {"id": current["id"], "itemsProcessed": current["itemsProcessed"]} if current else None
        )
        last = want["lastFinishedRun"]
        assert node["lastFinishedRun"] == ({"state": last["state"]} if last else None)
    for edge in data["b"]["edges"]:
        node, want = edge["node"], by_id[edge["node"]["id"]]
        current = want["currentRun"]
        assert node["cr"] == ({"id": current["id"], "state": current["state"]} if current else None)
        assert node["lastFinishedRun"] == (
            {"id": want["lastFinishedRun"]["id"]} if want["lastFinishedRun"] else None
        )
        assert (node["v"], node["policy"], node["runs"]) == (
            want["version"],
            want["policy"],
            want["runs"],
        )


SEARCHES = ({"emailContains": "example"}, {"emailContains": "o"}, {"emailContains": "zq1"})


@pytest.mark.parametrize("order", ORDERS)
async def test_a_search_pages_alike_whether_it_walks_the_order_or_sorts_its_matches(
    world: World, order: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL reads a rare term's page from its matches, sorted (users.FEW_MATCHES), and a
    common one by walking the order's index: each way gives the same pages."""
    from app.reads import users

    for walk_order in (True, False):
        monkeypatch.setattr(users, "FEW_MATCHES", -1 if walk_order else 10**9)
        for filt in SEARCHES:
            want = expected(world, filt, order)
            assert await walk_forward(world, filt, order, 4) == want, (walk_order, filt)
            assert await walk_backward(world, filt, order, 5) == want, (walk_order, filt)


COUNT_ONLY = """query Count($filter: SyncUserFilter, $order: SyncUserOrder, $first: Int,
  $after: String, $last: Int, $before: String) {
  syncUsers(filter: $filter, orderBy: $order, first: $first, after: $after, last: $last,
    before: $before) { totalCount } }"""


# What only a page read selects: its users' columns, their policies and runs.
PAGE_READS = ("sync_users.unresolved_failure_count", "FROM policies", "FROM sync_runs")


@pytest.fixture
def statements() -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def test_a_count_alone_reads_no_page(world: World, statements: list[str]) -> None:
    """`syncUsers { totalCount }` (a client polling a count): the exact count, without
    reading a page of users, their policies and runs."""
    for filt in filters(world):
        statements.clear()
        data = await world.tenant.viewer.execute(COUNT_ONLY, filter=filt, order="EMAIL_ASC")
        assert data["syncUsers"]["totalCount"] == len(expected(world, filt, "EMAIL_ASC")), filt
        assert not [s for s in statements if any(read in s for read in PAGE_READS)], filt
    statements.clear()
    await page(world, {}, "EMAIL_ASC", first=10)  # the markers do tell a page read
    assert all(any(read in s for s in statements) for read in PAGE_READS), statements


async def test_a_count_alone_refuses_what_a_page_refuses(world: World) -> None:
    cursor = (await page(world, {}, "EMAIL_ASC", first=1))["pageInfo"]["endCursor"]
    refused: list[dict[str, Any]] = [
        {"first": 0},
        {"first": 101},
        {"first": 5, "last": 5},
        {"after": "not a cursor"},
        {"before": ""},
        {"after": cursor, "order": "LATEST_SYNC_DESC"},  # another order's cursor
        {"filter": {"emailContains": "x" * 10_000}},
    ]
    viewer = world.tenant.viewer
    for args in refused:
        args = {"order": "EMAIL_ASC", **args}
        with_rows = await viewer.errors(h.SYNC_USERS, **args)
        alone = await viewer.errors(COUNT_ONLY, **args)
        assert with_rows and alone, args
        assert [e["extensions"]["code"] for e in alone] == ["BAD_USER_INPUT"], (args, alone)
        assert [e["message"] for e in alone] == [e["message"] for e in with_rows], args


async def test_a_field_asked_twice_is_read_for_both_selections(world: World) -> None:
    """One response key selected twice is one field of two nodes: the page is read for the
    node that asks for edges although the first asks only for totalCount."""
    data = await world.tenant.viewer.execute(
        "{ syncUsers(first: 5) { totalCount } syncUsers(first: 5) { edges { node { id } } } }"
    )
    ids = [e["node"]["id"] for e in data["syncUsers"]["edges"]]
    assert ids == expected(world, {}, "EMAIL_ASC")[:5]
    assert data["syncUsers"]["totalCount"] == len(world.users)
