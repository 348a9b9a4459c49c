"""The Kafka topology as it runs: ``python -m bytewax.run`` processes for the capture
and the analytics, a real broker (tansu), the simulator; 2-process analytics,
``kill -9`` of either side, the broker going away, the broker losing its data."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import orjson
import pytest
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import run_main

from benchmarks import data
from dataflows.config import Config
from dataflows.orderbook import build_flow
from sources.capture.codec import LineParser
from sources.capture.format import read_capture
from sources.kafka.publish import publish
from sources.kafka.settings import KafkaSettings
from sources.kafka.source import placement
from sources.kafka.tansu import Tansu, free_ports
from sources.kafka.topics import create_topics
from sources.simulator import SimulatorThread
from sources.simulator.market import load_recording
from tests.helpers import crossing, read_dir
from tests.kafka_support import (RECORDINGS, ROOT, Proxy, broker,  # noqa: F401
                                 consume, cycled_coinbase, env, jsonl,
                                 resume_epoch, split_capture, stream_partitions, topics,
                                 wait_until)

COINBASE = RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz"
#: Deribit instruments whose recorded updates can be repeated (benchmarks.data).
INSTRUMENTS = ("ETH-16APR21-1600-C", "ETH-24SEP21-320-P", "ETH-30APR21-2240-P",
               "ETH-9APR21-1950-C")
ANALYTICS = "dataflows.orderbook:flow"
CAPTURE = "dataflows.capture:flow"

pytestmark = pytest.mark.timeout(180)


class Run:
    """One ``python -m bytewax.run`` process, its stderr in a file."""

    def __init__(self, tmp: Path, name: str, flow: str, environ: Dict[str, str],
                 *args: str) -> None:
        self.log = tmp / f"{name}.log"
        self._file = open(self.log, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bytewax.run", flow, *args],
                                     cwd=ROOT, env=environ, stdout=subprocess.DEVNULL,
                                     stderr=self._file)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._file.close()

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._file.close()
        return code

    def wait(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self._file.close()
        assert code == 0, self.text()[-3000:]
        return code


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Run]]:
    """Starts :class:`Run` processes; whatever still runs when the test ends (a
    failed assertion) is killed."""
    runs: List[Run] = []

    def start(name: str, flow: str, environ: Dict[str, str], *args: str) -> Run:
        runs.append(Run(tmp_path, name, flow, environ, *args))
        return runs[-1]

    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.kill()


def analytics_env(settings: KafkaSettings, out: Path, **extra: str) -> Dict[str, str]:
    return env(settings, LOBSTREAM_INPUT="kafka", LOBSTREAM_JSONL_DIR=str(out), **extra)


def capture_env(settings: KafkaSettings, url: str, **extra: str) -> Dict[str, str]:
    return env(settings, LOBSTREAM_VENUES="coinbase", LOBSTREAM_COINBASE_PRODUCTS="BTC-USD,ETH-USD",
               LOBSTREAM_COINBASE_URL=url + "/coinbase", **extra)


def summaries(path: Path) -> List[dict]:
    return [r for r in jsonl(path) if r["type"] == "summary"]


def statuses(recs: Sequence[dict]) -> List[tuple]:
    return [(r["state"], r["reason"]) for r in recs if r["type"] == "status"]


# ------------------------------------------------------------------ placement

def test_two_process_analytics_keep_each_book_with_its_partition(broker, tmp_path, launch):
    der, cb = data.load_deribit(), data.load_coinbase()
    files = [Path(data.build_deribit_per_instrument(der, tmp_path / "d", INSTRUMENTS,
                                                    300)["dir"]),
             Path(data.build_per_product(cb, tmp_path / "c", 300)["dir"])]
    settings = topics(broker.bootstrap, partitions=4, tail=False)
    publish(settings, sorted(p for d in files for p in d.glob("*.jsonl")))
    where = stream_partitions(settings)
    assert len(set(where.values())) > 1  # the streams really are spread
    run_main(build_flow(Config(input="kafka", kafka=settings, jsonl_dir=str(tmp_path / "one"))))
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    runs = [launch(f"p{i}", ANALYTICS, analytics_env(settings, tmp_path / f"p{i}"),
                "-i", str(i), "-a", addresses) for i in range(2)]
    for run in runs:
        run.wait(120)
    plan = placement(settings.raw_topic, 4, 2)
    for i, run in enumerate(runs):
        read = re.findall(r"worker (\d) of 2 reads (.*)", run.text())
        assert [(int(w), parts.split(", ")) for w, parts in read] == [
            (i, sorted(p for p, w in plan.items() if w == i))]
    parts = [read_dir(tmp_path / f"p{i}") for i in range(2)]
    # Each product's book (and file) is in the process that reads its stream.
    for i in range(2):
        assert set(parts[i]) == {f"{s.replace(':', '_')}.jsonl" for s, p in where.items()
                                 if plan[f"{settings.raw_topic}:{p}"] == i}
    assert {**parts[0], **parts[1]} == read_dir(tmp_path / "one")


# ------------------------------------------------------------------ kill -9 of the analytics

def test_kill_9_of_the_analytics_resumes_with_exact_books(broker, tmp_path, launch):
    """Killed mid-run with recovery on, then restarted: the restart rebuilds the
    books from their last snapshot, re-emits the records written since the last
    epoch snapshot (with the same ``src``, so a consumer drops the repeats), and
    from there on writes exactly what the uninterrupted run wrote."""
    paths = [cycled_coinbase(tmp_path, "BTC-USD", 3, 8),
             cycled_coinbase(tmp_path, "ETH-USD", 3, 4)]
    settings = topics(broker.bootstrap, partitions=2, tail=False)
    reference_topic = replace(settings, raw_topic=settings.raw_topic + ".all")
    create_topics(reference_topic, 2)
    publish(reference_topic, paths)
    run_main(build_flow(Config(input="kafka", kafka=reference_topic,
                               jsonl_dir=str(tmp_path / "ref"))))
    reference = read_dir(tmp_path / "ref")
    # The same frames in two goes: the flow has taken the first part, and an epoch
    # snapshot holds it, when the second arrives and the flow is killed in it. The
    # second part is the larger (65 %): with 40 % a loaded machine had written all
    # of it, and closed an epoch, before the kill landed.
    halves = [split_capture(p, 0.35) for p in paths]
    publish(settings, [h[0] for h in halves])
    db = tmp_path / "recovery"
    db.mkdir()
    init_db_dir(db, 1)
    recovery = ("-r", str(db), "-s", "1", "-b", "30")
    out = tmp_path / "out"
    first = launch("first", ANALYTICS,
                analytics_env(replace(settings, tail=True), out), *recovery)
    btc = out / "coinbase_BTC-USD.jsonl"
    wait_until(lambda: len(jsonl(btc)) > 1000, 60, "the first part processed")
    growth = [-1, 0.0]  # lines, when they last changed

    def settled() -> bool:
        n = len(jsonl(btc))
        if n != growth[0]:
            growth[:] = [n, time.monotonic()]
            return False
        return time.monotonic() - growth[1] > 1.0

    wait_until(settled, 60, "the first part written")  # then two more epochs closed
    epoch = resume_epoch(db)
    wait_until(lambda: resume_epoch(db) >= epoch + 2, 30, "two more epochs closed")
    done = len(jsonl(btc))
    publish(settings, [h[1] for h in halves])
    wait_until(lambda: len(jsonl(btc)) > done, 30, "the second part started", step=0.01)
    first.kill()
    before = read_dir(out)
    second = launch("second", ANALYTICS, analytics_env(settings, out), *recovery)
    second.wait(120)
    # Each partition was rebuilt from its streams' last snapshots before the resume
    # position, not from the start of the topic.
    snapshots: Dict[int, Dict[str, List[int]]] = {}
    for m in consume(settings, settings.raw_topic):
        if b'"type":"snapshot","product_id"' in m.value():
            snapshots.setdefault(m.partition(), {}).setdefault(m.key().decode(), []).append(
                m.offset())
    rebuilt = re.findall(r"raw\[(\d)\]: books rebuilt from offset (\d+) up to (\d+)",
                         second.text())
    assert len(rebuilt) == 2, second.text()[-2000:]
    for part, begin, upto in rebuilt:
        assert int(begin) == min(max(o for o in offsets if o <= int(upto))
                                 for offsets in snapshots[int(part)].values())
    assert any(int(begin) > 0 for _, begin, _ in rebuilt)
    after = read_dir(out)
    assert set(after) == set(reference)
    for name, ref in reference.items():
        old = before.get(name, [])
        new = after[name][len(old):]
        start = len(ref) - len(new)
        assert old == ref[:len(old)], name
        assert new == ref[start:] and start <= len(old), name
        seen = {tuple(r["src"]) for r in old}
        assert all(tuple(r["src"]) in seen for r in ref[start:len(old)]), name
    # Killed within an epoch of writing: the restart wrote something (repeats or new).
    assert len(after["coinbase_BTC-USD.jsonl"]) > len(before["coinbase_BTC-USD.jsonl"])


# ------------------------------------------------------------------ the capture

def test_crossed_book_asks_the_capture_through_kafka_and_a_killed_capture_is_seen(
        broker, tmp_path, launch):
    """The analytics find BTC-USD crossed; the request goes over the control topic;
    the capture resubscribes it and the fresh snapshot reaches the analytics through
    the raw topic: the book is synced again. Then the capture is killed with -9 and
    restarted: the analytics report ``disconnected``, then a fresh snapshot."""
    settings = topics(broker.bootstrap, partitions=2)
    recording = load_recording([COINBASE])
    out = tmp_path / "out"
    btc = out / "coinbase_BTC-USD.jsonl"
    with SimulatorThread(recording, rate=40, frame_filters=crossing("BTC-USD", 60, connection=0)) as sim:
        cap = launch("capture1", CAPTURE, capture_env(settings, sim.url))
        ana = launch("analytics", ANALYTICS, analytics_env(settings, out))
        wait_until(lambda: statuses(jsonl(btc)) == [
            ("synced", "snapshot"), ("invalid", "crossed"), ("synced", "snapshot")], 60,
            "crossed, then synced again")
        requests = [orjson.loads(m.value()) for m in consume(settings, settings.control_topic)]
        assert [(r["venue"], r["product"], r["reason"]) for r in requests] == [
            ("coinbase", "BTC-USD", "crossed")]
        assert "asked for a fresh snapshot (crossed: bid 9999999.0 > ask" in cap.text()
        wait_until(lambda: len(summaries(btc)) > 150, 60, "more summaries")
        cap.kill()
        n = len(jsonl(btc))
        cap2 = launch("capture2", CAPTURE, capture_env(settings, sim.url))
        wait_until(lambda: statuses(jsonl(btc)[n:]) == [
            ("invalid", "disconnected"), ("synced", "snapshot")], 60,
            "disconnected, then synced")
        assert cap2.stop() == 0 and ana.stop() == 0
    parser = LineParser()
    raw = [parser.parse(m.value()) for m in consume(settings, settings.raw_topic)]
    btc_lines = [f for f in raw if f.stream == "coinbase:BTC-USD"]
    # The request was served by resubscribing (no resync event: the capture's book
    # never went invalid); the new snapshot followed on the same connection.
    assert [orjson.loads(f.raw)["event"] for f in btc_lines if f.dir == "event"] == [
        "open", "open"]
    sent = [orjson.loads(f.raw) for f in btc_lines if f.dir == "send"]
    assert sum(m["type"] == "unsubscribe" and m["channel"] == "level2" for m in sent) == 1
    recs = jsonl(btc)
    lost = next(r for r in recs if r["type"] == "status" and r["reason"] == "disconnected")
    assert "stopped abruptly" in lost["detail"]
    assert all(s["bid_px"] < s["ask_px"] for s in summaries(btc))


# ------------------------------------------------------------------ the broker

def test_broker_down_at_start_and_mid_run_then_recovery(tmp_path, launch):
    """No broker when both start: one line each, they wait. The broker comes: they
    run. It goes away for a few seconds mid-run: one line each, nothing lost, and
    they carry on when it returns (every frame recorded locally is in the topic)."""
    bport, pport = free_ports(2)
    proxy = Proxy(bport, pport)
    recording = load_recording([COINBASE])
    out = tmp_path / "out"
    btc = out / "coinbase_BTC-USD.jsonl"
    try:
        with Tansu(bport, advertised=pport) as b, SimulatorThread(recording, rate=80) as sim:
            proxy.up()
            settings = topics(b.bootstrap, partitions=2)
            proxy.down()
            cap = launch("capture", CAPTURE, capture_env(
                settings, sim.url, LOBSTREAM_RECORD_DIR=str(tmp_path / "rec"),
                LOBSTREAM_EXIT_ON_CLOSE="1"))
            ana = launch("analytics", ANALYTICS, analytics_env(settings, out))
            for run in (cap, ana):
                wait_until(lambda: "unreachable" in run.text(), 30, "the first line")
            assert not btc.exists()
            proxy.up()
            wait_until(lambda: len(summaries(btc)) > 100, 60, "100 summaries")
            proxy.down()
            time.sleep(4)
            during = len(jsonl(btc))
            proxy.up()
            wait_until(lambda: len(jsonl(btc)) > during + 50, 60, "records after the outage")
            assert cap.proc.wait(60) == 0, cap.text()[-3000:]
            cap._file.close()
            time.sleep(2)
            assert ana.stop() == 0
            for run in (cap, ana):
                text = run.text()
                assert "Traceback" not in text, text[-3000:]
                assert re.search(r"brokers .*reachable again after \d+ s|reachable after", text)
            frames = [f.raw for f in (LineParser().parse(m.value())
                                      for m in consume(settings, settings.raw_topic))
                      if f.dir == "recv"]
            local = [f.raw for p in sorted((tmp_path / "rec").iterdir())
                     for f in read_capture(p) if f.dir == "recv"]
            assert sorted(frames) == sorted(local) and len(frames) > 500
            assert not any(orjson.loads(f.raw).get("event") == "overflow"
                           for f in (LineParser().parse(m.value())
                                     for m in consume(settings, settings.raw_topic))
                           if f.dir == "event")
    finally:
        proxy.close()


def test_a_broker_that_lost_its_data_is_noticed_and_the_books_reported(tmp_path):
    """Recovery state from one topic, then the broker restarts empty (memory
    storage) and the topic is recreated with other frames: the resumed flow finds
    the frame it expected missing, reports every book that was synced as
    ``snapshot_lost`` (with ``src`` null: new), and reads the new content."""
    db = tmp_path / "recovery"
    db.mkdir()
    init_db_dir(db, 1)
    deribit = sorted(Path(data.build_deribit_per_instrument(
        data.load_deribit(), tmp_path / "d", INSTRUMENTS[:2], 50)["dir"]).glob("*.jsonl"))
    port = free_ports(1)[0]
    settings: Optional[KafkaSettings] = None
    for paths in ([COINBASE], deribit):
        with Tansu(port) as b:  # the second broker starts empty, on the same address
            if settings is None:
                settings = topics(b.bootstrap, partitions=1, tail=False)
            else:
                create_topics(settings, 1)
            publish(settings, paths)
            run_main(build_flow(Config(input="kafka", kafka=settings,
                                       jsonl_dir=str(tmp_path / "out"))),
                     recovery_config=RecoveryConfig(str(db)))
    got = read_dir(tmp_path / "out")
    for product in ("BTC-USD", "ETH-USD"):
        recs = got[f"coinbase_{product}.jsonl"]
        assert statuses(recs)[-1] == ("invalid", "snapshot_lost")
        assert recs[-1]["src"] is None
    for product in INSTRUMENTS[:2]:
        assert statuses(got[f"deribit_{product}.jsonl"]) == [("synced", "snapshot")]
