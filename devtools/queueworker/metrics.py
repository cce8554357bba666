"""The queue-worker's Prometheus metrics (served on ``--metrics-port``), named like OpenFaaS Standard's
queue-worker where it has an equivalent (docs/contract.md)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

DEAD_LETTERS = Counter("queue_worker_dead_letters_total", "Invocations that ended without a 2xx and were kept "
                       "as a dead letter", ["function_name", "code"])
PROCESSED = Counter("queue_worker_messages_processed_total", "Invocations finished", ["function_name", "outcome"])
PENDING = Gauge("queue_worker_pending_messages", "Messages waiting to be delivered", ["function_name"])
INFLIGHT = Gauge("queue_worker_function_invocation_inflight", "Messages delivered and not acknowledged "
                 "(running, or waiting for a retry)", ["function_name"])
OLDEST_AGE = Gauge("queue_worker_oldest_message_age_seconds", "Age of the oldest message in the queue",
                   ["function_name"])
