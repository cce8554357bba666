"""The streams of the asynchronous path, shared by the gateway (publisher) and the queue-worker.

Shapes::

    REQUEST_STREAM   "faas-request"   work queue; subject faas-request.<function>.<call token>
    OUTCOME_STREAM   "faas-outcome"   last outcome per call; subject faas-outcome.<call token>
    CALLBACK_STREAM  "faas-callback"  work queue of X-Callback-Url deliveries; faas-callback.<call token>

    inv = Invocation("ner-processor", call_id, body, path="/", headers={...}, accepted_at=time.time())
    subject, headers, data = inv.encode()          # Nats-Msg-Id = call id (+ ":redrive:<n>")
    Invocation.decode(msg.headers, msg.data) == inv

A call token is a hash of the call id, so any call id (1-128 visible ASCII characters) is a safe subject
token. The request stream discards NEW messages once it holds ``max_msgs`` or ``max_bytes`` (the gateway
answers 429), and drops a publish whose ``Nats-Msg-Id`` it saw within ``duplicate_window_s`` (a publish
retried after a timeout is stored once).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict, dataclass, field

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

REQUEST_STREAM = "faas-request"  # OpenFaaS's default queue name
OUTCOME_STREAM = "faas-outcome"
CALLBACK_STREAM = "faas-callback"
INVOCATION_HEADER = "X-Invocation"
MSG_ID_HEADER = "Nats-Msg-Id"

# An asynchronous request body is at most this (NATS's default max_payload, which OpenFaaS keeps).
MAX_ASYNC_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class QueueLimits:
    """Bounds of the streams (bytes, messages, seconds). The request stream refuses new messages beyond
    ``max_msgs``/``max_bytes``; outcomes are kept ``outcome_max_age_s``."""

    max_bytes: int = 512 * 1024 * 1024
    max_msgs: int = 200_000
    max_msg_size: int = MAX_ASYNC_BODY_BYTES + 64 * 1024  # the body plus its headers
    duplicate_window_s: float = 120.0
    outcome_max_age_s: float = 7 * 86400.0
    outcome_max_bytes: int = 256 * 1024 * 1024
    callback_max_bytes: int = 128 * 1024 * 1024


def call_token(call_id: str) -> str:
    """A subject-safe token for ``call_id`` (32 hex characters of its SHA-256)."""
    return hashlib.sha256(call_id.encode("utf-8")).hexdigest()[:32]


def request_subject(function: str, call_id: str) -> str:
    return f"{REQUEST_STREAM}.{function}.{call_token(call_id)}"


def request_filter(function: str) -> str:
    """The subject filter of one function's consumer."""
    return f"{REQUEST_STREAM}.{function}.*"


def outcome_subject(call_id: str) -> str:
    return f"{OUTCOME_STREAM}.{call_token(call_id)}"


def callback_subject(call_id: str) -> str:
    return f"{CALLBACK_STREAM}.{call_token(call_id)}"


def stream_configs(limits: QueueLimits) -> list[StreamConfig]:
    """The three streams (file storage, one replica: one local server)."""
    return [
        StreamConfig(name=REQUEST_STREAM, subjects=[f"{REQUEST_STREAM}.>"], retention=RetentionPolicy.WORK_QUEUE,
                     storage=StorageType.FILE, discard=DiscardPolicy.NEW, max_bytes=limits.max_bytes,
                     max_msgs=limits.max_msgs, max_msg_size=limits.max_msg_size,
                     duplicate_window=limits.duplicate_window_s, num_replicas=1),
        StreamConfig(name=OUTCOME_STREAM, subjects=[f"{OUTCOME_STREAM}.>"], retention=RetentionPolicy.LIMITS,
                     storage=StorageType.FILE, discard=DiscardPolicy.OLD, max_msgs_per_subject=1,
                     max_age=limits.outcome_max_age_s, max_bytes=limits.outcome_max_bytes, num_replicas=1),
        StreamConfig(name=CALLBACK_STREAM, subjects=[f"{CALLBACK_STREAM}.>"], retention=RetentionPolicy.WORK_QUEUE,
                     storage=StorageType.FILE, discard=DiscardPolicy.OLD, max_bytes=limits.callback_max_bytes,
                     duplicate_window=limits.duplicate_window_s, num_replicas=1),
    ]


async def ensure_streams(js, limits: QueueLimits | None = None) -> None:
    """Create the streams, or update their limits when they exist (``js``: a nats-py JetStreamContext).
    Raises nats.js.errors.APIError when the server refuses a configuration."""
    for config in stream_configs(limits or QueueLimits()):
        try:
            await js.stream_info(config.name)
        except NotFoundError:
            await js.add_stream(config)
        else:
            with contextlib.suppress(Exception):  # a limit the server cannot change in place stays
                await js.update_stream(config)


@dataclass
class Invocation:
    """One asynchronous request as queued: the function, the call id (kept on every attempt), the
    original body and the headers that matter (forwarded to the function), the path and query after
    ``/async-function/NAME``, when the gateway accepted it (epoch seconds) and how often it was redriven."""

    function: str
    call_id: str
    body: bytes
    path: str = "/"
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    accepted_at: float = 0.0
    redrive: int = 0

    @property
    def msg_id(self) -> str:
        """The deduplication id: the call id, or ``<call id>:redrive:<n>`` for the n-th redrive."""
        return self.call_id if not self.redrive else f"{self.call_id}:redrive:{self.redrive}"

    @property
    def callback_url(self) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == "x-callback-url"), None) or None

    @property
    def target(self) -> str:
        """Path and query string to invoke."""
        return (self.path or "/") + (f"?{self.query}" if self.query else "")

    def encode(self) -> tuple[str, dict[str, str], bytes]:
        """(subject, NATS headers, data). The metadata travels as one JSON header (escaped: no CR/LF)."""
        meta = {k: v for k, v in asdict(self).items() if k != "body"}
        return (request_subject(self.function, self.call_id),
                {MSG_ID_HEADER: self.msg_id, INVOCATION_HEADER: json.dumps(meta, separators=(",", ":"))},
                self.body)

    @classmethod
    def decode(cls, headers: dict[str, str] | None, data: bytes) -> Invocation:
        """The invocation of a queued message. Raises ValueError when the metadata is missing or bad."""
        raw = (headers or {}).get(INVOCATION_HEADER)
        if not raw:
            raise ValueError("message has no invocation metadata")
        meta = json.loads(raw)
        if not isinstance(meta, dict) or not meta.get("function") or not meta.get("call_id"):
            raise ValueError("invocation metadata lacks function or call_id")
        return cls(function=meta["function"], call_id=meta["call_id"], body=bytes(data or b""),
                   path=meta.get("path") or "/", query=meta.get("query") or "",
                   headers=dict(meta.get("headers") or {}), accepted_at=float(meta.get("accepted_at") or 0.0),
                   redrive=int(meta.get("redrive") or 0))
