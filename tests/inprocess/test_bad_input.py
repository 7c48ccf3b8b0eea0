"""Bad input gets the contract's code and changes nothing: every test here compares the whole
visible state of the module's tenant before and after."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.api import Api
from tests.api_tests import helpers as h
from tests.conftest import Tenant

FAILED_ITEMS = """query($id: ID!, $first: Int, $after: String) { syncRun(id: $id) {
  failedItems(first: $first, after: $after) { totalCount edges { cursor } } } }"""
NODE = "query($id: ID!) { node(id: $id) { id } }"
TOKEN = "mutation($name: String!) { createApiToken(name: $name, role: VIEWER) { token } }"


@dataclass
class World:
    tenant: Tenant
    policy: str
    paused: str
    fresh: str
    busy: str
    run: str  # running
    done: str
    done_run: str  # finished, with failed items
    state: dict[str, Any]


def b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


@pytest.fixture(scope="module")
async def world(module_tenant: Tenant) -> World:
    admin, worker = module_tenant.admin, module_tenant.worker
    policy = await h.create_policy(admin, "Main")
    paused = await h.create_policy(admin, "Paused", active=False)
    fresh, busy, done = await h.add_users(
        admin, ["fresh@b.example", "busy@b.example", "done@b.example"], policy["id"]
    )
    runs = await h.drive(worker, [(done["id"], "COMPLETED_WITH_WARNING")], changes=2)
    run = await h.start(worker, busy["id"], total=10)
    await h.report(worker, run["id"], 4, 3)
    return World(
        module_tenant,
        policy["id"],
        paused["id"],
        fresh["id"],
        busy["id"],
        run["id"],
        done["id"],
        runs[done["id"]]["id"],
        await h.snapshot(admin),
    )


@pytest.fixture
async def unchanged(world: World) -> AsyncIterator[None]:
    """Fails the test when the tenant's visible state changed."""
    yield
    assert await h.snapshot(world.tenant.admin) == world.state


async def expect(api: Api, want: str, document: str, /, **variables: Any) -> None:
    errors = await api.errors(document, **variables)
    assert [e["extensions"]["code"] for e in errors] == [want], (variables, errors)


MALFORMED_CURSORS = [
    "zzz",
    "",
    "!!!",
    "a" * 5000,
    b64("not json"),
    b64("[]"),
    b64('{"a": 1}'),
    b64('["u.email", 1, "x"]'),
    b64('["u.email", "1", "x", 1]'),
    b64('["u.email", 1, 5, "x"]'),
    b64('["zz", 1, "x", 1]'),
    b64("null"),
]


@pytest.mark.parametrize("cursor", MALFORMED_CURSORS)
async def test_malformed_cursors(world: World, unchanged: None, cursor: str) -> None:
    viewer = world.tenant.viewer
    for arg in ("after", "before"):
        await expect(viewer, "BAD_USER_INPUT", h.SYNC_USERS, **{arg: cursor})
        await expect(viewer, "BAD_USER_INPUT", h.POLICIES, **{arg: cursor})
        await expect(viewer, "BAD_USER_INPUT", h.RUNS, id=world.done, **{arg: cursor})
    await expect(viewer, "BAD_USER_INPUT", FAILED_ITEMS, id=world.done_run, after=cursor)


async def test_cursors_of_another_list(world: World, unchanged: None) -> None:
    viewer = world.tenant.viewer
    users = (await viewer.execute(h.SYNC_USERS, first=1))["syncUsers"]["edges"][0]["cursor"]
    latest = (await viewer.execute(h.SYNC_USERS, first=1, order="LATEST_SYNC_DESC"))["syncUsers"][
        "edges"
    ][0]["cursor"]
    policies = (await viewer.execute(h.POLICIES, first=1))["policies"]["edges"][0]["cursor"]
    runs = (await viewer.execute(h.RUNS, id=world.done, first=1))["syncUser"]["runs"]
    run_cursor = runs["edges"][0]["cursor"]
    await expect(viewer, "BAD_USER_INPUT", h.SYNC_USERS, after=policies)
    await expect(viewer, "BAD_USER_INPUT", h.SYNC_USERS, after=users, order="LATEST_SYNC_DESC")
    await expect(viewer, "BAD_USER_INPUT", h.SYNC_USERS, before=latest, order="EMAIL_ASC")
    await expect(viewer, "BAD_USER_INPUT", h.POLICIES, after=users)
    await expect(viewer, "BAD_USER_INPUT", h.RUNS, id=world.done, after=users)
    await expect(viewer, "BAD_USER_INPUT", FAILED_ITEMS, id=world.done_run, after=run_cursor)


@pytest.mark.parametrize(
    "args",
    [
        {"first": 0},
        {"first": -1},
        {"first": 101},
        {"last": 0},
        {"last": -5},
        {"last": 101},
        {"first": 5, "last": 5},
        {"first": 2**31},
    ],
    ids=str,
)
async def test_page_sizes_out_of_range(world: World, unchanged: None, args: dict) -> None:
    viewer = world.tenant.viewer
    await expect(viewer, "BAD_USER_INPUT", h.SYNC_USERS, **args)
    await expect(viewer, "BAD_USER_INPUT", h.POLICIES, **args)
    await expect(viewer, "BAD_USER_INPUT", h.RUNS, id=world.done, **args)
    if "last" not in args:
        await expect(viewer, "BAD_USER_INPUT", FAILED_ITEMS, id=world.done_run, **args)


async def test_page_size_bounds_are_inclusive(world: World, unchanged: None) -> None:
    viewer = world.tenant.viewer
    for args in ({"first": 1}, {"first": 100}, {"last": 1}, {"last": 100}):
        found = (await viewer.execute(h.SYNC_USERS, **args))["syncUsers"]
        assert len(found["edges"]) == min(3, next(iter(args.values())))


MALFORMED_IDS = [
    "",
    "x",
    "!!!",
    "a" * 300,
    b64("SyncUser:abc"),
    b64("SyncUser:-1"),
    b64("SyncUser:0"),
    b64("SyncUser:1.5"),
    b64("Tenant:1"),
    b64("SyncUser:01"),
    b64("SyncUser:1") + "==",
    b64("SyncUser:2147483648"),  # beyond the INTEGER keys: never issued
    b64("SyncUser:99999999999999999999999"),
    b64("SyncUser:1\x00"),
]


@pytest.mark.parametrize("bad", MALFORMED_IDS)
async def test_malformed_ids(world: World, unchanged: None, bad: str) -> None:
    t = world.tenant
    await expect(t.viewer, "BAD_USER_INPUT", h.USER, id=bad)
    await expect(t.viewer, "BAD_USER_INPUT", h.RUN, id=bad)
    await expect(t.viewer, "BAD_USER_INPUT", NODE, id=bad)
    await expect(t.viewer, "BAD_USER_INPUT", h.SYNC_USERS, filter={"policyId": bad})
    await expect(t.worker, "BAD_USER_INPUT", h.START, user=bad)
    await expect(t.worker, "BAD_USER_INPUT", h.REPORT, run=bad, processed=1, changes=1)
    await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=bad)
    await expect(t.operator, "BAD_USER_INPUT", h.REQUEST_SYNC, id=bad)
    await expect(t.admin, "BAD_USER_INPUT", h.SET_ACTIVE, id=bad, active=True)
    await expect(t.admin, "BAD_USER_INPUT", h.ASSIGN, ids=[world.fresh, bad], policy=None)
    await expect(t.admin, "BAD_USER_INPUT", h.ASSIGN, ids=[world.fresh], policy=bad)
    users = [{"email": "n@b.example", "destinationEmail": "n@d.example", "policyId": bad}]
    await expect(t.admin, "BAD_USER_INPUT", h.ADD_USERS, users=users)


async def test_ids_of_the_wrong_type(world: World, unchanged: None) -> None:
    t = world.tenant
    await expect(t.viewer, "BAD_USER_INPUT", h.USER, id=world.run)
    await expect(t.viewer, "BAD_USER_INPUT", h.RUN, id=world.busy)
    await expect(t.viewer, "BAD_USER_INPUT", h.SYNC_USERS, filter={"policyId": world.busy})
    await expect(t.worker, "BAD_USER_INPUT", h.START, user=world.policy)
    await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=world.busy)
    await expect(t.operator, "BAD_USER_INPUT", h.REQUEST_SYNC, id=world.run)
    await expect(t.admin, "BAD_USER_INPUT", h.SET_ACTIVE, id=world.fresh, active=True)
    await expect(t.admin, "BAD_USER_INPUT", h.ASSIGN, ids=[world.policy], policy=None)
    await expect(t.admin, "BAD_USER_INPUT", h.ASSIGN, ids=[world.fresh], policy=world.fresh)


async def test_unknown_ids(world: World, unchanged: None) -> None:
    t = world.tenant
    user, run, policy = b64("SyncUser:987654"), b64("SyncRun:987654"), b64("Policy:987654")
    assert (await t.viewer.execute(h.USER, id=user))["syncUser"] is None
    assert (await t.viewer.execute(h.RUN, id=run))["syncRun"] is None
    for node_id in (user, run, policy):
        assert (await t.viewer.execute(NODE, id=node_id))["node"] is None
    found = (await t.viewer.execute(h.SYNC_USERS, filter={"policyId": policy}))["syncUsers"]
    assert (found["totalCount"], found["edges"]) == (0, [])
    await expect(t.worker, "NOT_FOUND", h.START, user=user)
    await expect(t.worker, "NOT_FOUND", h.REPORT, run=run, processed=1, changes=1)
    await expect(t.worker, "NOT_FOUND", h.FINISH, run=run)
    await expect(t.operator, "NOT_FOUND", h.REQUEST_SYNC, id=user)
    await expect(t.admin, "NOT_FOUND", h.SET_ACTIVE, id=policy, active=True)
    update = {"name": "X", "syncIntervalMinutes": 60}
    await expect(t.admin, "NOT_FOUND", h.UPDATE_POLICY, id=policy, input=update)
    await expect(t.admin, "NOT_FOUND", h.ASSIGN, ids=[world.fresh, user], policy=None)
    await expect(t.admin, "NOT_FOUND", h.ASSIGN, ids=[world.fresh], policy=policy)
    users = [
        {"email": "ok@b.example", "destinationEmail": "ok@d.example"},
        {"email": "n@b.example", "destinationEmail": "n@d.example", "policyId": policy},
    ]
    await expect(t.admin, "NOT_FOUND", h.ADD_USERS, users=users)


BAD_DATES = ["garbage", "", "2024-13-01T00:00:00Z", "2024-02-30", "tomorrow", "12:00", 12345, True]


@pytest.mark.parametrize("bad", BAD_DATES, ids=str)
async def test_malformed_dates(world: World, unchanged: None, bad: Any) -> None:
    viewer = world.tenant.viewer
    await expect(viewer, "BAD_USER_INPUT", h.SYNC_USERS, filter={"latestSyncFrom": bad})
    await expect(viewer, "BAD_USER_INPUT", h.SYNC_USERS, filter={"latestSyncTo": bad})
    literal = json.dumps(bad)
    inline = f"{{ syncUsers(filter: {{latestSyncFrom: {literal}}}) {{ totalCount }} }}"
    await expect(viewer, "BAD_USER_INPUT", inline)


async def test_date_bounds_in_the_wrong_order(world: World, unchanged: None) -> None:
    filt = {"latestSyncFrom": "2026-01-02T00:00:00Z", "latestSyncTo": "2026-01-01T00:00:00Z"}
    await expect(world.tenant.viewer, "BAD_USER_INPUT", h.SYNC_USERS, filter=filt)


@pytest.mark.parametrize(
    "date",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01", "9999-12-31"],
)
async def test_extreme_dates_are_no_server_error(world: World, unchanged: None, date: str) -> None:
    viewer = world.tenant.viewer
    for key in ("latestSyncFrom", "latestSyncTo"):
        try:
            found = (await viewer.execute(h.SYNC_USERS, filter={key: date}))["syncUsers"]
        except Exception:
            await expect(viewer, "BAD_USER_INPUT", h.SYNC_USERS, filter={key: date})
        else:
            early = date.startswith("0001")
            expected = 2 if (key == "latestSyncFrom") == early else 0
            assert found["totalCount"] == expected  # the fresh user never synced


TRENDS = """query($since: DateTime!, $until: DateTime, $bucket: TrendBucket) {
  syncTrends(since: $since, until: $until, bucket: $bucket) { at changes } }"""


@pytest.mark.parametrize("date", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
async def test_dates_outside_the_utc_range(world: World, unchanged: None, date: str) -> None:
    """Found by tests/fuzz: a one-bucket syncTrends window in year 0 (or 10000) in UTC was an
    INTERNAL_SERVER_ERROR when its bucket start was served."""
    viewer = world.tenant.viewer
    for bucket in ("HOUR", "DAY"):
        errors = await viewer.errors(TRENDS, since=date, until=date, bucket=bucket)
        assert {e["extensions"]["code"] for e in errors} == {"BAD_USER_INPUT"}, errors
    await expect(viewer, "BAD_USER_INPUT", h.SYNC_USERS, filter={"latestSyncFrom": date})
    inline = f'{{ syncTrends(since: "{date}", until: "2026-01-01T00:00:00Z") {{ at }} }}'
    await expect(viewer, "BAD_USER_INPUT", inline)


BAD_EMAILS = [
    "",
    "   ",
    "noat",
    "a@b",
    "a b@c.example",
    "a@@b.example",
    "@b.example",
    "a@b.",
    "a@" + "x" * 250 + ".example",
    # Control characters: a terminal escape, a forged line, DEL, a C1 control, U+2028.
    "a\x1b[31m@b.example",
    "a\x01@b.example",
    "a\x7f@b.example",
    "a\x85@b.example",
    "a\u2028@b.example",
]


@pytest.mark.parametrize("bad", BAD_EMAILS)
async def test_malformed_emails_add_nobody(world: World, unchanged: None, bad: str) -> None:
    admin = world.tenant.admin
    ok = {"email": "valid@b.example", "destinationEmail": "valid@d.example"}
    for user in (
        {"email": bad, "destinationEmail": "x@d.example"},
        {"email": "x@b.example", "destinationEmail": bad},
    ):
        await expect(admin, "BAD_USER_INPUT", h.ADD_USERS, users=[ok, user])


LONG = "x" * 2001


async def test_strings_over_their_length(world: World, unchanged: None) -> None:
    t = world.tenant
    for policy in (
        {"name": "n" * 201, "syncIntervalMinutes": 60},
        {"name": "  ", "syncIntervalMinutes": 60},
        {"name": "ok", "description": LONG, "syncIntervalMinutes": 60},
    ):
        await expect(t.admin, "BAD_USER_INPUT", h.CREATE_POLICY, input=policy)
        await expect(t.admin, "BAD_USER_INPUT", h.UPDATE_POLICY, id=world.policy, input=policy)
    await expect(t.admin, "BAD_USER_INPUT", TOKEN, name="t" * 201)
    await expect(t.admin, "BAD_USER_INPUT", TOKEN, name=" ")
    await expect(t.viewer, "BAD_USER_INPUT", h.SYNC_USERS, filter={"emailContains": "e" * 255})
    run = world.run
    await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=run, code="E" * 101)
    await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=run, code="  ")
    await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=run, code="E", message=LONG)
    for bad in (
        {**h.item("i"), "itemId": "i" * 501},
        {**h.item("i"), "itemId": " "},
        {**h.item("i"), "itemType": "t" * 101},
        {**h.item("i"), "errorCode": "c" * 101},
        {**h.item("i"), "errorMessage": LONG},
        {**h.item("i"), "errorMessage": ""},
    ):
        items = [h.item("fine"), bad]
        await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=run, items=items)
        await expect(
            t.worker, "BAD_USER_INPUT", h.REPORT, run=run, processed=9, changes=9, items=items
        )


async def test_control_characters_in_one_line_texts(world: World, unchanged: None) -> None:
    """A name or code with a control character (a newline, an escape) would forge lines and
    terminal escapes where operators read it (`syncstatus audit`, `token list`, logs)."""
    t = world.tenant
    forged = "ok\n2026-12-07T11:50:00+00:00  token.revoke  cli  forged line"
    for bad in (forged, "red \x1b[31m", "bell\x07"):
        policy = {"name": bad, "syncIntervalMinutes": 60}
        await expect(t.admin, "BAD_USER_INPUT", h.CREATE_POLICY, input=policy)
        await expect(t.admin, "BAD_USER_INPUT", TOKEN, name=bad)
        await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=world.run, code=bad)
        items = [{**h.item("i"), "itemId": bad}]
        await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=world.run, items=items)
    escaped = {"name": "ok", "description": "a \x1b[2J clear", "syncIntervalMinutes": 60}
    await expect(t.admin, "BAD_USER_INPUT", h.CREATE_POLICY, input=escaped)


async def test_multi_line_texts_keep_their_lines(tenant: Tenant) -> None:
    # A tenant of its own: the module's world must stay as `unchanged` found it.
    policy = {"name": "Lines", "description": "one\ntwo\tthree\r\n", "syncIntervalMinutes": 60}
    created = await tenant.admin.execute(h.CREATE_POLICY, input=policy)
    assert created["createPolicy"]["description"] == "one\ntwo\tthree"  # stripped at the ends


async def test_negative_counters(world: World, unchanged: None) -> None:
    worker = world.tenant.worker
    await expect(worker, "BAD_USER_INPUT", h.START, user=world.fresh, total=-1)
    for processed, changes, total in ((-1, 5, None), (5, -1, None), (5, 5, -1)):
        await expect(
            worker,
            "BAD_USER_INPUT",
            h.REPORT,
            run=world.run,
            processed=processed,
            changes=changes,
            total=total,
        )


async def test_counters_over_the_bound(world: World, unchanged: None) -> None:
    """Per-report counters stop at 10^9 (2147483647, GraphQL's largest Int, is refused)."""
    worker = world.tenant.worker
    over = 2**31 - 1
    await expect(worker, "BAD_USER_INPUT", h.START, user=world.fresh, total=over)
    for processed, changes, total in ((over, 5, None), (5, over, None), (5, 5, over)):
        await expect(
            worker,
            "BAD_USER_INPUT",
            h.REPORT,
            run=world.run,
            processed=processed,
            changes=changes,
            total=total,
        )


async def test_conflicts(world: World, unchanged: None) -> None:
    t = world.tenant
    await expect(t.worker, "CONFLICT", h.FINISH, run=world.done_run)
    await expect(t.worker, "CONFLICT", h.FINISH, run=world.done_run, code="ERR_LATE")
    await expect(t.worker, "CONFLICT", h.FINISH, run=world.done_run, items=[h.item("late")])
    await expect(t.worker, "CONFLICT", h.START, user=world.busy)
    await expect(t.worker, "CONFLICT", h.START, user=world.busy, kind="DELTA", service="DRIVE")
    existing = {"email": "DONE@b.example", "destinationEmail": "x@d.example"}
    new = {"email": "new@b.example", "destinationEmail": "new@d.example"}
    await expect(t.admin, "CONFLICT", h.ADD_USERS, users=[new, existing])
    twice = [new, {"email": "New@B.example", "destinationEmail": "other@d.example"}]
    await expect(t.admin, "CONFLICT", h.ADD_USERS, users=twice)
    await expect(
        t.admin, "CONFLICT", h.CREATE_POLICY, input={"name": "Paused", "syncIntervalMinutes": 60}
    )
    await expect(
        t.admin,
        "CONFLICT",
        h.UPDATE_POLICY,
        id=world.policy,
        input={"name": "Paused", "syncIntervalMinutes": 60},
    )


async def test_other_bad_arguments(world: World, unchanged: None) -> None:
    t = world.tenant
    for policy in (
        {"name": "p", "syncIntervalMinutes": 14},
        {"name": "p", "syncIntervalMinutes": 10081},
        {"name": "p", "syncIntervalMinutes": -60},
        {"name": "p", "syncIntervalMinutes": 60, "services": []},
        {"name": "p", "syncIntervalMinutes": 60, "services": ["FAX"]},
        {"name": "p"},
    ):
        await expect(t.admin, "BAD_USER_INPUT", h.CREATE_POLICY, input=policy)
        await expect(t.admin, "BAD_USER_INPUT", h.UPDATE_POLICY, id=world.policy, input=policy)
    for limit in (0, -1, 101):
        await expect(t.worker, "BAD_USER_INPUT", h.CLAIM, limit=limit)
    await expect(t.worker, "BAD_USER_INPUT", h.CLAIM, limit=5, services=[])
    await expect(t.worker, "BAD_USER_INPUT", h.CLAIM, limit=5, services=["FAX"])
    await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=world.run, message="no code")
    await expect(t.worker, "BAD_USER_INPUT", h.START, user=world.fresh, kind="FULL")
    await expect(t.viewer, "BAD_USER_INPUT", h.SYNC_USERS, filter={"status": "BROKEN"})
    await expect(t.viewer, "BAD_USER_INPUT", h.SYNC_USERS, order="EMAIL_DESC")
    await expect(t.admin, "BAD_USER_INPUT", TOKEN.replace("VIEWER", "ROOT"), name="x")
    many = [
        {"email": f"m{i}@b.example", "destinationEmail": f"m{i}@d.example"} for i in range(1001)
    ]
    await expect(t.admin, "BAD_USER_INPUT", h.ADD_USERS, users=many)
    await expect(t.admin, "BAD_USER_INPUT", h.ASSIGN, ids=[world.fresh] * 1001, policy=None)
    items = [h.item(f"i{i}") for i in range(1001)]
    await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=world.run, items=items)
    await expect(
        t.worker, "BAD_USER_INPUT", h.REPORT, run=world.run, processed=9, changes=9, items=items
    )


def _forge(cursor: str, change: Any) -> str:
    """A cursor of ours with its key replaced: clients can decode and re-encode cursors."""
    raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    return b64(json.dumps(change(raw)))


FORGERIES = {
    "huge id": lambda raw: [*raw[:-1], 10**30],
    "id beyond INTEGER": lambda raw: [*raw[:-1], 2**31],
    "negative huge id": lambda raw: [*raw[:-1], -(10**30)],
    "float id": lambda raw: [*raw[:-1], 1.5],
    "bool id": lambda raw: [*raw[:-1], True],
    "null key": lambda raw: [raw[0], raw[1], None, *raw[3:]],
    "extra key": lambda raw: [*raw, 1],
    "other tenant": lambda raw: [raw[0], raw[1] + 1, *raw[2:]],
    "tenant as text": lambda raw: [raw[0], str(raw[1]), *raw[2:]],
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
async def test_forged_cursors(world: World, unchanged: None, forgery: str) -> None:
    viewer = world.tenant.viewer
    change = FORGERIES[forgery]
    for order in ("EMAIL_ASC", "LATEST_SYNC_DESC"):
        found = await viewer.execute(h.SYNC_USERS, order=order, first=1)
        cursor = _forge(found["syncUsers"]["edges"][0]["cursor"], change)
        for arg in ("after", "before"):
            await expect(viewer, "BAD_USER_INPUT", h.SYNC_USERS, order=order, **{arg: cursor})
    policies = (await viewer.execute(h.POLICIES, first=1))["policies"]["edges"][0]["cursor"]
    await expect(viewer, "BAD_USER_INPUT", h.POLICIES, after=_forge(policies, change))
    runs = (await viewer.execute(h.RUNS, id=world.done, first=1))["syncUser"]["runs"]
    forged = _forge(runs["edges"][0]["cursor"], change)
    await expect(viewer, "BAD_USER_INPUT", h.RUNS, id=world.done, before=forged)


async def test_forged_text_keys(world: World, unchanged: None) -> None:
    viewer = world.tenant.viewer
    found = await viewer.execute(h.SYNC_USERS, first=1)
    cursor = found["syncUsers"]["edges"][0]["cursor"]
    for key in ("a\x00b", "\ud800", 5):
        forged = _forge(cursor, lambda raw, key=key: [raw[0], raw[1], key, raw[3]])
        await expect(viewer, "BAD_USER_INPUT", h.SYNC_USERS, after=forged)
    # A forged but well-formed position is just a position: rows after it.
    after_z = _forge(cursor, lambda raw: [raw[0], raw[1], "zzz", 1])
    assert (await viewer.execute(h.SYNC_USERS, after=after_z))["syncUsers"]["edges"] == []


UNSTORABLE = ["a\x00b", "\x00", "x\ud800y"]


@pytest.mark.parametrize("bad", UNSTORABLE, ids=["nul", "only-nul", "lone-surrogate"])
async def test_text_the_databases_cannot_store(world: World, unchanged: None, bad: str) -> None:
    t = world.tenant
    await expect(t.viewer, "BAD_USER_INPUT", h.SYNC_USERS, filter={"emailContains": bad})
    for policy in (
        {"name": bad, "syncIntervalMinutes": 60},
        {"name": "ok", "description": bad, "syncIntervalMinutes": 60},
    ):
        await expect(t.admin, "BAD_USER_INPUT", h.CREATE_POLICY, input=policy)
        await expect(t.admin, "BAD_USER_INPUT", h.UPDATE_POLICY, id=world.policy, input=policy)
    for user in (
        {"email": f"{bad}@b.example", "destinationEmail": "x@d.example"},
        {"email": "x@b.example", "destinationEmail": f"{bad}@d.example"},
    ):
        await expect(t.admin, "BAD_USER_INPUT", h.ADD_USERS, users=[user])
    await expect(t.admin, "BAD_USER_INPUT", TOKEN, name=bad)
    run = world.run
    await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=run, code=bad)
    await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=run, code="E", message=bad)
    for field in ("itemId", "itemType", "errorCode", "errorMessage"):
        items = [{**h.item("i"), field: bad}]
        await expect(t.worker, "BAD_USER_INPUT", h.FINISH, run=run, items=items)
        await expect(
            t.worker, "BAD_USER_INPUT", h.REPORT, run=run, processed=9, changes=9, items=items
        )


async def test_unicode_text_is_fine(world: World, unchanged: None) -> None:
    viewer = world.tenant.viewer
    for term in ("é", "ünïcödé", "日本", "😀😀😀"):
        found = (await viewer.execute(h.SYNC_USERS, filter={"emailContains": term}))["syncUsers"]
        assert (found["totalCount"], found["edges"]) == (0, []), term
