"""Create the topics a configuration names: lobstream never creates them on the fly.

    python -m sources.kafka.topics [--partitions N] [--replication R]

creates on the configured brokers (``LOBSTREAM_CONFIG`` / ``LOBSTREAM_KAFKA_*``)
the raw topic with ``N`` partitions (default 4) and ``max.message.bytes`` raised to
64 MiB (deep-book snapshots are single frames of several MB), the control topic
with one partition (a few messages a day), and every output topic with ``N``
partitions; topics that exist are left as they are. Retention is the broker's
default: the capture's periodic snapshot refresh keeps a recent snapshot of every
book however short it is (see the README).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from sources.kafka.client import MAX_MESSAGE_BYTES, KafkaSetupError, client_config, kafka, \
    list_topics
from sources.kafka.settings import KafkaSettings


def create_topics(settings: KafkaSettings, partitions: int = 4, replication: int = 1,
                  timeout: float = 30.0) -> List[str]:
    """Create the missing topics of ``settings``; the names created."""
    ck = kafka()
    existing = list_topics(settings, timeout)
    wanted = {settings.raw_topic: (partitions, {"max.message.bytes": str(MAX_MESSAGE_BYTES)}),
              settings.control_topic: (1, {})}
    for topic in settings.output_topics().values():
        wanted.setdefault(topic, (partitions, {}))
    new = [ck.admin.NewTopic(name, count, replication, config=config)
           for name, (count, config) in wanted.items() if name not in existing]
    if not new:
        return []
    admin = ck.admin.AdminClient(client_config(settings))
    for name, future in admin.create_topics(new, request_timeout=timeout).items():
        try:
            future.result(timeout)
        except ck.KafkaException as ex:
            raise KafkaSetupError(f"kafka: cannot create topic {name!r}: "
                                  f"{ex.args[0].str()}") from None
    return [t.topic for t in new]


def main(argv: Optional[List[str]] = None) -> int:
    from dataflows.config import ConfigError, load_config

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=4, help="raw and output topics")
    parser.add_argument("--replication", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        settings = load_config().kafka
        created = create_topics(settings, args.partitions, args.replication)
    except (ConfigError, KafkaSetupError) as ex:
        print(f"lobstream: {ex}", file=sys.stderr)
        return 1
    except kafka().KafkaException as ex:
        print(f"lobstream: kafka: brokers {settings.bootstrap} unreachable "
              f"({ex.args[0].str()})", file=sys.stderr)
        return 1
    print(f"created {', '.join(created)}" if created else "all topics exist")
    return 0


if __name__ == "__main__":
    sys.exit(main())
