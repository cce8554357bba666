"""What the queue-worker does once an invocation is over: its outcome (kept for lookups), its dead
letter, its callback.

Shapes::

    Outcome(call_id, function, state="failed", status=422, attempts=1, reason="rejected", ...)
    outcome.as_json() -> bytes                      # what GET /async-call/<id> answers
    CallbackJob.encode() / CallbackJob.decode(headers, data)
    letter_of(invocation, outcome) -> DeadLetter    # the original request + the final outcome

Callbacks (``X-Callback-Url``) are queued on their own stream and sent by their own tasks, so a slow or
unreachable callback URL never holds a delivery: one POST per invocation with the function's answer and
``X-Call-Id``, ``X-Function-Status``, ``X-Function-Name``, ``X-Duration-Seconds``; retried only when no
connection could be made (then at most :data:`CALLBACK_ATTEMPTS` times).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from devtools.jetstream import Invocation
from devtools.jetstream.streams import MSG_ID_HEADER, callback_subject
from functions.runtime.stores.dead_letters import DeadLetter

CALLBACK_ATTEMPTS = 3
CALLBACK_CONNECT_TIMEOUT_S = 2.0
CALLBACK_TIMEOUT_S = 10.0
CALLBACK_HEADER = "X-Callback"
# A callback carries the function's answer up to this size (an answer is small: entities, not text).
MAX_CALLBACK_BODY = 1024 * 1024
# Request headers a dead letter keeps (what a redrive sends again); the rest is about the first hop.
KEPT_HEADERS = ("content-type", "x-callback-url", "x-call-id", "content-encoding", "x-request-id")


@dataclass(frozen=True)
class Outcome:
    """How an invocation ended (``state``: "succeeded" or "failed"; times in epoch seconds)."""

    call_id: str
    function: str
    state: str
    status: int
    attempts: int
    reason: str | None = None  # failed: "rejected" | "retries_exhausted"
    error_code: str | None = None
    error_message: str | None = None
    accepted_at: float = 0.0
    finished_at: float = 0.0
    duration_s: float = 0.0  # the last attempt
    redrive: int = 0

    def as_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Outcome:
        return cls(**json.loads(data))


def error_of(status: int, headers: dict[str, str], body: bytes) -> tuple[str | None, str | None]:
    """The function's JSON error code and message, when its non-2xx answer was one."""
    if status < 300 or "json" not in headers.get("Content-Type", headers.get("content-type", "")):
        return None, None
    try:
        answer = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(answer, dict):
        return None, None
    code, message = answer.get("error"), answer.get("message")
    return (str(code)[:100] if code else None), (str(message)[:500] if message else None)


def letter_of(invocation: Invocation, outcome: Outcome) -> DeadLetter:
    """The dead letter of a failed ``outcome``: the original request and how it ended."""
    headers = {k: v for k, v in invocation.headers.items() if k.lower() in KEPT_HEADERS}
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
    return DeadLetter(function=invocation.function, call_id=invocation.call_id, reason=outcome.reason or "rejected",
                      status=outcome.status, body=invocation.body, error_code=outcome.error_code,
                      error_message=outcome.error_message, attempts=outcome.attempts, content_type=content_type,
                      headers=headers, path=invocation.path, query=invocation.query)


@dataclass(frozen=True)
class CallbackJob:
    """One X-Callback-Url POST to make: the final outcome and the function's answer."""

    url: str
    call_id: str
    function: str
    status: int
    duration_s: float
    content_type: str | None
    body: bytes
    dedupe_id: str  # one callback per invocation (and per redrive)

    def encode(self) -> tuple[str, dict[str, str], bytes]:
        meta = {k: v for k, v in asdict(self).items() if k not in ("body", "dedupe_id")}
        return (callback_subject(self.call_id),
                {MSG_ID_HEADER: self.dedupe_id, CALLBACK_HEADER: json.dumps(meta, separators=(",", ":"))},
                self.body[:MAX_CALLBACK_BODY])

    @classmethod
    def decode(cls, headers: dict[str, str] | None, data: bytes) -> CallbackJob:
        meta = json.loads((headers or {})[CALLBACK_HEADER])
        return cls(body=bytes(data or b""), dedupe_id="", **meta)

    def request_headers(self) -> dict[str, str]:
        headers = {"X-Call-Id": self.call_id, "X-Function-Status": str(self.status),
                   "X-Function-Name": self.function, "X-Duration-Seconds": f"{self.duration_s:f}"}
        if self.content_type:
            headers["Content-Type"] = self.content_type
        return headers


def callback_job(invocation: Invocation, outcome: Outcome, answer_headers: dict[str, str],
                 answer: bytes) -> CallbackJob | None:
    """The callback of an invocation that asked for one (X-Callback-Url), else None."""
    url = invocation.callback_url
    if not url:
        return None
    content_type = answer_headers.get("Content-Type") or answer_headers.get("content-type")
    return CallbackJob(url=url, call_id=invocation.call_id, function=invocation.function, status=outcome.status,
                       duration_s=outcome.duration_s, content_type=content_type, body=answer,
                       dedupe_id=f"{invocation.msg_id}:callback")


def now() -> float:
    return time.time()
