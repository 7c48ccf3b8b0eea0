"""State-change events, published after commit on one broadcast channel per tenant.

An event carries what a subscriber needs (the user's new state with its policy and runs), so
fanning it out to many subscribers never queries the database per subscriber.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from app.domain.views import PolicyView, UserView
from app.events.broker import BroadcastUnavailable

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


@dataclass(frozen=True, slots=True)
class UserRef:
    """A user event too big for the broker's messages (PostgreSQL NOTIFY stops below 8000
    bytes): the receiving process loads the user's state once, for all its subscribers."""

    kind: UserEventKind
    tenant_id: int
    user_id: int
    version: int


@dataclass(frozen=True, slots=True)
class PolicyRef:
    """A policy event too big for the broker's messages (a long description)."""

    tenant_id: int
    policy_id: int


@dataclass(frozen=True, slots=True)
class UsersRequested:
    """requestSyncs made users due, a write transaction at a time: one event for all of them
    (a million events would flood the broker). They are the users with ids in
    [first_id, last_id] whose sync was requested at a time in [since, until]; each receiving
    process loads those its subscribers watch."""

    tenant_id: int
    first_id: int
    last_id: int
    since: int
    until: int
    count: int


@dataclass(frozen=True, slots=True)
class TokenRevoked:
    """An API token was revoked: every process drops it from its cache and closes its sockets.
    Sent on one channel all processes listen on (REVOCATIONS_CHANNEL), not the tenant's."""

    tenant_id: int
    token_id: int


Event = UserEvent | PolicyEvent | UsersRequested | TokenRevoked
Message = UserEvent | PolicyEvent | UserRef | PolicyRef | UsersRequested


def channel_for(tenant_id: int) -> str:
    # A plain identifier: valid as a Redis channel and as a PostgreSQL LISTEN channel.
    return f"syncstatus_tenant_{tenant_id}"


REVOCATIONS_CHANNEL = "syncstatus_token_revocations"


def channel_of(event: Event) -> str:
    if isinstance(event, TokenRevoked):
        return REVOCATIONS_CHANNEL
    return channel_for(tenant_of(event))


def encode(event: Event, max_bytes: int | None = None, seq: int | None = None) -> str:
    """The event as JSON; one that would exceed ``max_bytes`` becomes a reference instead.
    ``seq`` is the event's place in its tenant's event log (app.events.event_log), if logged."""
    if isinstance(event, TokenRevoked):  # small: always whole
        return _dumps({"t": "token_revoked", "tenant": event.tenant_id, "id": event.token_id})
    if isinstance(event, UsersRequested):  # small: always whole
        requested: dict[str, Any] = {
            "t": "requested",
            "tenant": event.tenant_id,
            "ids": [event.first_id, event.last_id],
            "at": [event.since, event.until],
            "count": event.count,
        }
        if seq is not None:
            requested["seq"] = seq
        return _dumps(requested)
    if isinstance(event, UserEvent):
        body: dict[str, Any] = {"t": "user", "kind": event.kind, "user": event.user.to_dict()}
    else:
        body = {"t": "policy", "policy": _policy_dict(event.policy)}
    if seq is not None:
        body["seq"] = seq
    message = _dumps(body)
    # ASCII only (json escapes the rest), so the length is the size in bytes.
    if max_bytes is not None and len(message) > max_bytes:
        reference = _reference(event)
        if seq is not None:
            reference["seq"] = seq
        return _dumps(reference)
    return message


def with_seq(message: str, seq: int) -> str:
    """An encoded event (a JSON object without "seq") with its sequence added."""
    return f'{message[:-1]},"seq":{seq}}}'


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def _reference(event: UserEvent | PolicyEvent) -> dict[str, Any]:
    if isinstance(event, UserEvent):
        user = event.user
        return {
            "t": "user_ref",
            "kind": event.kind,
            "tenant": user.tenant_id,
            "id": user.id,
            "version": user.version,
        }
    return {"t": "policy_ref", "tenant": event.policy.tenant_id, "id": event.policy.id}


def decode(message: str) -> Message:
    return decode_sequenced(message)[1]


def decode_sequenced(message: str) -> tuple[int | None, Message]:
    """The message's event and its sequence in the tenant's event log (None: not logged)."""
    body = json.loads(message)
    seq = body.get("seq")
    return (int(seq) if seq is not None else None), _decode_body(body)


def _decode_body(body: dict[str, Any]) -> Message:
    kind = body["t"]
    if kind == "user":
        return UserEvent(kind=body["kind"], user=UserView.from_dict(body["user"]))
    if kind == "policy":
        return PolicyEvent(policy=PolicyView.from_dict(body["policy"]))
    if kind == "user_ref":
        return UserRef(body["kind"], body["tenant"], body["id"], body["version"])
    if kind == "policy_ref":
        return PolicyRef(body["tenant"], body["id"])
    if kind == "requested":
        (first, last), (since, until) = body["ids"], body["at"]
        return UsersRequested(body["tenant"], first, last, since, until, body["count"])
    raise ValueError(f"unknown event type {kind!r}")


def decode_revocation(message: str) -> TokenRevoked:
    body = json.loads(message)
    if body.get("t") != "token_revoked":
        raise ValueError(f"not a token revocation: {body.get('t')!r}")
    return TokenRevoked(tenant_id=int(body["tenant"]), token_id=int(body["id"]))


def _policy_dict(policy: PolicyView) -> dict[str, Any]:
    return {name: getattr(policy, name) for name in policy.__slots__}


def tenant_of(event: Message | TokenRevoked) -> int:
    if isinstance(event, UserRef | PolicyRef | UsersRequested | TokenRevoked):
        return event.tenant_id
    return event.user.tenant_id if isinstance(event, UserEvent) else event.policy.tenant_id


class BroadcastLike(Protocol):
    async def publish(self, channel: str, message: Any) -> None: ...


class Publisher:
    """Publishes committed changes. A broker failure is logged, never undoes the commit.

    With ``event_log`` (any broker but memory://) the unit of work writes each tenant event to
    the event log in its transaction and passes its sequence here: a message the broker loses
    is then read back from the log by every process that missed it (subscriptions.hub), and
    while the broker's connection is known to be down the publish is not even tried (it would
    only hold the mutation up for the publish timeout). Without it (the embedded default: one
    process, an in-memory broker that cannot lose a message) subscribers that miss an event
    recover by refetching (versions tell them).

    ``max_message_bytes`` is the broker's message limit (PostgreSQL NOTIFY: below 8000 bytes);
    an event that does not fit is published as a reference that subscribers' processes load.
    """

    def __init__(
        self,
        broadcast: BroadcastLike,
        max_message_bytes: int | None = None,
        telemetry: Any = None,  # app.ops.telemetry.Telemetry
        *,
        event_log: bool = False,
    ) -> None:
        self._broadcast = broadcast
        self._max_bytes = max_message_bytes
        self._telemetry = telemetry
        self.event_log = event_log

    def _broker_down(self) -> bool:
        backend = getattr(self._broadcast, "backend", None)
        return not getattr(backend, "is_connected", True)

    async def publish(
        self, events: list[Event], logged: Sequence[tuple[int, str] | None] | None = None
    ) -> None:
        """``logged``: each event's sequence and encoding in the event log, or None."""
        for index, event in enumerate(events):
            entry = logged[index] if logged is not None else None
            try:
                if entry is not None and self._broker_down():
                    raise BroadcastUnavailable("broker connection down; the event log has it")
                if entry is None:
                    message = encode(event, self._max_bytes)
                else:
                    message = with_seq(entry[1], entry[0])  # as logged: encoded once
                    if self._max_bytes is not None and len(message) > self._max_bytes:
                        message = encode(event, self._max_bytes, entry[0])
                await self._broadcast.publish(channel_of(event), message)
            except BroadcastUnavailable as error:
                if entry is None:  # else the log has it: a gap or the poll brings it
                    log.warning("could not publish %s event: %s", type(event).__name__, error)
                self._count(failed=True)
            except Exception:
                log.exception("could not publish %s event", type(event).__name__)
                self._count(failed=True)
            else:
                self._count(failed=False)

    def _count(self, *, failed: bool) -> None:
        if self._telemetry is not None:
            telemetry = self._telemetry
            (telemetry.publish_failures if failed else telemetry.events_published).inc()
