"""Domain errors. Each carries a machine-readable code; the HTTP status for each class is
decided in one place only (chalicelib/api/http.py), so domain code knows nothing of HTTP."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "ERROR"

    def __init__(
        self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = details or {}


class InvalidInput(DomainError):
    """Malformed or ill-typed input (HTTP 400)."""

    code = "VALIDATION_ERROR"


class PayloadTooLarge(DomainError):
    code = "PAYLOAD_TOO_LARGE"


class Unauthenticated(DomainError):
    """No credentials, or credentials that do not verify (HTTP 401)."""

    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    """Valid credentials that may not do this (HTTP 403)."""

    code = "FORBIDDEN"


class NotFound(DomainError):
    code = "NOT_FOUND"


class Conflict(DomainError):
    """The request collides with existing state, e.g. an id already used (HTTP 409)."""

    code = "CONFLICT"


class MemberExists(Conflict):
    code = "MEMBER_EXISTS"

    def __init__(self, member_id: str | None, field: str) -> None:
        details = {"member_id": member_id, "field": field} if member_id else {"field": field}
        super().__init__(f"a member with this {field} already exists", details=details)
        self.member_id = member_id
        self.field = field

    def unnamed(self) -> MemberExists:
        """The same conflict without saying who the member is (for a member's own token)."""
        return MemberExists(None, self.field)


class BusinessRuleViolation(DomainError):
    """Well-formed input that the program's rules refuse (HTTP 422)."""

    code = "UNPROCESSABLE"


class RateLimited(DomainError):
    code = "RATE_LIMITED"


class Unavailable(DomainError):
    """A dependency is overloaded or contended past our retries (HTTP 503): safe to retry."""

    code = "TEMPORARILY_UNAVAILABLE"
