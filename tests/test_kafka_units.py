"""The Kafka pieces that need no broker: event lines, the capture's feeds, control
requests, the book step's rebuilds and positions, and the [kafka] settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import orjson
import pytest

from dataflows.config import ConfigError, load_config
from dataflows.kafka_book import KafkaBookStep
from sources.capture.codec import CaptureFrame, LineParser
from sources.capture.format import read_capture
from sources.feed.captured import (close_event, deliver, listen_only, open_event,
                                   overflow_event, resync_event)
from sources.feed.feed import Feed
from sources.feed.reporting import BadInput
from sources.kafka.control import ControlReader, encode_request
from sources.kafka.settings import KafkaSettings
from sources.kafka.source import Lost, Rebuild
from sources.kafka.tap import CaptureContext, TappedFeed
from sources.runtime.registry import Registry
from sources.runtime.resync import ResyncRequests
from sources.venues import VENUES
from sources.venues.credentials import CREDENTIALS, Credentials
from state.events import BookEvent, BookStatus

RECORDINGS = Path(__file__).resolve().parent.parent / "recordings"
DERIBIT = RECORDINGS / "deribit_options.jsonl.gz"
BINANCE = RECORDINGS / "binance_spot_btcusdt.jsonl.gz"


def recv(path: Path) -> List[CaptureFrame]:
    return [f for f in read_capture(path) if f.dir in ("recv", "rest")]


def event(feed: Feed, msg: bytes, ts: float = 1.7e12) -> List[Any]:
    out: List[Any] = []
    deliver(feed, CaptureFrame(ts, feed.venue.name, feed.stream, "event", msg), out)
    return out


def replaying(path: Path) -> Feed:
    """A listening feed that has read a recording up to its first book."""
    frames = recv(path)
    feed = listen_only(Feed(VENUES[frames[0].venue], None, BadInput(), frames[0].stream))
    out: List[Any] = []
    for f in frames:
        deliver(feed, f, out)
        if any(type(e) is BookEvent for _, e in out):
            return feed
    raise AssertionError("no book in the recording")


# ----------------------------------------------------------------- event lines

def test_open_without_close_reports_the_lost_connection_once():
    feed = replaying(DERIBIT)
    synced = sorted(p for p, s in feed.books.items() if s.sync.synced)
    out = event(feed, open_event(synced))
    assert sorted(s.product for _, s in out) == synced
    assert {(s.state, s.reason) for _, s in out} == {("invalid", "disconnected")}
    assert not any(s.sync.synced for s in feed.books.values())
    # After a recorded close, the next open adds nothing: the books are gone already.
    assert event(feed, close_event("server closed the connection (code 1011)")) == []
    assert event(feed, open_event(synced)) == []


def test_resync_and_overflow_events_do_what_the_capture_did():
    feed = replaying(DERIBIT)
    product = next(p for p, s in feed.books.items() if s.sync.synced)
    (_, status), = event(feed, resync_event(product, "crossed", "asked by analytics"))
    assert (status.product, status.reason, status.detail) == (
        product, "crossed", "asked by analytics")
    assert not feed.books[product].sync.synced
    assert {s.reason for _, s in event(feed, overflow_event(7))} == {"overflow"}
    assert feed.counts["dropped_overflow"] == 7
    assert feed.outbox == [] and feed.requests == []  # a replaying feed asks nobody


def test_a_removed_product_is_removed_on_replay_too():
    capture, feed = tapped(DERIBIT), replaying(DERIBIT)
    product = next(p for p, s in feed.books.items() if s.sync.synced)
    capture.connected(1.7e12)
    lines: List[Any] = []
    capture.remove([product, "NOT-SUBSCRIBED"], 1.7e12, "delisted", lines)
    line = parsed(lines)[-1]  # after the open event and the subscriptions
    assert orjson.loads(line.raw) == {"event": "remove", "products": [product],
                                      "reason": "delisted"}
    assert product not in capture.books
    out: List[Any] = []
    deliver(feed, line, out)
    assert [(s.product, s.reason) for _, s in out] == [(product, "delisted")]
    assert product not in feed.books


@pytest.mark.parametrize("msg", [b'{"event":"resync","product":"../x"}', b'{"event":"close"}',
                                 b'{"event":"remove","products":["a/b"],"reason":"x"}',
                                 b'{"event":"overflow","dropped":-1}', b'{"event":"nap"}',
                                 b'[1,2]'])
def test_bad_event_lines_are_counted_and_skipped(msg):
    feed = replaying(DERIBIT)
    synced = [p for p, s in feed.books.items() if s.sync.synced]
    assert event(feed, msg) == []
    assert feed.counts["bad_event"] == 1
    assert [p for p, s in feed.books.items() if s.sync.synced] == synced


# ----------------------------------------------------------------- capture feeds

def tapped(path: Path, refresh_ms: float = 600_000.0) -> TappedFeed:
    frames = recv(path)
    venue = VENUES[frames[0].venue]
    products = sorted({e.product for f in frames for e in venue.parse(f.raw, f.ts).events
                       if f.dir == "recv"}) if not venue.rest_snapshots else ["BTCUSDT"]
    return TappedFeed(venue, products, BadInput(), f"{venue.name}:test",
                      context=CaptureContext(refresh_ms))


def parsed(lines: List[Any]) -> List[CaptureFrame]:
    parser = LineParser()
    return [parser.parse(line) for _, line in lines]


def test_capture_feeds_hand_on_every_line_with_times_that_never_go_back():
    feed = tapped(DERIBIT)
    frames = recv(DERIBIT)
    lines: List[Any] = []
    messages = feed.connected(frames[0].ts - 5.0)
    feed.outbox = []  # as the transport takes it (nothing queued yet)
    for f in frames:
        feed.on_frame(f.raw, f.ts, lines)
    feed.outbox.extend(feed.protocol.answer_test_request())
    feed.outbox = []  # the transport takes the answer: it becomes a send line
    # An analytics flow asks for a fresh snapshot: a resubscription (Deribit has
    # its snapshots in the stream), the book stays valid, so there is no event.
    product = feed.wanted[0]
    feed.resync(product, frames[-1].ts + 10_000.0, "crossed", "asked", lines)
    assert feed.books[product].sync.synced
    resubscribe = len(feed.outbox)
    feed.outbox = []
    feed.overflow(frames[-1].ts + 1.0, 3, lines)
    lines.extend(feed.disconnected(frames[-1].ts + 2.0, "connection lost"))
    got = parsed(lines)
    assert [f.dir for f in got[:1 + len(messages)]] == ["event"] + ["send"] * len(messages)
    assert [f.raw for f in got if f.dir == "recv"] == [f.raw for f in frames]
    assert [f.ts for f in got if f.dir == "recv"] == [f.ts for f in frames]
    events = [orjson.loads(f.raw)["event"] for f in got if f.dir == "event"]
    assert events == ["open", "overflow", "close"]
    assert resubscribe == 2
    assert sum(1 for f in got if f.dir == "send") == len(messages) + 1 + resubscribe
    assert all(a.ts <= b.ts for a, b in zip(got, got[1:]))
    assert {f.stream for f in got} == {feed.stream}


def test_periodic_refresh_resubscribes_stream_venues_and_resyncs_rest_venues():
    feed = tapped(DERIBIT, refresh_ms=60_000.0)
    frames = recv(DERIBIT)
    start = frames[0].ts - 5.0
    feed.connected(start)
    lines: List[Any] = []
    for f in frames:
        feed.on_frame(f.raw, f.ts, lines)
    feed.outbox = []
    synced = [p for p, s in feed.books.items() if s.sync.synced]
    feed.tick(start + 30_000.0)
    assert feed.outbox == []  # not due yet
    feed.tick(start + 120_001.0)  # every product is due once (first ones spread over 60 s)
    subscribes = [m for m in feed.outbox if m["method"] == "public/subscribe"]
    assert sorted(c.split(".")[1] for m in subscribes for c in m["params"]["channels"]) == \
        sorted(synced)
    assert all(s.sync.synced for p, s in feed.books.items() if p in synced)  # still valid
    feed.outbox = []
    feed.tick(start + 150_000.0)
    assert feed.outbox == []  # next ones a full interval later

    rest = tapped(BINANCE, refresh_ms=60_000.0)
    frames = recv(BINANCE)
    rest.connected(frames[0].ts - 5.0)
    for f in frames:
        (rest.on_rest if f.dir == "rest" else rest.on_frame)(
            *((f.url, f.raw, f.ts) if f.dir == "rest" else (f.raw, f.ts)), lines)
    assert rest.books["BTCUSDT"].sync.synced
    rest.requests = []  # as the transport takes them
    rest.tick(frames[0].ts + 120_000.0)
    assert rest.requests == ["BTCUSDT"] and not rest.books["BTCUSDT"].sync.synced
    out: List[Any] = []
    rest.on_frame(frames[-1].raw, frames[-1].ts, out)
    assert [orjson.loads(f.raw) for f in parsed(out)[:1]] == [
        {"event": "resync", "product": "BTCUSDT", "reason": "refresh",
         "detail": "periodic snapshot refresh"}]


# ----------------------------------------------------------------- control requests

def test_control_requests_are_checked_and_served_once():
    context = CaptureContext(0.0)
    resync = ResyncRequests()
    reader = ControlReader(KafkaSettings(), 1, frozenset({("deribit", "BTC-PERPETUAL")}),
                           resync, context)
    now = context.started_ms + 10_000.0
    ask = lambda ts, product="BTC-PERPETUAL": encode_request(  # noqa: E731
        "deribit", product, ts, "crossed", "bid 2 > ask 1")
    assert reader.handle(ask(now - 1.0), now)
    assert resync.take({("deribit", "BTC-PERPETUAL")}) == [
        ("deribit", "BTC-PERPETUAL", "crossed", "asked by analytics: bid 2 > ask 1")]
    assert not reader.handle(ask(now - 0.5), now + 10.0)  # within MIN_INTERVAL_MS
    context.asked("deribit", "BTC-PERPETUAL", now + 500.0)  # the capture resynced it
    assert not reader.handle(ask(now + 400.0), now + 5000.0)  # already served
    assert not reader.handle(ask(context.started_ms - 1.0), now + 9000.0)  # before start
    assert not reader.handle(ask(now + 1e9), now + 9000.0)  # from the future
    assert not reader.handle(ask(now + 600.0, "ETH-PERPETUAL"), now + 9000.0)  # not ours
    assert reader.handle(ask(now + 600.0), now + 9000.0)
    for junk in (b"", b"[]", b'{"venue":"deribit"}', orjson.dumps(
            {"ts": now, "venue": "deribit", "product": "BTC-PERPETUAL", "reason": "because"})):
        assert not reader.handle(junk, now + 20_000.0)
    assert (reader.accepted, reader.ignored, reader.rejected) == (2, 5, 4)


# ----------------------------------------------------------------- the book step

def test_book_step_rebuilds_without_records_then_numbers_records_by_source():
    frames = recv(DERIBIT)
    feed = listen_only(Feed(VENUES["deribit"], None, BadInput(), "deribit:test"))
    events: List[Any] = []
    for offset, f in enumerate(frames):
        out: List[Any] = []
        deliver(feed, f, out)
        events += [(offset, k, e) for k, e in out if type(e) in (BookEvent, BookStatus)]
    key = events[0][1]
    mine = [(o, e) for o, k, e in events if k == key]
    step = KafkaBookStep(10, 10.0, ResyncRequests(), Registry())
    straight, resumed = step(None), step(None)
    whole = [r for o, e in mine for r in straight.on_item((0, o, e))[0]]
    cut = len(mine) // 2
    for o, e in mine[:cut]:
        assert resumed.on_item(Rebuild(e)) == ([], False)
    after = [r for o, e in mine[cut:] for r in resumed.on_item((0, o, e))[0]]
    assert after == whole[len(whole) - len(after):]
    srcs = [tuple(r["src"]) for r in whole]
    assert srcs == sorted(set(srcs)) and {s[0] for s in srcs} == {0}
    # A synced book that cannot be rebuilt is reported, new (src null); a rebuilt
    # one is not.
    lost = BookStatus("deribit", mine[0][1].product, 1.0, "invalid", "snapshot_lost", "gone")
    (record,), _ = step(None).on_item(Lost(lost))
    assert (record["state"], record["reason"], record["src"]) == ("invalid", "snapshot_lost",
                                                                  None)
    assert resumed.on_item(Lost(lost)) == ([], False)


# ----------------------------------------------------------------- settings

def test_kafka_table_from_a_file_with_pass_through(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\ninput = "kafka"\n[kafka]\nbrokers = ["k1:9093", "k2:9093"]\n'
                    'summary_topic = ""\n[kafka.config]\n"security.protocol" = "SASL_SSL"\n'
                    '"sasl.mechanism" = "PLAIN"\n"socket.keepalive.enable" = true\n')
    cfg = load_config({"LOBSTREAM_CONFIG": str(path)})
    assert cfg.input == "kafka" and cfg.kafka.bootstrap == "k1:9093,k2:9093"
    assert "summary" not in cfg.kafka.output_topics()
    assert cfg.kafka.client == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                                "socket.keepalive.enable": "true"}


def test_the_kafka_example_configures_all_three_commands():
    cfg = load_config({"LOBSTREAM_CONFIG": str(RECORDINGS.parent / "examples" / "kafka.toml")})
    assert cfg.input == "kafka" and "kafka" in cfg.sinks and set(cfg.venues) == {"coinbase",
                                                                                   "deribit"}


@pytest.mark.parametrize("env,expected", [
    ({"LOBSTREAM_KAFKA_BROKERS": "k1"}, "kafka.brokers: 'k1': expected HOST:PORT"),
    ({"LOBSTREAM_KAFKA_CONTROL_TOPIC": "lobstream.raw"},
     "kafka.raw_topic and kafka.control_topic are both 'lobstream.raw'"),
    ({"LOBSTREAM_KAFKA_BAR_TOPIC": "lobstream.control"},
     "kafka.bar_topic='lobstream.control' is also the control topic"),
    ({"LOBSTREAM_KAFKA_RAW_TOPIC": "raw/frames"}, "kafka.raw_topic='raw/frames': a Kafka"),
    ({"LOBSTREAM_KAFKA_CONFIG": "bootstrap.servers=x:1"},
     "kafka.config: bootstrap.servers is set by lobstream"),
    ({"LOBSTREAM_KAFKA_CONFIG": "linger.ms"}, "kafka.config: 'linger.ms' is not KEY=VALUE"),
    ({"LOBSTREAM_KAFKA_START": "end"}, "kafka.start='end'; valid choices: earliest, latest"),
    ({"LOBSTREAM_INPUT": "kafka", "LOBSTREAM_REPLAY": "recordings"},
     "replay.paths and run.input=\"kafka\" both name the input"),
    ({"LOBSTREAM_KAFKA_TAILS": "1"}, "did you mean LOBSTREAM_KAFKA_TAIL?"),
])
def test_kafka_settings_errors_are_one_line(env, expected):
    with pytest.raises(ConfigError) as ex:
        load_config(env)
    assert expected in str(ex.value) and "\n" not in str(ex.value)


def test_capture_lines_carry_no_secret():
    """The raw topic is a capture: the authentication request the capture sends
    and the grant it receives go into it redacted, as a capture file's do."""
    secret, client = "s3cr3t-value-never-shown", "client-id-7"
    creds = Credentials("deribit", {"client_id": client, "client_secret": secret}, "test")
    feed = TappedFeed(VENUES["deribit"], ["BTC-PERPETUAL"], BadInput(), "deribit:test",
                      settings={"interval": "raw", CREDENTIALS: creds},
                      context=CaptureContext(600_000.0))
    lines: List[Any] = []
    messages = feed.connected(1.7e12)
    (auth,) = [m for m in messages if m["method"] == "public/auth"]
    assert auth["params"]["client_secret"] == secret  # what goes on the socket
    feed.outbox = []  # the transport takes them: send lines
    grant = orjson.dumps({"jsonrpc": "2.0", "id": auth["id"], "result": {
        "access_token": "AT-granted-token", "refresh_token": "RT-granted-token",
        "expires_in": 900, "token_type": "bearer", "scope": "session:x"}})
    feed.on_frame(grant, 1.7e12 + 5.0, lines)
    feed.outbox = []
    got = parsed(lines)
    assert {f.dir for f in got} >= {"send", "recv"}
    topic = b"\n".join(line for _, line in lines)
    for needle in (secret, "AT-granted-token", "RT-granted-token"):
        assert needle.encode() not in topic, needle
    assert b"<redacted>" in topic
