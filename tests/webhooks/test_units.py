"""Pure logic of webhooks: which addresses are refused, URL rules, the signature (checked with
the `standardwebhooks` package), backoff and give-up, and sealing secrets."""

from __future__ import annotations

import base64
import ipaddress
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from app.domain.errors import BadUserInput
from app.webhooks.deliverer import Claimed, Outcome, next_attempt, retry_delay, sign
from app.webhooks.outbox import events_of
from app.webhooks.secret_box import SecretBox, load_secret_box
from app.webhooks.settings import WebhookSettings
from app.webhooks.urls import parse, refusal, resolve

REFUSED = [
    "127.0.0.1",
    "127.255.0.9",
    "10.0.0.1",
    "172.31.255.255",
    "192.168.0.10",
    "169.254.169.254",
    "169.254.1.1",
    "100.64.0.1",
    "0.0.0.0",
    "224.0.0.251",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fe80::1",
    "fd00::1",
    "fd00:ec2::254",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "2001:db8::1",
    # IPv6 that carries an internal IPv4: 6to4, NAT64, IPv4-compatible, Teredo (its client
    # 127.0.0.1); and the IETF protocol block. (6to4 and 192.0.0.8 were accepted.)
    "2002:7f00:1::",
    "2002:a9fe:a9fe::",
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "::127.0.0.1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",
    "192.0.0.8",
]
ALLOWED = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "2002:808:808::"]


@pytest.mark.parametrize("address", REFUSED)
def test_internal_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "javascript:alert(1)",
        "http://u:p@example.com/",
        "http://user@example.com/",
        "http:///x",
        "https://example.com/#frag",
        "http://exa mple.com/",
        "http://example.com/\n",
        "http://example.com/" + "x" * 2100,
        "http://example.com:0/",
        "https://example.com:99999/",
        "",
    ],
)
def test_urls_we_do_not_accept(url: str) -> None:
    with pytest.raises(BadUserInput):
        parse(url)


def test_a_url_we_accept() -> None:
    target = parse("https://Hooks.Example.com:8443/a/b?c=d")
    assert (target.host, target.port) == ("hooks.example.com", 8443)
    assert parse("http://example.com/x").port == 80


async def test_names_resolving_to_loopback_are_refused_unless_allowed() -> None:
    with pytest.raises(BadUserInput, match="loopback"):
        await resolve(parse("http://localhost:9/x"), allow_private=False)
    addresses = await resolve(parse("http://localhost:9/x"), allow_private=True)
    assert addresses and all(a.is_loopback for a in addresses)
    with pytest.raises(BadUserInput, match="could not be resolved"):
        await resolve(parse("http://no-such-host.invalid/x"), allow_private=True)


def test_the_signature_verifies_with_standardwebhooks() -> None:
    key = os.urandom(32)
    secret = "whsec_" + base64.b64encode(key).decode()
    body = '{"type":"run.failed"}'
    now = int(datetime.now(UTC).timestamp())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(now),
        "webhook-signature": sign(key, "msg_1", now, body),
    }
    assert Webhook(secret).verify(body, headers) == {"type": "run.failed"}


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    settings = WebhookSettings(first_retry_seconds=5, max_retry_delay_seconds=3600)
    for attempts, base in [(1, 5), (2, 10), (3, 20), (10, 2560), (11, 3600), (60, 3600)]:
        delays = [retry_delay(settings, attempts) for _ in range(200)]
        assert all(base * 0.5 <= d <= base for d in delays)
        assert len(set(delays)) > 100  # jitter


def test_retries_go_on_for_the_window_then_stop() -> None:
    settings = WebhookSettings()
    day = 24 * 3600 * 1_000_000
    claimed = Claimed(id=1, webhook_id=1, payload="{}", attempts=3, created_at=0)
    assert next_attempt(settings, Outcome(claimed, 500, day - 1)) is not None
    assert next_attempt(settings, Outcome(claimed, None, day)) is None  # given up
    assert next_attempt(settings, Outcome(claimed, 204, 10)) is None  # delivered
    # The backoff alone, from the first attempt, keeps retrying past 24 hours.
    at, attempts = 0, 0
    while (
        nxt := next_attempt(settings, Outcome(Claimed(1, 1, "{}", attempts, 0), 500, at))
    ) is not None:
        at, attempts = nxt, attempts + 1
    assert at >= day and attempts > 20


def test_sealed_secrets_open_only_with_their_key_and_context() -> None:
    box = SecretBox("k" * 40)
    sealed = box.seal(b"secret", b"tenant:1")
    assert b"secret" not in base64.b64decode(sealed[3:])
    assert box.open(sealed, b"tenant:1") == b"secret"
    with pytest.raises(ValueError):
        box.open(sealed, b"tenant:2")
    with pytest.raises(ValueError):
        SecretBox("j" * 40).open(sealed, b"tenant:1")
    with pytest.raises(ValueError):
        SecretBox("short")


def test_the_embedded_default_keeps_a_private_key_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/s.db"
    first = load_secret_box(url, env={})
    assert first is not None
    key_file = tmp_path / "s.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    sealed = first.seal(b"x", b"c")
    again = load_secret_box(url, env={})
    assert again is not None and again.open(sealed, b"c") == b"x"
    assert load_secret_box("postgresql://u@h/db", env={}) is None
    configured = load_secret_box("postgresql://u@h/db", env={"SYNCSTATUS_SECRET_KEY": "z" * 32})
    assert configured is not None


@pytest.mark.parametrize(
    ("state", "was_failed", "events"),
    [
        ("FAILED", False, ["RUN_FAILED"]),
        ("FAILED", True, ["RUN_FAILED"]),
        ("COMPLETED_WITH_WARNING", False, ["RUN_COMPLETED_WITH_WARNING"]),
        ("COMPLETED_WITH_WARNING", True, ["RUN_COMPLETED_WITH_WARNING", "USER_RECOVERED"]),
        ("SUCCEEDED", True, ["USER_RECOVERED"]),
        ("SUCCEEDED", False, []),
    ],
)
def test_the_events_a_finish_raises(state: str, was_failed: bool, events: list[str]) -> None:
    assert events_of(state, was_failed) == events
