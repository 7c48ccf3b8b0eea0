"""The lighter stand-ins app/web/ws_protocol.py gives uvicorn for its per-socket asyncio.Queue
and asyncio.Event behave as those do for the calls uvicorn makes."""

from __future__ import annotations

import asyncio

from app.web.ws_protocol import _Inbox, _Writable


async def test_the_inbox_hands_messages_over_in_order_and_wakes_a_waiting_reader() -> None:
    inbox = _Inbox()
    assert inbox.empty()
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert not inbox.empty() and await inbox.get() == 1 and await inbox.get() == 2
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()
    inbox.put_nowait(3)
    assert await asyncio.wait_for(reader, 1) == 3 and inbox.empty()


async def test_a_cancelled_read_loses_nothing() -> None:
    inbox = _Inbox()
    reader = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    inbox.put_nowait("kept")
    assert await asyncio.wait_for(inbox.get(), 1) == "kept"


async def test_writable_blocks_sends_while_cleared_and_releases_them_all_when_set() -> None:
    writable = _Writable()
    assert writable.is_set()
    await asyncio.wait_for(writable.wait(), 1)  # set: no wait
    writable.clear()
    sends = [asyncio.create_task(writable.wait()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert not any(send.done() for send in sends) and not writable.is_set()
    sends[0].cancel()  # a send given up (its socket closed) does not hold the others
    writable.set()
    await asyncio.wait_for(asyncio.gather(*sends[1:]), 1)
    assert writable.is_set()
