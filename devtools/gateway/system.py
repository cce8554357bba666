"""The gateway's system API, what faas-cli touches besides invocations:

``GET /system/functions``, ``GET /system/function/NAME`` (faas-cli list / describe / ready: the
gateway swagger's FunctionStatus), ``GET /system/logs`` (faas-cli logs: NDJSON ``{name, namespace,
instance, timestamp, text}`` from the JSON log files the function processes write; ``tail``, ``since``,
``follow`` bounded by ``Timeouts.logs_follow_s``, ``instance``), ``GET /system/info`` (faas-cli version).
Other ``/system/`` routes answer 501 ``not_implemented``; writes answer 405 / 501 (stack.yml is the
only way to deploy locally).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
from aiohttp import web

from devtools.gateway.errors import json_error
from devtools.gateway.upstream import Timeouts, Upstream, lookup

SYSTEM_FUNCTION = re.compile(r"^/system/function/([^/]+)$")
ENV_PROCESS = "python -m functions.runtime.server"
GATEWAY_VERSION = {"release": "0.27.12-local", "sha": "local", "commit_message": "nlp-enrichment local gateway"}
TRUE_WORDS = ("1", "t", "T", "true", "TRUE", "True")  # what Go's strconv.ParseBool takes as true


class SystemApi:
    """Answers ``/system/...`` for the gateway's upstreams, probing readiness over ``session``."""

    def __init__(self, session: aiohttp.ClientSession, upstreams: dict[str, Upstream], timeouts: Timeouts):
        self._session = session
        self.upstreams = upstreams
        self.timeouts = timeouts

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """Answer a request whose path starts with ``/system/``."""
        path, call_id = request.path, request.headers.get("X-Call-Id")
        match = SYSTEM_FUNCTION.match(path)
        served = path in ("/system/functions", "/system/info", "/system/logs") or match
        if not served:
            return json_error(501, "not_implemented",
                              f"{path} is not served by the local gateway (see docs/operations.md, "
                              "The local gateway)", call_id)
        if request.method not in ("GET", "HEAD"):
            return json_error(
                501 if path == "/system/functions" else 405,
                "not_implemented" if path == "/system/functions" else "method_not_allowed",
                f"{request.method} {path}: the local gateway runs the functions of stack.yml; edit stack.yml and "
                "restart `make run` to deploy, update or delete a function", call_id, headers={"Allow": "GET"})
        namespace = request.query.get("namespace")
        if path == "/system/functions":
            ups = [u for u in self.upstreams.values() if not namespace or u.spec.namespace == namespace]
            return web.json_response(list(await asyncio.gather(*(self.status(u) for u in ups))))
        if path == "/system/info":
            return web.json_response({
                "provider": {"provider": "nlp-enrichment-local", "orchestration": "local-processes",
                             "version": GATEWAY_VERSION},
                "version": GATEWAY_VERSION, "arch": os.uname().machine})
        if path == "/system/logs":
            return await self.logs(request)
        name = match.group(1)
        upstream = lookup(self.upstreams, name, namespace)
        if upstream is None:
            return json_error(404, "not_found", f"no function {name}" +
                              (f" in namespace {namespace}" if namespace else ""), call_id)
        return web.json_response(await self.status(upstream))

    async def status(self, upstream: Upstream) -> dict:
        """A FunctionStatus of the gateway's swagger (what faas-cli list / describe / ready decode)."""
        spec = upstream.spec
        status = {
            "name": spec.name, "image": spec.image, "namespace": spec.namespace, "envProcess": ENV_PROCESS,
            "envVars": dict(spec.environment), "constraints": list(spec.constraints),
            "secrets": list(spec.secrets), "labels": dict(spec.labels), "annotations": dict(spec.annotations),
            "readOnlyRootFilesystem": spec.read_only_root_filesystem,
            "invocationCount": upstream.invocations, "replicas": 1,
            "availableReplicas": 1 if await self._ready(upstream) else 0,
            "createdAt": datetime.fromtimestamp(upstream.created_at, tz=UTC).isoformat().replace("+00:00", "Z"),
        }
        if spec.limits:
            status["limits"] = spec.limits
        if spec.requests:
            status["requests"] = spec.requests
        memory = rss_bytes(upstream.process.process.pid) if upstream.process is not None else None
        if memory is not None:
            status["usage"] = {"totalMemoryBytes": memory}
        return status

    async def _ready(self, upstream: Upstream) -> bool:
        if upstream.process is not None and upstream.process.process.poll() is not None:
            return False
        ready_path = upstream.spec.environment.get("READY_PATH", "/_/ready")
        try:
            async with self._session.get(upstream.url + ready_path,
                                         timeout=aiohttp.ClientTimeout(total=self.timeouts.ready_probe_s)) as resp:
                await resp.read()
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def logs(self, request: web.BaseRequest) -> web.StreamResponse:
        """faas-provider's log handler contract: NDJSON of {name, namespace, instance, timestamp, text}."""
        query = request.query
        name = query.get("name", "")
        call_id = request.headers.get("X-Call-Id")
        try:
            tail = int(query.getall("tail")[-1]) if "tail" in query else 0
            since = parse_time(query.getall("since")[-1]) if query.get("since") else None
        except ValueError as exc:
            return json_error(422, "invalid_request", f"could not parse the log request: {exc}", call_id)
        follow = query.getall("follow")[-1] in TRUE_WORDS if "follow" in query else False
        instance = query.get("instance") or None
        upstream = lookup(self.upstreams, name, query.get("namespace"))
        if not name:
            return json_error(422, "invalid_request", "the query parameter name is required", call_id)
        if upstream is None or upstream.process is None:
            return json_error(404, "not_found", f"no logs for function {name}", call_id)
        if instance and instance != upstream.instance:
            return json_error(404, "not_found", f"no instance {instance} of {name}", call_id)
        source = LogSource(upstream)
        # file reads off the event loop: a long log must not stall the proxied requests
        entries = [e for e in await asyncio.to_thread(source.read_new) if since is None or e[0] >= since]
        if tail > 0:
            entries = entries[-tail:]
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/x-ndjson"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"".join(source.encode(e) for e in entries))
        if follow:
            deadline = time.monotonic() + self.timeouts.logs_follow_s
            async for batch in source.follow(deadline):
                await resp.write(b"".join(source.encode(e) for e in batch if since is None or e[0] >= since))
        await resp.write_eof()
        return resp


class LogSource:
    """The JSON log file of one function process, read as (timestamp, text) entries."""

    def __init__(self, upstream: Upstream):
        self.upstream = upstream
        self.path = upstream.process.log_path
        self.offset = 0
        self.last_time = datetime.fromtimestamp(upstream.created_at, tz=UTC)

    def read_new(self) -> list[tuple[datetime, str]]:
        """Complete lines written since the last call (a line still being written waits for its newline)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        for raw in data[: end + 1].splitlines():
            text = raw.decode("utf-8", errors="replace")
            if not text.strip():
                continue
            self.last_time = _line_time(text) or self.last_time  # a non-JSON line inherits the last time
            out.append((self.last_time, text))
        return out

    async def follow(self, deadline: float) -> AsyncIterator[list[tuple[datetime, str]]]:
        """Batches of new entries until ``deadline`` (monotonic seconds), polling every 0.2 s."""
        while time.monotonic() < deadline:
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            batch = await asyncio.to_thread(self.read_new)
            if batch:
                yield batch

    def encode(self, entry: tuple[datetime, str]) -> bytes:
        """One NDJSON line of the log contract."""
        moment, text = entry
        spec = self.upstream.spec
        return json.dumps({"name": spec.name, "namespace": spec.namespace, "instance": self.upstream.instance,
                           "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                           "text": text}, ensure_ascii=False).encode() + b"\n"


def _line_time(text: str) -> datetime | None:
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text).get("@timestamp")
        return parse_time(value) if isinstance(value, str) else None
    except (ValueError, AttributeError):
        return None


def parse_time(value: str) -> datetime:
    """RFC 3339 (what faas-cli sends for --since / --since-time). Raises ValueError."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone (RFC 3339 expected)")
    return moment


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` in bytes (from /proc), or None."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
