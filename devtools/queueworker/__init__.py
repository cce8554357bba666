"""A local stand-in for OpenFaaS Standard's JetStream queue-worker: delivers what the gateway queued on
``/async-function/NAME`` to the function, with the retries, concurrency and callbacks the function's
stack.yml entry asks for, and keeps what fails for good as a dead letter (PostgreSQL).

Modules, one concern each:

- ``policy``: :class:`DeliveryPolicy` (retry attempts, codes, min/max wait and backoff, ``max_inflight``,
  timeouts) from stack.yml annotations and environment;
- ``worker``: :class:`QueueWorker` (consumers, deliveries, :func:`decide`, outcomes, dead letters);
- ``outcomes``: :class:`Outcome`, the dead letter and the callback of a finished invocation;
- ``callbacks``: :class:`CallbackSender` (X-Callback-Url POSTs, off the delivery path);
- ``metrics``: Prometheus counters and gauges; ``process``: :class:`QueueWorkerProcess` (start/stop as
  a child process, for ``make run`` and the tests); ``cli``: ``python -m devtools.queueworker``.
"""

from devtools.queueworker.policy import DeliveryPolicy, parse_go_duration
from devtools.queueworker.process import QueueWorkerProcess, start_queue_worker
from devtools.queueworker.worker import Decision, Delivery, QueueWorker, Target, decide, queue_depth

__all__ = ["Decision", "Delivery", "DeliveryPolicy", "QueueWorker", "QueueWorkerProcess", "Target", "decide",
           "parse_go_duration", "queue_depth", "start_queue_worker"]
