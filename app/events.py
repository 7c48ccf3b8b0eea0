"""State-change events, published after commit on one broadcast channel per tenant.

An event carries what a subscriber needs (the user's new state with its policy and runs), so
fanning it out to many subscribers never queries the database per subscriber.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from app.views import PolicyView, UserView

log = logging.getLogger(__name__)

# started and finished must always reach subscribers; progress may be coalesced.
UserEventKind = Literal[
    "added", "assigned", "requested", "started", "progress", "finished", "policy"
]
LIFECYCLE_KINDS = frozenset({"started", "finished"})


@dataclass(frozen=True, slots=True)
class UserEvent:
    kind: UserEventKind
    user: UserView

    @property
    def coalescable(self) -> bool:
        return self.kind not in LIFECYCLE_KINDS


@dataclass(frozen=True, slots=True)
class PolicyEvent:
    """A policy changed (name, schedule, active): its users' public state changed with it."""

    policy: PolicyView


Event = UserEvent | PolicyEvent


def channel_for(tenant_id: int) -> str:
    # A plain identifier: valid as a Redis channel and as a PostgreSQL LISTEN channel.
    return f"syncstatus_tenant_{tenant_id}"


def encode(event: Event) -> str:
    if isinstance(event, UserEvent):
        body: dict[str, Any] = {"t": "user", "kind": event.kind, "user": event.user.to_dict()}
    else:
        body = {"t": "policy", "policy": _policy_dict(event.policy)}
    return json.dumps(body, separators=(",", ":"))


def decode(message: str) -> Event:
    body = json.loads(message)
    if body["t"] == "user":
        return UserEvent(kind=body["kind"], user=UserView.from_dict(body["user"]))
    return PolicyEvent(policy=PolicyView.from_dict(body["policy"]))


def _policy_dict(policy: PolicyView) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in policy.__slots__}


def tenant_of(event: Event) -> int:
    return event.user.tenant_id if isinstance(event, UserEvent) else event.policy.tenant_id


class BroadcastLike(Protocol):
    async def publish(self, channel: str, message: Any) -> None: ...


class Publisher:
    """Publishes committed changes. A broker failure is logged, never undoes the commit:
    subscribers that miss an event recover by refetching (versions tell them)."""

    def __init__(self, broadcast: BroadcastLike) -> None:
        self._broadcast = broadcast

    async def publish(self, events: list[Event]) -> None:
        for event in events:
            try:
                await self._broadcast.publish(channel_for(tenant_of(event)), encode(event))
            except Exception:
                log.exception("could not publish %s event", type(event).__name__)
