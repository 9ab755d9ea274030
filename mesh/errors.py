"""The runtime's exception tree. Everything raised to a client is a ``MeshError``."""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Invalid",
    "MalformedBody",
    "MeshError",
    "NotFound",
    "RateLimited",
    "Replayed",
    "StoreUnavailable",
    "Unauthorized",
]


class MeshError(Exception):
    """An error with an HTTP status, a stable code, a message and optionally the field at fault."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def body(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        body.update(self.extra)
        return body


class BadRequest(MeshError):
    status = 400
    code = "invalid_request"


class MalformedBody(MeshError):
    """The body is not a JSON object at all, so no field can be named but the body."""

    status = 400
    code = "malformed_json"

    def __init__(self, message: str) -> None:
        super().__init__(message, field="body")


class Unauthorized(MeshError):
    status = 401
    code = "unauthorized"


class Forbidden(MeshError):
    status = 403
    code = "forbidden"


class NotFound(MeshError):
    status = 404
    code = "not_found"


class Conflict(MeshError):
    status = 409
    code = "conflict"


class Replayed(Conflict):
    """A signed request seen before: its nonce was already used, through any replica."""

    code = "replayed"


class RateLimited(MeshError):
    """Over a rate limit: not a denial by policy, and it costs the agent no trust."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailable(MeshError):
    status = 503
    code = "storage_unavailable"


class Invalid(MeshError):
    """A well-formed request with a field that fails a semantic check (bad base64, ...)."""

    status = 422
    code = "invalid_field"
