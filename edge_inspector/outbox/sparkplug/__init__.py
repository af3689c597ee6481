"""Sparkplug B output (``mqtt.format: sparkplug``) for MES hosts that expect it.

The station is an Edge Node, each camera a Device. :mod:`payloads` builds the
messages (NBIRTH, DBIRTH, DDATA, NDEATH) with protobuf from
``sparkplug_b.proto``; :mod:`node` keeps the session (``bdSeq`` across
reconnects and restarts, ``seq`` 0-255) and publishes them through the
agent's MQTT client.
"""
