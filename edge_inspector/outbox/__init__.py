"""At-least-once delivery to the MES: the spool on disk, and the MQTT publisher that drains it.

:class:`Spool` keeps every outgoing verdict and heatmap in SQLite until the
broker has it; :class:`Publisher` owns the MQTT connection, hands out each
verdict's ``seq`` in a batch written in one transaction, and delivers the
spool in order through its sender thread (:mod:`.sender`, bookkeeping in
:mod:`.inflight`), as JSON or as a Sparkplug B Edge Node (:mod:`.sparkplug`).

The sender publishes spooled rows in ``id`` order, at most
``mqtt.max_inflight`` unanswered. A row leaves the spool only when the broker
acknowledged it (PUBACK/PUBCOMP) or, for QoS 0, answered a barrier sent after
it. When the connection drops, every row not yet confirmed is sent again, in
order, on the next connection. The MES may thus see a message twice: the
``seq`` (in the verdict JSON; with MQTT v5 also a user property; in a
Sparkplug DDATA the ``verdict/seq`` metric) lets it drop duplicates.
"""

from edge_inspector.outbox.publisher import Publisher
from edge_inspector.outbox.spool import Spool

__all__ = ["Publisher", "Spool"]
