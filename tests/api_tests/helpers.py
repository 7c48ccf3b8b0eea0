"""GraphQL documents and helpers shared by the API tests: quick setup through the mutations
(many calls per request, as aliases), full listings, and snapshots of a tenant's state."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from tests.api import Api

USER_FIELDS = """
  id email destinationEmail status latestSyncAt nextScheduledSyncAt unresolvedFailureCount
  version policy { id }
  currentRun { id state itemsProcessed itemsFailed changes }
  lastFinishedRun { id state itemsProcessed itemsFailed changes errorCode }
"""
RUN_FIELDS = """
  id kind service state startedAt finishedAt durationSeconds itemsTotal itemsProcessed
  itemsFailed changes progress errorCode errorMessage user { id }
"""
POLICY_FIELDS = """
  id name description active syncIntervalMinutes services userCount createdAt updatedAt
"""
METRICS = """{ syncMetrics { usersWithActivePolicy changesLast24h syncsInProgress failedSyncs
  totalUsers asOf } }"""
CREATE_POLICY = f"""mutation($input: PolicyInput!) {{ createPolicy(input: $input) {{
  {POLICY_FIELDS} }} }}"""
UPDATE_POLICY = f"""mutation($id: ID!, $input: PolicyInput!) {{ updatePolicy(id: $id, input: $input)
  {{ {POLICY_FIELDS} }} }}"""
SET_ACTIVE = f"""mutation($id: ID!, $active: Boolean!) {{ setPolicyActive(id: $id, active: $active)
  {{ {POLICY_FIELDS} }} }}"""
ADD_USERS = f"""mutation($users: [SyncUserInput!]!) {{ addSyncUsers(users: $users) {{
  {USER_FIELDS} }} }}"""
ASSIGN = f"""mutation($ids: [ID!]!, $policy: ID) {{
  assignPolicy(userIds: $ids, policyId: $policy) {{ {USER_FIELDS} }} }}"""
REQUEST_SYNC = f"mutation($id: ID!) {{ requestSync(userId: $id) {{ {USER_FIELDS} }} }}"
START = f"""mutation($user: ID!, $kind: RunKind, $service: SyncService, $total: Int) {{
  startSyncRun(userId: $user, kind: $kind, service: $service, itemsTotal: $total) {{
  {RUN_FIELDS} }} }}"""
REPORT = f"""mutation($run: ID!, $processed: Int!, $changes: Int!, $total: Int,
  $items: [FailedItemInput!]) {{ reportSyncProgress(runId: $run, itemsProcessed: $processed,
  changes: $changes, itemsTotal: $total, failedItems: $items) {{ {RUN_FIELDS} }} }}"""
FINISH = f"""mutation($run: ID!, $code: String, $message: String, $items: [FailedItemInput!]) {{
  finishSyncRun(runId: $run, errorCode: $code, errorMessage: $message, failedItems: $items) {{
  {RUN_FIELDS} }} }}"""
CLAIM = f"""mutation($limit: Int!, $services: [SyncService!]) {{
  claimDueSyncRuns(limit: $limit, services: $services) {{ {RUN_FIELDS} }} }}"""
USER = f"query($id: ID!) {{ syncUser(id: $id) {{ {USER_FIELDS} }} }}"
RUN = f"""query($id: ID!) {{ syncRun(id: $id) {{ {RUN_FIELDS}
  failedItems(first: 100) {{ totalCount edges {{ node {{
    itemId itemType errorCode errorMessage failedAt }} }} }} }} }}"""
RUNS = """query($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
  syncUser(id: $id) { runs(first: $first, after: $after, last: $last, before: $before) {
    totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id state startedAt } } } } }"""
POLICIES = f"""query($first: Int, $after: String, $last: Int, $before: String) {{
  policies(first: $first, after: $after, last: $last, before: $before) {{
    totalCount pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
    edges {{ cursor node {{ {POLICY_FIELDS} }} }} }} }}"""
SYNC_USERS = f"""query($filter: SyncUserFilter, $order: SyncUserOrder, $first: Int,
  $after: String, $last: Int, $before: String) {{
  syncUsers(filter: $filter, orderBy: $order, first: $first, after: $after, last: $last,
            before: $before) {{
    totalCount pageInfo {{ hasNextPage hasPreviousPage startCursor endCursor }}
    edges {{ cursor node {{ {USER_FIELDS} }} }} }} }}"""

ARG_TYPES = {
    "startSyncRun": {
        "userId": "ID!",
        "kind": "RunKind",
        "service": "SyncService",
        "itemsTotal": "Int",
    },
    "reportSyncProgress": {
        "runId": "ID!",
        "itemsProcessed": "Int!",
        "changes": "Int!",
        "itemsTotal": "Int",
        "failedItems": "[FailedItemInput!]",
    },
    "finishSyncRun": {
        "runId": "ID!",
        "errorCode": "String",
        "errorMessage": "String",
        "failedItems": "[FailedItemInput!]",
    },
    "requestSync": {"userId": "ID!"},
}
STATUSES = ("NEVER_SYNCED", "IN_PROGRESS", "SYNCED", "COMPLETED_WITH_WARNING", "FAILED")


def when(value: str) -> datetime:
    """A DateTime of the API as an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def item(item_id: str, code: str = "ERR_ITEM_SIZE") -> dict[str, str]:
    return {
        "itemId": item_id,
        "itemType": "message",
        "errorCode": code,
        "errorMessage": f"{item_id} is too large",
    }


async def batch(
    api: Api, field: str, calls: list[dict[str, Any]], selection: str = "{ id }", chunk: int = 40
) -> list[dict[str, Any]]:
    """Runs one mutation field many times, as aliases of few requests (they run in order)."""
    types = ARG_TYPES[field]
    results: list[dict[str, Any]] = []
    for start in range(0, len(calls), chunk):
        part = calls[start : start + chunk]
        definitions: list[str] = []
        fields: list[str] = []
        variables: dict[str, Any] = {}
        for i, args in enumerate(part):
            passed = []
            for name, value in args.items():
                variable = f"v{i}_{name}"
                definitions.append(f"${variable}: {types[name]}")
                passed.append(f"{name}: ${variable}")
                variables[variable] = value
            fields.append(f"a{i}: {field}({', '.join(passed)}) {selection}")
        document = f"mutation({', '.join(definitions)}) {{ {' '.join(fields)} }}"
        data = await api.execute(document, **variables)
        results.extend(data[f"a{i}"] for i in range(len(part)))
    return results


async def create_policy(
    api: Api,
    name: str,
    *,
    active: bool = True,
    interval: int = 60,
    services: list[str] | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "active": active, "syncIntervalMinutes": interval}
    if services is not None:
        data["services"] = services
    if description is not None:
        data["description"] = description
    return (await api.execute(CREATE_POLICY, input=data))["createPolicy"]


async def add_users(
    api: Api, emails: list[str], policy_id: str | None = None, domain: str = "dest.example"
) -> list[dict[str, Any]]:
    users = []
    for email in emails:
        local = email.split("@", 1)[0]
        users.append(
            {"email": email, "destinationEmail": f"{local}@{domain}", "policyId": policy_id}
        )
    added: list[dict[str, Any]] = []
    for start in range(0, len(users), 500):
        added += (await api.execute(ADD_USERS, users=users[start : start + 500]))["addSyncUsers"]
    return added


async def start(api: Api, user_id: str, **kwargs: Any) -> dict[str, Any]:
    return (await api.execute(START, user=user_id, **kwargs))["startSyncRun"]


async def report(
    api: Api, run_id: str, processed: int, changes: int, **kwargs: Any
) -> dict[str, Any]:
    data = await api.execute(REPORT, run=run_id, processed=processed, changes=changes, **kwargs)
    return data["reportSyncProgress"]


async def finish(api: Api, run_id: str, **kwargs: Any) -> dict[str, Any]:
    return (await api.execute(FINISH, run=run_id, **kwargs))["finishSyncRun"]


async def user(api: Api, user_id: str) -> dict[str, Any]:
    return (await api.execute(USER, id=user_id))["syncUser"]


async def run(api: Api, run_id: str) -> dict[str, Any]:
    return (await api.execute(RUN, id=run_id))["syncRun"]


async def metrics(api: Api) -> dict[str, Any]:
    return (await api.execute(METRICS))["syncMetrics"]


async def drive(
    worker: Api, targets: list[tuple[str, str]], changes: int = 0
) -> dict[str, dict[str, Any]]:
    """Brings each (user id, status) to that status with one run; returns the runs by user.
    Every run reports `changes` changes before it finishes."""
    started = [(u, s) for u, s in targets if s != "NEVER_SYNCED"]
    runs = await batch(
        worker, "startSyncRun", [{"userId": u, "itemsTotal": 10} for u, _ in started]
    )
    by_user = {u: r for (u, _), r in zip(started, runs, strict=True)}
    if changes:
        await batch(
            worker,
            "reportSyncProgress",
            [{"runId": r["id"], "itemsProcessed": 5, "changes": changes} for r in runs],
        )
    finishes: list[dict[str, Any]] = []
    for user_id, status in started:
        run_id = by_user[user_id]["id"]
        if status == "SYNCED":
            finishes.append({"runId": run_id})
        elif status == "COMPLETED_WITH_WARNING":
            finishes.append({"runId": run_id, "failedItems": [item(f"m-{run_id}")]})
        elif status == "FAILED":
            finishes.append(
                {"runId": run_id, "errorCode": "ERR_TOKEN_001", "errorMessage": "Token expired"}
            )
    await batch(worker, "finishSyncRun", finishes)
    return by_user


async def all_users(
    api: Api, filt: dict[str, Any] | None = None, order: str = "EMAIL_ASC"
) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await api.execute(SYNC_USERS, filter=filt, order=order, first=100, after=after))[
            "syncUsers"
        ]
        nodes += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]


async def all_policies(api: Api) -> list[dict[str, Any]]:
    return [e["node"] for e in (await api.execute(POLICIES, first=100))["policies"]["edges"]]


# snapshot's documents: METRICS and all_policies' fields in one, RUNS' ids and RUN's selection
# aliased, SNAPSHOT_CHUNK a request (20 runs' failedItems(first: 100) stay under the cost limit).
SNAPSHOT_REST = f"""{{ {METRICS.strip()[1:-1].strip()}
  policies(first: 100) {{ edges {{ node {{ {POLICY_FIELDS} }} }} }} }}"""
SNAPSHOT_RUN_IDS = "{ runs(first: 100) { edges { node { id } } } }"
SNAPSHOT_RUN = RUN.split("syncRun(id: $id) ", 1)[1].rsplit("}", 1)[0]
SNAPSHOT_CHUNK = 20


async def snapshot(api: Api) -> dict[str, Any]:
    """Everything a caller can see of a tenant, minus what moves with the clock: the fields of
    all_users, METRICS, all_policies, each user's RUNS (first 100) and each of those runs'
    RUN, in four requests (aliases, SNAPSHOT_CHUNK a request) where one a user and one a run
    made a bad-input test's teardown most of its time."""
    users = await all_users(api)
    for node in users:
        node.pop("nextScheduledSyncAt")
    rest = await api.execute(SNAPSHOT_REST)
    found = rest["syncMetrics"]
    found.pop("asOf")
    policies = [e["node"] for e in rest["policies"]["edges"]]
    pages = await _aliased(api, "syncUser", SNAPSHOT_RUN_IDS, [node["id"] for node in users])
    run_ids = [edge["node"]["id"] for page in pages for edge in page["runs"]["edges"]]
    runs = {}
    for full in await _aliased(api, "syncRun", SNAPSHOT_RUN, run_ids):
        full.pop("durationSeconds")
        runs[full["id"]] = full
    return {"users": users, "metrics": found, "policies": policies, "runs": runs}


async def _aliased(api: Api, field: str, selection: str, ids: list[str]) -> list[dict[str, Any]]:
    """``field(id: ...) selection`` for each id, SNAPSHOT_CHUNK aliases a request, in order."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), SNAPSHOT_CHUNK):
        part = ids[start : start + SNAPSHOT_CHUNK]
        variables = ", ".join(f"$i{n}: ID!" for n in range(len(part)))
        fields = " ".join(f"a{n}: {field}(id: $i{n}) {selection}" for n in range(len(part)))
        data = await api.execute(
            f"query({variables}) {{ {fields} }}", **{f"i{n}": i for n, i in enumerate(part)}
        )
        found += [data[f"a{n}"] for n in range(len(part))]
    return found


def row_id(global_id: str) -> int:
    """The keyset tie-breaker (pages are ordered by sort key, then id) of an opaque SyncUser id."""
    raw = base64.urlsafe_b64decode(global_id + "=" * (-len(global_id) % 4)).decode()
    kind, _, number = raw.partition(":")
    assert kind == "SyncUser"
    return int(number)


def matches(user: dict[str, Any], filt: dict[str, Any]) -> bool:
    """SyncUserFilter by brute force, from the contract's words."""
    term = filt.get("emailContains")
    if term is not None:
        term = term.strip().lower()
        if term and term not in user["email"] and term not in user["destinationEmail"]:
            return False
    low, high = filt.get("latestSyncFrom"), filt.get("latestSyncTo")
    if low is not None or high is not None:
        if user["latestSyncAt"] is None:  # never-synced users are excluded
            return False
        at = when(user["latestSyncAt"])
        if (low is not None and at < when(low)) or (high is not None and at > when(high)):
            return False
    if filt.get("policyId") and (user["policy"] or {}).get("id") != filt["policyId"]:
        return False
    return not (filt.get("status") and user["status"] != filt["status"])


def expected_ids(users: list[dict[str, Any]], filt: dict[str, Any], order: str) -> list[str]:
    """The ids syncUsers must list, in order (ties broken by row id, as the keyset does)."""
    kept = [u for u in users if matches(u, filt)]
    if order == "EMAIL_ASC":
        kept.sort(key=lambda u: (u["email"], row_id(u["id"])))
        return [u["id"] for u in kept]
    synced = sorted(
        (u for u in kept if u["latestSyncAt"]),
        key=lambda u: (when(u["latestSyncAt"]), row_id(u["id"])),
        reverse=True,
    )
    never = sorted((u for u in kept if not u["latestSyncAt"]), key=lambda u: -row_id(u["id"]))
    return [u["id"] for u in synced + never]  # never-synced last
