"""Expected errors of the service, each with the contract's extensions.code."""

from __future__ import annotations


class ServiceError(Exception):
    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadUserInput(ServiceError):
    code = "BAD_USER_INPUT"


class Unauthenticated(ServiceError):
    code = "UNAUTHENTICATED"


class Forbidden(ServiceError):
    code = "FORBIDDEN"


class NotFound(ServiceError):
    code = "NOT_FOUND"


class Conflict(ServiceError):
    code = "CONFLICT"


class ServiceUnavailable(ServiceError):
    """The database or the broker cannot be reached: retry later (HTTP 503, Retry-After)."""

    code = "SERVICE_UNAVAILABLE"
