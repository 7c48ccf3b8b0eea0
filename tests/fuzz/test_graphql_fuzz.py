"""Fuzzing: schemathesis (hypothesis-graphql) writes queries and mutations for every root field
of the live schema and sends them to a real server, with a token of each role, against a tenant
seeded with policies, users, runs of every state, failed items, a webhook with deliveries, audit
events and tokens. Whatever it sends, the answer is never a 5xx, never INTERNAL_SERVER_ERROR,
never an error without a contract code, never a body that breaks the schema, and never late.

Bounded and reproducible: few examples per field (FUZZ_EXAMPLES raises them for a deeper run
by hand; FUZZ_LOG=<file> writes every request and answer), derandomized, no example database,
no shrinking (every failure is collected and reported at once, with the document that caused
it)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from random import Random
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core.failures import Failure
from schemathesis.core.transport import Response
from schemathesis.graphql import nodes
from schemathesis.specs.graphql.scalars import CUSTOM_SCALARS

from app.domain.ids import MAX_ROW_ID, NODE_TYPES, decode_any_id, encode_id
from tests.api_tests import helpers as h
from tests.api_tests.conftest import ApiTenant, new_tenant
from tests.fuzz.as_variables import as_variables
from tests.server import Server, run_server, throwaway_database
from tests.webhook_receiver import Receiver

ROLES = ("viewer", "operator", "worker", "admin")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))  # positive cases per field and role
NEGATIVE_EXAMPLES = max(1, EXAMPLES // 2)  # invalid documents per field (one role: they never run)
REQUEST_TIMEOUT = 20.0  # seconds; one request slower than this counts as a hang
CONTRACT_CODES = {
    "BAD_USER_INPUT",
    "UNAUTHENTICATED",
    "FORBIDDEN",
    "NOT_FOUND",
    "CONFLICT",
    "QUERY_TOO_COMPLEX",
    "RATE_LIMITED",
    "PERSISTED_QUERY_NOT_FOUND",
}
SETTINGS = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzz_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server of its own: the fuzzer's mutations must not disturb other modules' tenants;
    webhooks may target the receiver on loopback."""
    env = {"SYNCSTATUS_WEBHOOK_ALLOW_PRIVATE": "1", "SYNCSTATUS_WEBHOOK_POLL_SECONDS": "0.1"}
    if request.param == "postgres":
        env["SYNCSTATUS_SECRET_KEY"] = "tests-only-server-key-0123456789abcdef"
    with throwaway_database(request.param) as url, run_server(url, env=env) as server:
        yield server


@dataclass
class Seeded:
    tenant: ApiTenant
    ids: list[str]  # global ids of both tenants' objects, of every type
    protected_rows: set[int] = field(default_factory=set)  # the fuzzing tokens' own rows


async def seed(tenant: ApiTenant, other: ApiTenant, receiver: Receiver) -> Seeded:
    """Both tenants get everything there is to point at; the fuzzed one has every run state."""
    ids: list[str] = []
    for owner in (tenant, other):
        admin, worker = owner.admin, owner.worker
        active = await h.create_policy(admin, "Mail hourly", services=["MAIL", "CALENDAR"])
        idle = await h.create_policy(admin, "Idle ✉ ünïcödé", active=False, description="x" * 300)
        emails = [f"u{i}@fuzz.example" for i in range(8)]
        users = await h.add_users(admin, emails[:6], active["id"])
        users += await h.add_users(admin, emails[6:], idle["id"])
        hook = await admin.execute(
            "mutation($url: String!) { createWebhook(url: $url, events: "
            "[RUN_FAILED, RUN_COMPLETED_WITH_WARNING, USER_RECOVERED]) { webhook { id } } }",
            url=receiver.url,
        )
        targets = ["SYNCED", "COMPLETED_WITH_WARNING", "FAILED", "FAILED", "SYNCED"]
        pairs = [(u["id"], s) for u, s in zip(users[: len(targets)], targets, strict=True)]
        runs = await h.drive(worker, pairs, changes=7)
        # A second failure code, a recovery and one run left running with progress.
        again = await h.start(worker, users[3]["id"])
        await h.finish(worker, again["id"], code="ERR_QUOTA", message="Mailbox quota ✗")
        recovered = await h.start(worker, users[2]["id"])
        await h.finish(worker, recovered["id"])
        running = await h.start(worker, users[5]["id"], total=100)
        await h.report(worker, running["id"], 40, 12, items=[h.item("big-1"), h.item("big-2")])
        spare = await admin.execute(
            'mutation { createApiToken(name: "spare", role: VIEWER) { id } }'
        )
        ids += [active["id"], idle["id"], hook["createWebhook"]["webhook"]["id"]]
        ids += [u["id"] for u in users] + [r["id"] for r in runs.values()]
        ids += [again["id"], recovered["id"], running["id"], spare["createApiToken"]["id"]]
    # Deliveries and audit events exist once the deliverer has run.
    deadline = time.monotonic() + 20
    while True:
        page = await tenant.admin.execute(
            "{ webhooks { edges { node { deliveries(first: 5) { edges { node { id } } } } } }"
            " auditEvents(first: 5) { edges { node { id } } } apiTokens(first: 100) {"
            " edges { node { id name } } } }"
        )
        deliveries = [
            e["node"]["id"]
            for hook in page["webhooks"]["edges"]
            for e in hook["node"]["deliveries"]["edges"]
        ]
        if deliveries or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert deliveries, "the seeded webhook got no delivery"
    ids += deliveries + [e["node"]["id"] for e in page["auditEvents"]["edges"]]
    protected = {
        decode_any_id(e["node"]["id"])[1]
        for e in page["apiTokens"]["edges"]
        if e["node"]["name"] != "spare"
    }
    return Seeded(tenant, ids, protected)


def forged_ids(seeded: Seeded) -> list[str]:
    """Ids of the right shape for a missing row, the wrong type, or out of range."""
    forged = []
    rows = sorted({decode_any_id(i)[1] for i in seeded.ids})
    for type_name in NODE_TYPES:
        for row in (*rows[:3], 0, -1, MAX_ROW_ID, MAX_ROW_ID + 1, 2**63, 10**30):
            if type_name == "ApiTokenInfo" and row in seeded.protected_rows:
                continue  # revoking the fuzzer's own tokens would end the run early
            forged.append(encode_id(type_name, row))
    raw = [b"SyncUser:", b"SyncUser:1.5", b"SyncUser:0x10", b"Nope:1", b"SyncUser:\xff", b":"]
    forged += [base64.urlsafe_b64encode(r).decode().rstrip("=") for r in raw]
    forged += [encode_id("SyncUser", 1) + "=", "SyncUser:1", "%00", "\u202e", "A" * 201]
    return forged


def datetimes() -> st.SearchStrategy[Any]:
    zones = st.sampled_from(
        [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12, minutes=-30))]
    )
    aware = st.datetimes(timezones=zones).map(datetime.isoformat)
    recent = st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
    ).map(datetime.isoformat)
    odd = st.sampled_from(
        [
            "",
            "now",
            "2026-02-30T00:00:00Z",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59-14:00",
            "9999-12-31T23:59:59.999999Z",
            "+275760-09-13T00:00:00Z",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "1e309",
        ]
    )
    texts = st.one_of(aware, recent, st.datetimes().map(datetime.isoformat), odd, st.text())
    return st.one_of(texts.map(nodes.String), st.integers().map(nodes.Int))


def strings() -> st.SearchStrategy[Any]:
    big = st.sampled_from([300, 5_000, 70_000]).map(lambda n: "é" * n)
    odd = st.sampled_from(
        ["\x00", "a\x00b", "\u202e", "\ufeff", "\U0001d518", "\U0010ffff", "%", "_", "\\"]
    )
    urls = st.sampled_from(
        [
            "http://127.0.0.1:9/x",
            "https://[::1]/x",
            "http://169.254.169.254/",
            "http://user:pw@example.com/",
            "http://xn--nxasmq6b.example/",
            "ftp://example.com/",
            "http://" + "a" * 70 + ".example/",
        ]
    )
    return st.one_of(st.text(), big, odd, urls, st.emails()).map(nodes.String)


def integers() -> st.SearchStrategy[Any]:
    edges = st.sampled_from([0, -1, 1, 14, 15, 100, 101, 1000, 1001, 10080, 10081])
    return st.one_of(
        edges,
        st.integers(min_value=-(2**31), max_value=2**31 - 1),
        st.sampled_from([2**31, -(2**31) - 1, 2**53 + 1, 10**30]),
    ).map(nodes.Int)


@dataclass
class Findings:
    failures: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)  # "ok" or the first error's code

    def add(self, role: str, label: str, body: str, problem: str) -> None:
        if len(self.failures) < 200:
            self.failures.append(f"{role} {label}: {problem}\n    {body[:600]}")


def check(findings: Findings, role: str, case: Any, sent: str, response: Response) -> None:
    label = case.operation.label
    if response.status_code >= 500:
        findings.add(role, label, sent, f"HTTP {response.status_code}: {response.text[:300]}")
        return
    try:
        payload = response.json()
    except ValueError:
        findings.add(role, label, sent, f"HTTP {response.status_code}, not JSON")
        return
    errors = payload.get("errors") or []
    if os.environ.get("FUZZ_LOG"):
        with open(os.environ["FUZZ_LOG"], "a") as log:
            log.write(f"{role} {response.status_code} {sent}\n  -> {response.text[:400]}\n")
    first = errors[0].get("extensions", {}).get("code") if errors else "ok"
    findings.outcomes[f"{label.split('.')[0]} {first}"] += 1
    if response.status_code >= 400 and not errors:
        findings.add(role, label, sent, f"HTTP {response.status_code} without errors")
    for error in errors:
        code = (error.get("extensions") or {}).get("code")
        if code not in CONTRACT_CODES:
            findings.add(role, label, sent, f"code {code}: {error.get('message')}")
    try:
        case.operation.schema.validate_response(case.operation, response, case=case)
    except Failure as failure:
        findings.add(role, label, sent, f"{failure.title}: {failure.message[:300]}")


def fuzz(
    schema: Any,
    url: str,
    token: str,
    role: str,
    mode: GenerationMode,
    examples: int,
    findings: Findings,
) -> None:
    """Each generated operation is sent as it is (literals) and, when it is valid, once more
    with its arguments as variables."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(generation_mode=mode), random=st.randoms())
        @settings(SETTINGS, max_examples=examples)
        def send(case: Any, random: Random) -> None:
            bodies: list[dict[str, Any]] = [{"query": case.body}]
            if mode == GenerationMode.POSITIVE:
                query, variables = as_variables(schema.client_schema, case.body, random)
                bodies.append({"query": query, "variables": variables})
            for body in bodies:
                findings.counts[mode.value] = findings.counts.get(mode.value, 0) + 1
                sent = json.dumps(body)
                try:
                    answer = session.post(url, json=body, timeout=REQUEST_TIMEOUT)
                except requests.Timeout:
                    findings.add(role, case.operation.label, sent, "no answer in time")
                    continue
                check(findings, role, case, sent, Response.from_requests(answer, verify=True))

        send()


def register_scalars(seeded: Seeded) -> None:
    pool = st.sampled_from(seeded.ids) | st.sampled_from(forged_ids(seeded))
    ids = st.one_of(
        pool.map(nodes.String), st.text().map(nodes.String), st.integers().map(nodes.Int)
    )
    schemathesis.graphql.scalar("ID", ids)
    schemathesis.graphql.scalar("DateTime", datetimes())
    schemathesis.graphql.scalar("String", strings())
    schemathesis.graphql.scalar("Int", integers())


# A test per role (its own tenant, seeded alike), each its own xdist unit (tests/conftest.py
# FINE_UNITS): four tests of a quarter of the requests spread over the workers, where one took
# minutes and hit the timeout on a loaded machine.
@pytest.mark.parametrize("role", ROLES)
async def test_fuzzed_queries_and_mutations_get_contract_answers(
    fuzz_server: Server, role: str
) -> None:
    tenant = new_tenant(fuzz_server, "fuzz")
    other = new_tenant(fuzz_server, "fuzz-other")
    with Receiver() as receiver:
        seeded = await seed(tenant, other, receiver)
        tokens = {role: tenant.api(role).token for role in ROLES}
        schema = schemathesis.graphql.from_url(
            fuzz_server.graphql_url,
            headers={"Authorization": f"Bearer {tokens['admin']}"},
            timeout=REQUEST_TIMEOUT,
        )
        token = tokens[role]
        assert token is not None
        findings = Findings()
        registered = dict(CUSTOM_SCALARS)
        register_scalars(seeded)
        started = time.monotonic()
        try:
            await asyncio.to_thread(
                _run_all, schema, fuzz_server.graphql_url, role, token, findings
            )
        finally:
            CUSTOM_SCALARS.clear()
            CUSTOM_SCALARS.update(registered)
        elapsed = time.monotonic() - started
        print(f"fuzz: {findings.counts} requests in {elapsed:.1f} s; {dict(findings.outcomes)}")
        # The fuzzing tokens are still good: the run reached every field as each role.
        for role in ROLES:
            assert (await tenant.api(role).execute("{ viewer { role } }"))["viewer"]["role"] == (
                role.upper()
            )
    assert not findings.failures, "\n".join(findings.failures)
    assert findings.counts["positive"] >= EXAMPLES * 20


def _run_all(schema: Any, url: str, role: str, token: str, findings: Findings) -> None:
    fuzz(schema, url, token, role, GenerationMode.POSITIVE, EXAMPLES, findings)
    if role == "admin":  # invalid documents never run: one role is enough
        negative = GenerationMode.NEGATIVE
        fuzz(schema, url, token, role, negative, NEGATIVE_EXAMPLES, findings)
