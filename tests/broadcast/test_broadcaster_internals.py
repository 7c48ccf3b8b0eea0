"""broadcaster's internals that app/events/broker/_broadcast.py relies on (no public API offers
them).

If an upgrade of broadcaster changes any of these, this fails first and names what moved; then
adapt ReliableBroadcast, the one place that uses them."""

from __future__ import annotations

import asyncio

import broadcaster
from broadcaster import Broadcast, BroadcastBackend, Event

from app.events.broker import ReliableBroadcast, create_broadcast


def test_the_version_is_the_one_the_adapter_was_written_for() -> None:
    assert broadcaster.__version__ == "0.3.1", (
        "broadcaster was upgraded: check app/events/broker/_broadcast.py against its Broadcast"
    )


def test_broadcast_keeps_its_backend_and_subscribers_where_the_adapter_reads_them() -> None:
    broadcast = create_broadcast("memory://")
    assert isinstance(broadcast, ReliableBroadcast)
    backend = broadcast.backend
    plain = Broadcast(backend=backend)
    assert plain._backend is backend
    assert plain._subscribers == {}
    assert isinstance(backend, BroadcastBackend)


async def test_the_listener_fans_out_through_subscribers() -> None:
    """broadcaster's own listener delivers to the queues ReliableBroadcast registers."""
    broadcast = ReliableBroadcast("memory://")
    async with broadcast:
        async with broadcast.subscribe("internals") as subscriber:
            assert len(broadcast._subscribers["internals"]) == 1
            await broadcast.publish("internals", "hello")
            async with asyncio.timeout(5):
                event = await subscriber.get()
        assert event == Event("internals", "hello")
        assert "internals" not in broadcast._subscribers
