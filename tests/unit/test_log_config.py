"""What the logging setup keeps out of the logs."""

from __future__ import annotations

import logging

from app.ops.logs import configure


def test_httpx_does_not_log_each_webhook_attempt_with_its_url() -> None:
    """httpx logs every request at INFO with the full URL, and a receiver's query string may
    hold its secret (`…/hook?token=…`): a webhook attempt must not put it in our logs."""
    configure("debug", "text")
    for name in ("httpx", "httpcore"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    assert logging.getLogger("syncstatus").isEnabledFor(logging.DEBUG)
