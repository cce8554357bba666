"""The few exceptions a handler may raise, each mapped to an HTTP status and a stable error code.

Anything else raised by a handler becomes ``500 internal_error`` with a JSON body: never an HTML page.
"""

from __future__ import annotations


class FunctionError(Exception):
    """Base class: ``status`` and ``code`` go to the client, ``message`` is human text."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None,
                 status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:  # the HTTP layer's own refusals (414, 431, 505, ...) have no class of their own
            self.status = status
        self.headers = dict(headers or {})


class BadRequest(FunctionError):
    """The caller's request cannot be parsed (invalid JSON/UTF-8, wrong shape)."""

    status = 400
    code = "invalid_request"


class Unauthorized(FunctionError):
    """No valid credential: the message never says which part failed."""

    status = 401
    code = "unauthorized"

    def __init__(self, message: str):
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="nlp-enrichment"'})


class MethodNotAllowed(FunctionError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str):
        super().__init__(message, headers={"Allow": allow})


class Conflict(FunctionError):
    """The request id was already used for different content."""

    status = 409
    code = "request_id_conflict"


class PayloadTooLarge(FunctionError):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(FunctionError):
    status = 415
    code = "unsupported_media_type"


class InvalidField(FunctionError):
    """A field is missing or has the wrong type/value; the message names the field."""

    status = 422
    code = "invalid_field"

    def __init__(self, field: str, message: str, *, code: str = "invalid_field"):
        super().__init__(message, code=code)
        self.field = field


class Unavailable(FunctionError):
    """A dependency (database, model) is not available right now: retry later."""

    status = 503
    code = "service_unavailable"

    def __init__(self, message: str, *, code: str = "service_unavailable", retry_after: int = 2):
        super().__init__(message, code=code, headers={"Retry-After": str(int(retry_after))})
        self.retry_after = retry_after


class Overloaded(Unavailable):
    """More work queued than the configured capacity."""

    status = 429

    def __init__(self, message: str, *, retry_after: int = 1):
        super().__init__(message, code="overloaded", retry_after=retry_after)


class Timeout(FunctionError):
    status = 504
    code = "timeout"
