"""One way to build a function: a service created once per process, its readiness checks and its
shutdown registered the same way for every function.

A function is a folder ``functions/<name>/`` with a ``handler.py`` (README, "Add a function")::

    from functions.runtime import app
    from functions.runtime.http import handles_errors

    class Hello(app.Service):
        def process(self, request: app.Request) -> dict:
            return {"hello": request.event.query.get("name") or "world"}

    service = app.create(Hello)

    @handles_errors
    def handle(event, context):
        request = service.parse(event)
        return service.respond(request, service.process(request))

Layers: the HTTP edge (``handles_errors``, ``parse``, ``respond``: functions/runtime/http.py) -> the
service (``process``) -> storage (functions/runtime/db.py and the named queries in sql/queries/).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from functions.runtime import lifecycle, logs, readiness, request_context
from functions.runtime.contract import Event
from functions.runtime.http import json_response
from functions.runtime.settings import Settings, current


@dataclass(frozen=True)
class Request:
    """What ``Service.parse`` gives by default: the request id and the python3-http event."""

    request_id: str
    event: Event


class Service:
    """Base of every function's service. Subclasses override :meth:`process` and, as needed,
    :meth:`parse`, :meth:`respond`, :meth:`ready_checks` and :meth:`close`."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def parse(self, event: Event) -> Any:
        """The event as a request; raises the 4xx errors of functions/runtime/errors.py."""
        return Request(request_context.for_headers(event.headers).request_id, event)

    def process(self, request: Any) -> Any:
        """The work of the function; returns the response body (JSON-ready)."""
        raise NotImplementedError

    def respond(self, request: Any, result: Any) -> dict:
        """200 + JSON body + ``X-Request-Id``."""
        return json_response(200, result, request_id=request.request_id)

    def ready_checks(self) -> Mapping[str, Callable[[], bool]]:
        """Named readiness checks (quick, must not raise); the runtime's ``READY_PATH`` runs them."""
        return {}

    def close(self) -> None:
        """Release what the service holds (model worker, pools); called once at shutdown."""


S = TypeVar("S", bound=Service)


def create(factory: Callable[[Settings], S], settings: Settings | None = None) -> S:
    """Create the process's service with ``factory(settings)`` (default: the process settings), register
    its readiness checks and its ``close`` as a shutdown hook, and return it. Call it once, at import of
    the handler module."""
    settings = current() if settings is None else settings
    # Under the official template nothing configures logging: the contract JSON lines come from here.
    logs.configure_if_unset(settings.function_name, settings.log_level)
    service = factory(settings)
    for name, check in service.ready_checks().items():
        readiness.register(name, check)
    lifecycle.on_shutdown(service.close)
    return service
