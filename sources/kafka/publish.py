"""Publish capture files into the raw topic, as the capture would have published them.

    python -m sources.kafka.publish CAPTURE_OR_DIRECTORY [...]

Every line (header excepted) becomes one message: key its ``stream``, value the line
itself, in file order, through an idempotent producer, so a stream's lines keep
their order in one partition. Recorded captures (or converted ones from other
recorders) can then be analysed from Kafka like a live capture's topic. Lines are
read as they are (the analytics check them); a file that is not a capture stops
with one line.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterable, List, Optional, Union

from sources.capture.codec import BadLine, LineParser
from sources.capture.reader import CaptureReport, capture_files, frame_lines
from sources.kafka.client import Health, KafkaSetupError, kafka, producer_config, \
    wait_for_topics
from sources.kafka.settings import KafkaSettings

PathLike = Union[str, Path]


def publish(settings: KafkaSettings, paths: Iterable[PathLike],
            timeout: float = 60.0) -> int:
    """Publish every frame line of ``paths`` to the raw topic; the number published.
    Lines whose envelope cannot be read are counted and skipped (no stream: no key)."""
    wait_for_topics(settings, [settings.raw_topic], "publish")
    health = Health("publisher", "messages are held until they return")
    producer = kafka().Producer(producer_config(settings, health))
    report = CaptureReport()
    heads = LineParser()
    n = 0
    for path in capture_files(paths):
        for lineno, line in enumerate(frame_lines(path), 2):  # NotACaptureError at the call
            head = heads.head(line)
            if isinstance(head, BadLine):
                report.bad_line(path, lineno, head, line)
                continue
            while True:
                try:
                    producer.produce(settings.raw_topic, key=head[2].encode(), value=line)
                    break
                except BufferError:
                    producer.poll(0.1)  # the local queue is full: let it drain
            n += 1
            if n % 1000 == 0:
                producer.poll(0)
    left = producer.flush(timeout)
    if left:
        raise KafkaSetupError(f"kafka: {left} messages not delivered in {timeout:g} s")
    return n


def main(argv: Optional[List[str]] = None) -> int:
    from dataflows.config import ConfigError, load_config
    from sources.capture.reader import NotACaptureError

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captures", nargs="+", help="capture files or directories")
    args = parser.parse_args(argv)
    try:
        settings = load_config().kafka
        n = publish(settings, args.captures)
    except (ConfigError, KafkaSetupError, NotACaptureError, FileNotFoundError) as ex:
        print(f"lobstream: {ex}", file=sys.stderr)
        return 1
    print(f"published {n} lines to {settings.raw_topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
