"""The one-line summaries of the audit log: what changed, as a person reads it."""

from __future__ import annotations

from collections.abc import Sequence

from app.domain.views import PolicyView

MAX_LISTED = 3


def _settings(policy: PolicyView) -> str:
    state = "active" if policy.active else "inactive"
    return f"every {policy.sync_interval_minutes} min, {'+'.join(policy.services)}, {state}"


def policy_created(policy: PolicyView) -> str:
    return f"Policy {policy.name!r} created: {_settings(policy)}"


def policy_updated(before: PolicyView, after: PolicyView) -> str:
    changes = []
    if before.name != after.name:
        changes.append(f"renamed from {before.name!r}")
    if before.sync_interval_minutes != after.sync_interval_minutes:
        changes.append(
            f"every {after.sync_interval_minutes} min (was {before.sync_interval_minutes})"
        )
    if before.services != after.services:
        changes.append(f"{'+'.join(after.services)} (was {'+'.join(before.services)})")
    if before.active != after.active:
        changes.append("active" if after.active else "inactive")
    if before.description != after.description:
        changes.append("description changed")
    return f"Policy {after.name!r} updated: {', '.join(changes) or 'no change'}"


def policy_activation(policy: PolicyView, was_active: bool) -> str:
    verb = "activated" if policy.active else "deactivated"
    unchanged = " (it already was)" if was_active == policy.active else ""
    return f"Policy {policy.name!r} {verb}{unchanged}"


def _listed(emails: Sequence[str]) -> str:
    shown = ", ".join(emails[:MAX_LISTED])
    more = len(emails) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def _users(count: int) -> str:
    return f"{count} user{'s' if count != 1 else ''}"


def users_added(emails: Sequence[str], policy_names: Sequence[str]) -> str:
    under = f" under {', '.join(repr(n) for n in policy_names)}" if policy_names else ""
    return f"{_users(len(emails))} added{under}: {_listed(emails)}"


def users_assigned(emails: Sequence[str], policy: PolicyView | None, changed: int) -> str:
    where = f"to policy {policy.name!r}" if policy else "to no policy"
    return f"{_users(len(emails))} assigned {where} ({changed} changed): {_listed(emails)}"


def token_created(name: str, role: str) -> str:
    return f"Token {name!r} created with role {role}"


def token_revoked(name: str, role: str) -> str:
    return f"Token {name!r} with role {role} revoked"


def sync_requested(email: str) -> str:
    return f"Sync requested for {email}"


def origin(url: str) -> str:
    """The scheme, host and port: a receiver's path or query may hold a credential of its own."""
    import httpx  # only here: the CLI's token commands record summaries without importing it

    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def webhook_created(url: str, events: Sequence[str]) -> str:
    return f"Webhook to {origin(url)} created for {', '.join(events)}"


def webhook_deleted(url: str) -> str:
    return f"Webhook to {origin(url)} deleted"
