"""A local stand-in for the OpenFaaS gateway: every function of stack.yml as its own process.

``python -m devtools.gateway --secrets-dir DIR`` reads stack.yml (and its ``environment_file``), starts
each function with ``python -m functions.runtime.server`` (what the image's of-watchdog runs) and serves
on 127.0.0.1:8080 the routes a faas-cli user touches (``--upstream NAME=URL`` fronts function processes
that are already running instead, as the benchmark does). Modules, one concern each:

- ``stack``: :func:`read_stack` (stack.yml as faas-cli reads it);
- ``proxy``: ``/function/NAME[.NAMESPACE][/path]`` (faas-cli always appends the namespace), proxied like
  the gateway does: prefix stripped, headers set, bodies streamed, pooled keep-alive connections;
- ``asyncq``: ``/async-function/NAME[.NAMESPACE][/path]``: published to NATS JetStream, 202 + ``X-Call-Id``
  once stored (the queue-worker, ``devtools.queueworker``, delivers it); ``GET /async-call/<call id>``;
- ``system``: ``GET /system/functions``, ``/system/function/NAME``, ``/system/logs``, ``/system/info``;
- ``errors``: the JSON error answers; ``upstream``: :class:`Timeouts` and the routed processes;
- ``server``: :class:`Gateway` (life cycle, ``GET /healthz``, dispatch); ``cli``: the command line.

Every failure the gateway produces itself is JSON ``{"error", "message", "request_id"}``: bad framing
(400 ``invalid_request``), a too-long URL (414 ``uri_too_long``) or header (431 ``headers_too_large``),
an unknown function (404 ``not_found``), a function that does not answer (502 ``function_unreachable``),
an upstream timeout (504 ``upstream_timeout``), a route this gateway does not serve (501
``not_implemented``).
"""

from devtools.gateway.errors import json_error
from devtools.gateway.server import Gateway
from devtools.gateway.stack import FunctionSpec, read_stack
from devtools.gateway.upstream import Timeouts

__all__ = ["FunctionSpec", "Gateway", "Timeouts", "json_error", "read_stack"]
