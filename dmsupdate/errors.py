"""Domain errors: what services raise when they refuse. Framework-free; the API edge maps each class to HTTP once.

A service says *what* went wrong (`Conflict("key_taken", "...")`), never which
HTTP status that is: dmsupdate.api.exception_handler turns the class into the
status and the contract's JSON body `{"error": code, "detail": text}`, and the
dashboard's views show the detail on a page.
"""

from __future__ import annotations


class DomainError(Exception):
    """A refusal with a stable machine-readable code and a sentence for people."""

    def __init__(self, code: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


class Invalid(DomainError):
    """The request itself is wrong (a parameter, a body, a key); sending it again will not help."""


class Forbidden(DomainError):
    """The caller may not do this (a token's scope, a role)."""


class NotFound(DomainError):
    """Something the request names does not exist."""


class Conflict(DomainError):
    """The request clashes with the current state (a key taken, a reused Idempotency-Key, a disabled server)."""


class TooLarge(DomainError):
    """A body, or what it expands to, is over a configured limit."""


class StoreFailed(DomainError):
    """The state root answered, but refused or mangled the object."""


class Unavailable(DomainError):
    """A dependency (the state root, the database) is down for now; retrying later may work."""
