"""Telling an outage (the database or broker unreachable: retry later) from a bug."""

from __future__ import annotations

import logging

import asyncpg
from sqlalchemy import exc as sa_exc

from app.events.broker import BroadcastUnavailable
from app.ops.error_line import describe

RETRY_AFTER_SECONDS = 2
MESSAGE = "The service is temporarily unavailable; retry later."
_CONNECTION_ERRORS = (
    OSError,  # refused, reset, unreachable host
    TimeoutError,
    sa_exc.TimeoutError,  # no pooled connection in time
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,  # starting up or shutting down
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, terminated backend
    BroadcastUnavailable,
)


def is_outage(error: BaseException | None) -> bool:
    """Whether the error, or one it was raised from, is a lost or unreachable server."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, sa_exc.DBAPIError):
            if error.connection_invalidated or is_outage(error.orig):
                return True
        elif isinstance(error, _CONNECTION_ERRORS):
            return True
        error = error.__cause__ or error.__context__
    return False


class OutageLog:
    """How a background loop reports its failures: an outage once, as one line when it begins
    and one when it ends (a loop retrying every second wrote a 100-line traceback each time),
    and anything else with its traceback, as a bug."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self._what = what
        self._down = False

    def failed(self, error: BaseException) -> None:
        if not is_outage(error):
            self._log.error("%s failed", self._what, exc_info=error)
        elif not self._down:
            self._down = True
            self._log.warning(
                "%s failed: %s (an outage; retrying quietly)", self._what, describe(error)
            )

    def succeeded(self) -> None:
        if self._down:
            self._down = False
            self._log.warning("%s works again", self._what)
