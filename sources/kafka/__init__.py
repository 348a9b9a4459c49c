"""Kafka: a capture service and analytics that scale apart (optional extra ``kafka``).

The capture (:mod:`dataflows.capture`) runs the venue connections and publishes
every frame, with its receive time, venue and connection stream, to a raw topic in
the capture format, plus the ``event`` lines that say what the connection did
(:mod:`sources.feed.captured`). Analytics (:mod:`dataflows.orderbook` with
``[run] input = "kafka"``) read that topic through the same parsers and sequence
checks as a replay, place its partitions over their workers, and resume after a
crash with exact books. A small control topic carries their resync requests back
to the capture.

``settings`` (the ``[kafka]`` table; pure), ``client`` (confluent-kafka clients,
topic checks, error reporting), ``tap`` (the capture's feeds), ``control`` (the
control topic), ``tracker`` (where a restart must resume reading; pure),
``source`` (the analytics input), ``topics``, ``publish`` and ``tansu`` (creating
topics; publishing capture files; a local broker for development and tests).

Only ``settings`` and ``tracker`` import without confluent-kafka installed.
"""
