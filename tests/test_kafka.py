"""Capture -> Kafka -> analytics with a real broker (tansu) and real Bytewax runs:
the analytics produce what a replay of the same frames produces, the Kafka sinks
publish the records, and setup problems stop the flow with one line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Dict, List

import pytest
from bytewax.testing import run_main

from dataflows.capture import build_capture
from dataflows.config import Config, VenueConfig
from dataflows.orderbook import build_flow
from sources.capture.codec import LineParser
from sources.kafka.client import KafkaSetupError, list_topics
from sources.kafka.publish import publish
from sources.kafka.settings import KafkaSettings
from sources.simulator import SimulatorThread
from sources.simulator.market import load_recording
from tests.helpers import read_dir
from tests.kafka_support import (RECORDINGS, broker, consume, dump, records,  # noqa: F401
                                 topics, without)

COINBASE = RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz"
DERIBIT = RECORDINGS / "deribit_options.jsonl.gz"
OPTIONS = ["BTC-25MAR22-400000-C", "ETH-16APR21-1600-C", "ETH-30APR21-2240-P"]
# The simulator serves Deribit books only.
DERIBIT_BOOKS = {"interval": "100ms", "trades": False, "tickers": False}


def replay(paths: List[Path], out: Path) -> Dict[str, List[dict]]:
    run_main(build_flow(Config(replay=[str(p) for p in paths], jsonl_dir=str(out))))
    return read_dir(out)


def analytics(settings: KafkaSettings, out: Path, sinks=("jsonl",)) -> Dict[str, List[dict]]:
    run_main(build_flow(Config(input="kafka", kafka=replace(settings, tail=False),
                               jsonl_dir=str(out), sinks=list(sinks))))
    return read_dir(out)


def assert_positions(files: Dict[str, List[dict]]) -> None:
    """Each product's records come in raw-topic order: one partition, ``src``
    strictly increasing."""
    for name, recs in files.items():
        srcs = [tuple(r["src"]) for r in recs if r["src"] is not None]
        assert len({s[0] for s in srcs}) == 1, name
        assert all(a < b for a, b in zip(srcs, srcs[1:])), name


def test_capture_to_topic_to_analytics_equals_the_replay(broker, tmp_path):
    settings = topics(broker.bootstrap, partitions=2)
    with SimulatorThread(load_recording([COINBASE, DERIBIT]), speed=0) as sim:
        run_main(build_capture(Config(
            venues={"coinbase": VenueConfig(["BTC-USD", "ETH-USD"], sim.url + "/coinbase"),
                    "deribit": VenueConfig(OPTIONS, sim.url + "/deribit", DERIBIT_BOOKS)},
            exit_on_close=True, kafka=settings, record_dir=str(tmp_path / "captures"))))
    lines = consume(settings, settings.raw_topic)
    parser = LineParser()
    frames = [parser.parse(m.value()) for m in lines]
    assert all(f is not None and f.stream == m.key().decode() for f, m in zip(frames, lines))
    assert {(f.stream, f.dir) for f in frames if f.dir == "event"} == {
        (s, "event") for s in {f.stream for f in frames}}  # each connection's open
    got = analytics(settings, tmp_path / "kafka", sinks=("jsonl", "kafka"))
    assert len(got) == 5
    btc = got["coinbase_BTC-USD.jsonl"]
    assert sum(r["type"] == "summary" for r in btc) == 400
    assert sum(r["type"] == "trade" for r in btc) > 100
    assert_positions(got)
    # The same frames replayed, from the topic and from the capture's own files:
    # identical records, receive times included (the topic holds them).
    assert without(got, "src") == replay([dump(settings, tmp_path / "dump.jsonl")],
                                         tmp_path / "from_topic")
    assert without(got, "src") == replay([tmp_path / "captures"], tmp_path / "from_files")
    # The Kafka sinks published every record, keyed by product, in order.
    for kind in ("summary", "trade", "status"):
        published: Dict[str, List[dict]] = {}
        for key, rec in records(settings, kind):
            published.setdefault(key, []).append(rec)
        assert published == {f"{r['venue']}:{r['product']}": [x for x in recs
                                                              if x["type"] == kind]
                             for recs in got.values() for r in recs[:1]
                             if any(x["type"] == kind for x in recs)}


def test_recordings_through_kafka_equal_their_replay(broker, tmp_path):
    """Every bundled recording, published as the capture would: books, trades,
    tickers, bars and statuses as from the files (REST snapshots included)."""
    paths = sorted(RECORDINGS.glob("*.jsonl.gz"))
    settings = topics(broker.bootstrap, partitions=3)
    publish(settings, paths)
    got = analytics(settings, tmp_path / "kafka")
    want = replay(paths, tmp_path / "replay")
    assert without(got, "src") == want
    assert {r["type"] for recs in want.values() for r in recs} >= {
        "summary", "trade", "ticker", "bar", "status"}
    assert_positions(got)


def test_setup_problems_stop_the_flow_with_one_line(broker, tmp_path):
    settings = topics(broker.bootstrap, partitions=1)
    missing = replace(settings, raw_topic=settings.raw_topic + ".missing")
    for cfg in (Config(input="kafka", kafka=missing), Config(kafka=missing)):
        with pytest.raises(KafkaSetupError, match="does not exist.*never creates topics"):
            (build_flow if cfg.input == "kafka" else build_capture)(cfg)
    # Checking does not create it (a metadata request naming it would, on tansu).
    assert missing.raw_topic not in list_topics(settings)
    with pytest.raises(KafkaSetupError, match='No such configuration property: "sasl.nonsense"'):
        build_flow(Config(input="kafka", kafka=replace(settings,
                                                       client={"sasl.nonsense": "1"})))
    nobody = replace(settings, brokers=("127.0.0.1:1",), connect_timeout=1.0)
    with pytest.raises(KafkaSetupError, match=r"brokers 127.0.0.1:1 unreachable for \d+ s"):
        build_flow(Config(input="kafka", kafka=nobody))
