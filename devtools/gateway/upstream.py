"""What every part of the gateway shares: its timeouts and the function processes it routes to."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from devtools.gateway.stack import FunctionSpec
from devtools.processes import FunctionProcess


@dataclass(frozen=True)
class Timeouts:
    """Seconds; the OpenFaaS Helm chart's defaults (gateway.upstreamTimeout 60s < read/writeTimeout 65s),
    so the function's own 504 (REQUEST_TIMEOUT_S 20 s) and the watchdog's (exec_timeout 30 s) answer
    first, as in the cluster."""

    upstream_s: float = 60.0  # connect + send + the function's answer
    read_s: float = 65.0  # reading a buffered request body from the caller
    connect_s: float = 5.0  # opening a connection to a function process
    logs_follow_s: float = 30.0  # `faas-cli logs --follow` streams until this (faas-cli docs: "up to 30s")
    ready_probe_s: float = 2.0  # the readiness probe behind describe / ready / list


@dataclass
class Upstream:
    """One function process the gateway routes to."""

    spec: FunctionSpec
    url: str  # http://127.0.0.1:PORT
    process: FunctionProcess | None = None  # None when fronting a process someone else started
    invocations: int = 0
    created_at: float = field(default_factory=time.time)  # epoch seconds

    @property
    def instance(self) -> str:
        """The instance name faas-cli shows: ``<function>-<port>``."""
        return f"{self.spec.name}-{urlsplit(self.url).port}"


def lookup(upstreams: dict[str, Upstream], name: str, namespace: str | None) -> Upstream | None:
    """The upstream of function ``name`` (in ``namespace`` when given), or None."""
    upstream = upstreams.get(name)
    if upstream is None or (namespace and namespace != upstream.spec.namespace):
        return None
    return upstream
