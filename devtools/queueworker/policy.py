"""What the queue-worker does with one function's invocations, read from its stack.yml entry the way
OpenFaaS Standard's JetStream queue-worker reads the deployed function (docs/contract.md, "Asynchronous
invocation and the queue-worker").

Shapes::

    policy = DeliveryPolicy.from_spec(spec)          # spec: devtools.gateway.FunctionSpec
    policy.attempts, policy.codes                    # 10, frozenset({408, 429, 500, 502, 503, 504})
    policy.retried(503, internal=False)              # True: a retried code
    policy.delay(attempt=1, retry_after="2")         # seconds before the next attempt
    policy.window()                                  # the shortest time between first and last attempt

Annotations (each falls back to the queue-worker default when absent or invalid, as OpenFaaS does):
``com.openfaas.retry.attempts`` (tries in all, the first included), ``com.openfaas.retry.codes``
(comma-separated statuses), ``com.openfaas.retry.min_wait`` / ``max_wait`` (Go durations). Environment:
``max_inflight`` (the watchdog's limit per replica: the worker never has more deliveries to one replica in
flight). A status with ``X-OpenFaaS-Internal`` (an OpenFaaS component answered, not the function) or no
answer at all is retried whatever the codes say.
"""

from __future__ import annotations

import email.utils
import math
import re
import time
from dataclasses import dataclass

ATTEMPTS = "com.openfaas.retry.attempts"
CODES = "com.openfaas.retry.codes"
MIN_WAIT = "com.openfaas.retry.min_wait"
MAX_WAIT = "com.openfaas.retry.max_wait"

# The OpenFaaS chart's queue-worker defaults (maxRetryAttempts, httpRetryCodes, initialRetryWait,
# maxRetryWait).
DEFAULT_ATTEMPTS = 10
DEFAULT_CODES = frozenset({408, 429, 500, 502, 504})
DEFAULT_MIN_WAIT_S = 10.0
DEFAULT_MAX_WAIT_S = 120.0
DEFAULT_MAX_INFLIGHT = 1  # OpenFaaS CE's queue-worker runs one invocation at a time
# Retry-After is honoured on these statuses (delay-seconds or an HTTP-date), floored at min_wait.
RETRY_AFTER_STATUSES = frozenset({429, 503})

_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration (``"1m30s"``, ``"500ms"``, ``"10s"``); a bare number is seconds.
    Raises ValueError for anything else."""
    text = (text or "").strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for match in _GO_DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"not a Go duration: {text!r}")
    return total


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds of a ``Retry-After`` value (delay-seconds or an HTTP-date); None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class DeliveryPolicy:
    """Retries, concurrency and timeouts of one function's invocations (seconds)."""

    attempts: int = DEFAULT_ATTEMPTS
    codes: frozenset[int] = DEFAULT_CODES
    min_wait_s: float = DEFAULT_MIN_WAIT_S
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    timeout_s: float = 60.0  # one delivery: the gateway's upstream timeout

    @property
    def ack_wait_s(self) -> float:
        """How long JetStream waits for an answer before it redelivers: longer than one delivery."""
        return self.timeout_s + 30.0

    @classmethod
    def from_spec(cls, spec, *, default_max_inflight: int = DEFAULT_MAX_INFLIGHT, timeout_s: float = 60.0,
                  defaults: DeliveryPolicy | None = None) -> DeliveryPolicy:
        """The policy of a stack.yml function (``spec.annotations``, ``spec.environment``)."""
        base = defaults or cls()
        notes = spec.annotations or {}
        env = spec.environment or {}
        return cls(attempts=_positive_int(notes.get(ATTEMPTS), base.attempts),
                   codes=_codes(notes.get(CODES), base.codes),
                   min_wait_s=_duration(notes.get(MIN_WAIT), base.min_wait_s),
                   max_wait_s=_duration(notes.get(MAX_WAIT), base.max_wait_s),
                   max_inflight=_positive_int(env.get("max_inflight"), default_max_inflight),
                   timeout_s=timeout_s)

    def retried(self, status: int, *, internal: bool = False) -> bool:
        """Whether an attempt that ended with ``status`` (0: no answer) is tried again."""
        return status == 0 or internal or status in self.codes

    def delay(self, attempt: int, retry_after: str | None = None, status: int = 0) -> float:
        """Seconds before attempt ``attempt + 1``: ``min_wait * 2**(attempt-1)`` capped at ``max_wait``;
        a ``Retry-After`` on a 429/503 replaces it, but never below ``min_wait``."""
        backoff = min(self.max_wait_s, self.min_wait_s * (2 ** max(0, attempt - 1)))
        if status in RETRY_AFTER_STATUSES:
            asked = parse_retry_after(retry_after)
            if asked is not None:
                return max(self.min_wait_s, asked)
        return backoff

    def window(self, retry_after_s: float | None = None) -> float:
        """The shortest time from the first attempt to the last (answers taking no time): the backoff
        sum, or with every answer asking ``retry_after_s`` the floored Retry-After sum. A failure that
        lasts longer than this turns into a dead letter."""
        waits = [self.delay(n) if retry_after_s is None else max(self.min_wait_s, retry_after_s)
                 for n in range(1, self.attempts)]
        return math.fsum(waits)


def _positive_int(raw, fallback: int) -> int:
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        return fallback
    return value if value > 0 else fallback


def _duration(raw, fallback: float) -> float:
    try:
        value = parse_go_duration(str(raw)) if raw is not None else None
    except ValueError:
        return fallback
    return fallback if value is None or value < 0 else value


def _codes(raw, fallback: frozenset[int]) -> frozenset[int]:
    if raw is None:
        return fallback
    try:
        codes = frozenset(int(part) for part in str(raw).split(",") if part.strip())
    except ValueError:
        return fallback
    return codes if codes and all(100 <= c <= 599 for c in codes) else fallback
