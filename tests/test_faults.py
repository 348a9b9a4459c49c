"""Each way an exchange connection goes wrong, against the real dataflow.

Every test runs lobstream as it runs live (``build_flow`` + ``run_main``) against
the local simulator with a :class:`FaultPlan` that injects one kind of fault, then
checks exactly what lobstream wrote: which product went invalid and why, that it
resynced, what it emitted and what it did not. Tests whose claim is "the other
products are unaffected" give each product its own connection
(``products_per_connection=1``); the ``shared`` tests put both products of a venue
on one connection, as the Deribit default does, and check what a fault of that
connection does to each of them. Counters are read from the run's
:class:`~sources.runtime.registry.Registry`.

"Correct" is defined by a clean reference: the same recordings replayed from file,
which the websocket path matches exactly when nothing goes wrong
(``test_websocket_flow``). A *valid run* is what a product emits from one
``synced`` status to the next ``invalid`` one; every valid run must be a contiguous
slice of the reference: its snapshot has the book the reference had after some
recorded update, and each following summary equals the reference's for the very
next recorded update. A summary from a stale or corrupted book cannot pass that.

Positions are 0-based indexes into a product's recorded book frames (the snapshot
is index 0); ``after=N`` hits index N. Each venue has its own simulator, paced so
that a resubscription is answered well before the recording (and so the
connection) ends, even while lobstream is busy with a 46,000-level snapshot: a
paced server that fell behind catches up in a burst, so the Deribit options, which
have only 66-70 frames each, get a slower pace. lobstream sends Deribit at most 2
control messages per second per connection (its request-credit limit), so a
resync there (unsubscribe + subscribe) can take a second; a test with two
resyncs of one option runs it slower still.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from dataflows.config import Config, VenueConfig
from dataflows.monitoring import LobstreamCollector
from dataflows.orderbook import BookStep, build_flow
from sources.capture.format import read_capture
from sources.feed.feed import Feed
from sources.runtime.registry import Registry
from sources.runtime.resync import Request, ResyncRequests
from sources.simulator import (Fault, FaultPlan, FaultRecord, FrameFilter, OutFrame,
                               Recording, SimulatorThread, load_recording)
from sources.venues import get_venue
from state.events import BookEvent, BookStatus
from tests.helpers import valid_runs, websocket_source

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = [ROOT / "recordings" / "coinbase_advanced_btc_eth.jsonl.gz",
            ROOT / "recordings" / "deribit_options.jsonl.gz"]
BTC, ETH = "BTC-USD", "ETH-USD"
#: The two Deribit options with the longest change chains (70 and 66 frames).
OPT, OPT2 = "ETH-9APR21-1950-C", "ETH-30APR21-2240-P"
PRODUCTS = (BTC, ETH, OPT, OPT2)
#: Connections each simulator gets at start with one product per connection.
INITIAL = 2
VENUE = {BTC: "coinbase", ETH: "coinbase", OPT: "deribit", OPT2: "deribit"}
#: Book frames per second per connection: BTC-USD's 400 frames take 1.3 s, the
#: options' 70 take 1.4 s.
COINBASE_RATE = 300
DERIBIT_RATE = 50
#: For two Deribit resyncs of one option 20 frames apart: 3.5 s per option.
DERIBIT_SLOW_RATE = 20

#: A summary's fields that describe the book, whatever update produced it.
BOOK_FIELDS = ("bid_px", "bid_sz", "ask_px", "ask_sz", "spread", "spread_bps", "mid",
               "microprice", "imbalance", "depth_imbalance", "bid_levels", "ask_levels")
#: ... and those that also depend on the update itself (a snapshot has no OFI;
#: a Coinbase snapshot's ts_exchange is the time the server sent it).
UPDATE_FIELDS = BOOK_FIELDS + ("ofi", "ts_exchange")

Records = Dict[str, List[Dict[str, Any]]]


# ------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def recording() -> Recording:
    return load_recording(CAPTURES)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Records:
    """Every product's summaries from a clean replay of the recordings."""
    out = tmp_path_factory.mktemp("reference")
    run_main(build_flow(Config(replay=[str(p) for p in CAPTURES], jsonl_dir=str(out))))
    return {p: summaries(recs) for p, recs in read_records(out).items()}


@pytest.fixture
def registry() -> Registry:
    """The run's registry: its feeds (one per connection) keep their counters."""
    return Registry()


def feed_of(registry: Registry, product: str) -> Feed:
    """The one connection's feed that carried ``product``."""
    (feed,) = [f for f in registry.feeds
               if f.venue.name == VENUE[product] and product in f.books]
    return feed


def feed_counts(registry: Registry, product: str) -> Counter:
    """The counters of the connection that carried ``product`` (the product's own
    where it has a connection to itself)."""
    return feed_of(registry, product).counts


def read_records(directory: Path) -> Records:
    """Per product, the book records (summaries and statuses) the jsonl sink wrote
    (``{venue}_{product}.jsonl``); trades, tickers and bars are not what these
    faults are about."""
    return {f.stem.split("_", 1)[1]: [r for r in map(orjson.loads, f.read_bytes().splitlines())
                                      if r["type"] in ("summary", "status")]
            for f in sorted(directory.glob("*.jsonl"))}


def summaries(recs: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [r for r in recs if r["type"] == "summary"]


def statuses(recs: Sequence[Dict[str, Any]]) -> List[Tuple[str, str]]:
    return [(r["state"], r["reason"]) for r in recs if r["type"] == "status"]


def status_records(recs: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [r for r in recs if r["type"] == "status"]


#: The fault tests are about books: Deribit's trades and ticker channels are left out.
DERIBIT_BOOKS = {"interval": "100ms", "trades": False, "tickers": False}


def run_flow(recording: Recording, tmp: Path, coinbase: Optional[FaultPlan] = None,
             deribit: Optional[FaultPlan] = None, *, registry: Optional[Registry] = None,
             resync: Optional[ResyncRequests] = None, coinbase_filters: Any = None,
             per_connection: int = 1, deribit_rate: float = DERIBIT_RATE,
             deribit_settings: Dict[str, Any] = DERIBIT_BOOKS,
             **kw: Any) -> Records:
    """Run lobstream on all of ``PRODUCTS`` until the recordings end; one simulator
    (with its own fault plan: connection numbers are per server) per venue, and
    ``per_connection`` products on each connection (1, or 2: both of the venue's)."""
    with SimulatorThread(recording, rate=COINBASE_RATE, faults=coinbase,
                         frame_filters=coinbase_filters, retime="none") as cb, \
            SimulatorThread(recording, rate=deribit_rate, faults=deribit, retime="none") as db:
        cfg = Config(venues={"coinbase": VenueConfig([BTC, ETH], cb.url + "/coinbase",
                                                     products_per_connection=per_connection),
                             "deribit": VenueConfig([OPT, OPT2], db.url + "/deribit",
                                                    deribit_settings, per_connection)},
                     exit_on_close=True, jsonl_dir=str(tmp), status_interval=0, **kw)
        run_main(build_flow(cfg, registry, resync))
    recs = read_records(tmp)
    assert sorted(recs) == sorted(PRODUCTS), "every product wrote output"
    return recs


def injected(*plans: FaultPlan) -> List[FaultRecord]:
    return [r for plan in plans for r in plan.injected]


def pick(summary: Dict[str, Any], names: Sequence[str]) -> Dict[str, Any]:
    return {k: summary[k] for k in names}


def align(run: Sequence[Dict[str, Any]], ref: Sequence[Dict[str, Any]]) -> int:
    """The index j such that ``run`` is the reference from j on: the run's snapshot
    has the book of ``ref[j]`` and its updates are ``ref[j+1:]`` exactly. Deribit
    runs must also carry the reference's ``change_id``."""
    deribit = run[0]["venue"] == "deribit"
    book_fields = BOOK_FIELDS + (("seq",) if deribit else ())
    update_fields = UPDATE_FIELDS + (("seq",) if deribit else ())
    for j, candidate in enumerate(ref):
        if pick(candidate, book_fields) != pick(run[0], book_fields):
            continue
        rest = ref[j + 1:j + len(run)]
        if len(rest) == len(run) - 1 and all(
                pick(a, update_fields) == pick(b, update_fields) for a, b in zip(run[1:], rest)):
            return j
    raise AssertionError(f"{run[0]['product']}: a valid run of {len(run)} summaries from "
                         f"{pick(run[0], book_fields)} matches no stretch of the reference")


def assert_clean(recs: Sequence[Dict[str, Any]], ref: Sequence[Dict[str, Any]]) -> None:
    """An unaffected product: synced once, then every reference summary."""
    assert statuses(recs) == [("synced", "snapshot")]
    runs = valid_runs(recs)
    assert align(runs[0], ref) == 0 and len(runs[0]) == len(ref)


def assert_resynced(recs: Sequence[Dict[str, Any]], ref: Sequence[Dict[str, Any]],
                    lost_from: Optional[int]) -> int:
    """One outage: the first valid run is the reference up to index ``lost_from``
    (excluded; None: wherever it ended), the second continues correctly from a
    fresh snapshot taken later and runs to the end of the recording. Returns the
    new snapshot's index."""
    first, second = valid_runs(recs)
    assert align(first, ref) == 0 and len(first) == (len(first) if lost_from is None
                                                      else lost_from)
    j = align(second, ref)
    assert j >= len(first) and j + len(second) == len(ref)
    return j


class RecordingPlan(FaultPlan):
    """A fault plan that also notes when each connection opened (epoch ms)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.opened: List[Tuple[float, str, int]] = []

    def frame_filter(self, venue: str, number: int) -> Optional[FrameFilter]:
        self.opened.append((time.time() * 1000.0, venue, number))
        return super().frame_filter(venue, number)


def initial(kind: str, product: str, connections: int = INITIAL, **kw: Any) -> List[Fault]:
    """``kind`` on ``product``'s first connection only, whichever number it gets:
    a server numbers connections in connect order across products (``connections``
    initial ones per venue), and a fault scoped to the product alone would fire
    again on every reconnect (each connection replays the recording from its start)."""
    return [Fault(kind, product=product, connection=n, **kw) for n in range(connections)]


def channel(product: str) -> str:
    """A Deribit option's book channel as run_flow subscribes it."""
    return f"book.{product}.100ms"


def sent(capture_dir: Path) -> List[Dict[str, Any]]:
    """What lobstream sent on its connections, from the capture it recorded."""
    return [f.msg for path in sorted(capture_dir.iterdir()) for f in read_capture(path)
            if f.dir == "send"]


# ------------------------------------------------------------------- stream faults


def test_drop_gaps_and_resyncs_only_that_product(recording, reference, tmp_path, registry):
    plan = FaultPlan([Fault("drop", product=BTC, after=100)])
    recs = run_flow(recording, tmp_path, plan, registry=registry)
    (fault,) = plan.injected
    assert (fault.venue, fault.product, fault.kind) == ("coinbase", BTC, "drop")
    btc = status_records(recs[BTC])
    assert [(s["state"], s["reason"]) for s in btc] == [
        ("synced", "snapshot"), ("invalid", "gap"), ("synced", "snapshot")]
    assert btc[1]["detail"] == f"sequence_num jumped from {fault.seq - 1} to {fault.seq + 1}"
    # Nothing from the book between the gap and the new snapshot; everything
    # after it equals the clean run for the same recorded update.
    assert assert_resynced(recs[BTC], reference[BTC], lost_from=100) > 100
    assert summaries(recs[BTC])[-1] | {"ts_recv": 0, "seq": 0} == \
        reference[BTC][-1] | {"ts_recv": 0, "seq": 0}
    for product in (ETH, OPT, OPT2):
        assert_clean(recs[product], reference[product])
    btc_counts = feed_counts(registry, BTC)
    assert (btc_counts["gaps"], btc_counts["resyncs"], btc_counts["connects"]) == (1, 1, 1)
    assert feed_counts(registry, ETH)["gaps"] == 0


def test_duplicate_is_dropped_and_counted(recording, reference, tmp_path, registry):
    cb, db = FaultPlan([Fault("duplicate", product=BTC, after=100)]), \
        FaultPlan([Fault("duplicate", product=OPT, after=20)])
    recs = run_flow(recording, tmp_path, cb, db, registry=registry)
    assert sorted((r.product, r.kind) for r in injected(cb, db)) == [
        (BTC, "duplicate"), (OPT, "duplicate")]
    for product in PRODUCTS:
        assert_clean(recs[product], reference[product])
    # Counted, as the Prometheus exporter shows it.
    exported = {(s.labels["stream"], s.labels["event"]): s.value
                for family in LobstreamCollector(registry).collect()
                if family.name == "lobstream_feed_events" for s in family.samples}
    assert exported[(BTC, "duplicates")] == 1 and exported[(OPT, "duplicates")] == 1
    assert (ETH, "duplicates") not in exported and (OPT2, "duplicates") not in exported
    assert not any(event == "gaps" for _, event in exported)


def test_swap_is_a_gap_and_the_late_frame_is_not_applied(recording, reference, tmp_path, registry):
    """Coinbase: the held-back frame's sequence_num is skipped, then comes late
    (inside the gap's hole: dropped, counted late). Deribit: the next frame's prev_change_id does not chain,
    then the late frame arrives while the book waits for its snapshot."""
    cb, db = FaultPlan([Fault("swap", product=BTC, after=100)]), \
        FaultPlan([Fault("swap", product=OPT2, after=20)])
    recs = run_flow(recording, tmp_path, cb, db, registry=registry)
    faults = {r.product: r for r in injected(cb, db)}
    assert sorted(faults) == [BTC, OPT2]
    change_ids = [f.payload["change_id"] for f in recording.deribit[OPT2]]
    assert faults[OPT2].seq == change_ids[20]
    for product, detail in (
            (BTC, f"sequence_num jumped from {faults[BTC].seq - 1} to {faults[BTC].seq + 1}"),
            (OPT2, f"update {change_ids[20]}->{change_ids[21]} does not follow {change_ids[19]}")):
        st = status_records(recs[product])
        assert [(s["state"], s["reason"]) for s in st] == [
            ("synced", "snapshot"), ("invalid", "gap"), ("synced", "snapshot")]
        assert st[1]["detail"] == detail
        assert_resynced(recs[product], reference[product],
                        lost_from=20 if product == OPT2 else 100)
    for product in (ETH, OPT):
        assert_clean(recs[product], reference[product])
    btc, opt2 = feed_counts(registry, BTC), feed_counts(registry, OPT2)
    assert (btc["gaps"], btc["resyncs"]) == (1, 1)
    assert btc["late"] == 1  # the late frame, inside the gap's hole
    assert (opt2["gaps"], opt2["resyncs"]) == (1, 1)
    assert opt2["dropped_unsynced"] >= 1  # the late frame, before the new snapshot


@pytest.mark.parametrize("per_connection", [1, 2], ids=["own_connection", "shared_connection"])
def test_deribit_change_id_gap_resyncs_that_instrument_only(recording, reference, tmp_path,
                                                            registry, per_connection):
    """A change_id gap resubscribes that instrument's book alone, also when both
    options share one connection (Deribit chains books per instrument): the other
    streams on untouched, update for update as in the clean replay. The resync
    names the book channel only: the instrument's trades and ticker subscriptions,
    which a book's gap says nothing about, stay as they are."""
    plan = FaultPlan([Fault("gap", product=OPT, after=20, frames=3)])
    captures = tmp_path / "captures"
    recs = run_flow(recording, tmp_path, deribit=plan, registry=registry,
                    per_connection=per_connection, record_dir=str(captures),
                    deribit_settings={"interval": "100ms"})
    change_ids = [f.payload["change_id"] for f in recording.deribit[OPT]]
    assert [(r.product, r.kind, r.seq) for r in plan.injected] == [
        (OPT, "gap", change_ids[i]) for i in (20, 21, 22)]
    st = status_records(recs[OPT])
    assert [(s["state"], s["reason"]) for s in st] == [
        ("synced", "snapshot"), ("invalid", "gap"), ("synced", "snapshot")]
    assert st[1]["detail"] == \
        f"update {change_ids[22]}->{change_ids[23]} does not follow {change_ids[19]}"
    j = assert_resynced(recs[OPT], reference[OPT], lost_from=20)
    assert summaries(recs[OPT])[-1]["seq"] == change_ids[-1] and j >= 23
    for product in (BTC, ETH, OPT2):
        assert_clean(recs[product], reference[product])
    counts = feed_counts(registry, OPT)
    assert (counts["gaps"], counts["resyncs"], counts["connects"]) == (1, 1, 1)
    shared = per_connection == 2
    assert (feed_of(registry, OPT) is feed_of(registry, OPT2)) == shared
    # What went out (captures in file order: OPT2's connection first when apart):
    # the subscription(s), each option's book with its trades and ticker, then the
    # resync of the broken option's book only.
    subscribed = [[OPT2, OPT]] if shared else [[OPT2], [OPT]]
    requests = [(m["method"], m["params"]["channels"]) for m in sent(captures)
                if m.get("method") in ("public/subscribe", "public/unsubscribe")]
    assert requests == [("public/subscribe", [name for p in products for name in (
        channel(p), f"trades.{p}.100ms", f"ticker.{p}.100ms")]) for products in subscribed] + [
        ("public/unsubscribe", [channel(OPT)]), ("public/subscribe", [channel(OPT)])]


# ------------------------------------------------------------- connection faults


@pytest.mark.parametrize("kind", ["close", "abort"])
def test_lost_connection_reconnects_quickly(recording, reference, tmp_path, registry, caplog, kind):
    """A clean close (1011) or a dropped TCP connection on BTC-USD and on one Deribit
    option: each goes invalid "disconnected", reconnects within a second, and its
    new connection (which replays the recording from its start) resyncs."""
    plans = {BTC: RecordingPlan(initial(kind, BTC, after=100)),
             OPT: RecordingPlan(initial(kind, OPT, after=20))}
    with caplog.at_level(logging.WARNING, logger="lobstream.websocket"):
        recs = run_flow(recording, tmp_path, plans[BTC], plans[OPT], registry=registry)
    faults = {r.product: r for r in injected(*plans.values())}
    assert sorted(faults) == [BTC, OPT] and len(injected(*plans.values())) == 2
    for product, cut in ((BTC, 100), (OPT, 20)):
        st = status_records(recs[product])
        assert [(s["state"], s["reason"]) for s in st] == [
            ("synced", "snapshot"), ("invalid", "disconnected"), ("synced", "snapshot")]
        detail = st[1]["detail"]
        assert detail.startswith("connection lost")
        assert ("1011" in detail) if kind == "close" else ("no close frame" in detail)
        first, second = valid_runs(recs[product])
        # Everything up to and including the frame the fault followed, then the
        # whole recording again on the new connection.
        assert align(first, reference[product]) == 0 and len(first) == cut + 1
        assert align(second, reference[product]) == 0 and len(second) == len(reference[product])
        # The first retry: the new connection opened well within a second.
        fault = faults[product]
        reconnects = [t for t, venue, n in plans[product].opened if n >= INITIAL]
        assert len(reconnects) == 1
        assert 0 < reconnects[0] - fault.t_ms < 1000
        delays = [r.args[2] for r in caplog.records if r.args and r.args[0].endswith(product)]
        assert len(delays) == 1 and 0.125 <= delays[0] <= 0.25
        assert feed_counts(registry, product)["connects"] == 2
    for product in (ETH, OPT2):
        assert_clean(recs[product], reference[product])
        assert feed_counts(registry, product)["connects"] == 1


def test_stall_without_pings_trips_the_silence_watchdog(recording, reference, tmp_path, registry):
    """The server goes silent (no data, no heartbeats, pings unanswered) for 5 s; with
    a 2 s silence timeout lobstream gives up on the connection and reconnects at
    once. The stall outlasts the timeout plus the 2 s a close handshake may take, so
    a client that waited for one would report a lost connection, not the silence,
    and one that kept reading would apply the frames the server sends when it
    wakes up (the first run would be longer than the frames before the stall)."""
    cb = FaultPlan(initial("stall", BTC, after=100, duration=5.0, pings=False))
    db = FaultPlan(initial("stall", OPT, after=20, duration=5.0, pings=False))
    recs = run_flow(recording, tmp_path, cb, db, silence_timeout=2.0, registry=registry)
    assert sorted(r.product for r in injected(cb, db)) == [BTC, OPT]
    for product, cut in ((BTC, 100), (OPT, 20)):
        st = status_records(recs[product])
        assert [(s["state"], s["reason"]) for s in st] == [
            ("synced", "snapshot"), ("invalid", "disconnected"), ("synced", "snapshot")]
        assert st[1]["detail"] == "no traffic for 2 s"
        first, second = valid_runs(recs[product])
        assert align(first, reference[product]) == 0 and len(first) == cut + 1
        assert align(second, reference[product]) == 0 and len(second) == len(reference[product])
        assert feed_counts(registry, product)["connects"] == 2
    for product in (ETH, OPT2):
        assert_clean(recs[product], reference[product])


def test_refused_handshakes_are_retried_with_backoff(recording, reference, tmp_path, registry,
                                                    caplog):
    """For a while every handshake fails: HTTP 503 on Coinbase (2.5 s), a TCP reset
    on Deribit (4.5 s: its connection rate is half Coinbase's, so its two
    connections take 3.5 s for three retries each). Each window has a second to
    spare for the flow's start-up, which took 0.7 s on a loaded machine and left
    room for only four Coinbase attempts in 1.5 s. lobstream retries with
    growing delays, never faster than the venue's connection rate, connects once
    the server takes connections again, and streams as if nothing had happened."""
    cb, db = FaultPlan(), FaultPlan()
    refusing = {"coinbase": 2.5, "deribit": 4.5}
    started = time.time() * 1000.0
    cb.refuse("coinbase", refusing["coinbase"], "http")
    db.refuse("deribit", refusing["deribit"], "reset")
    with caplog.at_level(logging.WARNING, logger="lobstream.websocket"):
        recs = run_flow(recording, tmp_path, cb, db, registry=registry)
    refused: Dict[str, List[float]] = {}
    for venue, seconds in refusing.items():
        times = refused[venue] = sorted(r.t_ms for r in injected(cb, db)
                                        if r.kind == "refuse" and r.venue == venue)
        assert len(times) >= 2 * 3
        assert times[-1] - started < seconds * 1000.0 + 100
        # The venue's connection limiter (burst 1): the k-th attempt comes at least
        # k / rate after the first, for both connections together.
        rate = get_venue(venue).limits.connects_per_second
        assert times[-1] - times[0] >= (len(times) - 1) / rate * 1000.0 - 200, (venue, times)
    retried: Counter = Counter()
    for product in PRODUCTS:
        assert_clean(recs[product], reference[product])  # no "disconnected": never synced
        assert feed_counts(registry, product)["connects"] == 1
        retries = [r.args for r in caplog.records if r.args and r.args[0].endswith(product)]
        reasons = {args[1] for args in retries}
        if VENUE[product] == "coinbase":
            assert all("HTTP 503" in reason for reason in reasons), reasons
        delays = [args[2] for args in retries]
        # At least three retries, each after a delay drawn from the upper half of
        # a ceiling that doubles from 0.25 s.
        assert len(delays) >= 3
        for k, delay in enumerate(delays):
            assert 0.125 * 2 ** k <= delay <= 0.25 * 2 ** k
        retried[VENUE[product]] += len(delays)
    # Every refused handshake was retried, and nothing else was.
    assert retried == {venue: len(times) for venue, times in refused.items()}


# ------------------------------------------------------------- shared connections


@pytest.mark.parametrize("kind", ["close", "abort"])
def test_shared_connection_lost_disconnects_each_product_once(recording, reference, tmp_path,
                                                              registry, caplog, kind):
    """Both products of each venue on one connection, and that connection closed
    (1011) or cut: each product on it gets one "disconnected" status, the new
    connection (which replays the recording from its start) resyncs both, and both
    then stream the whole clean run."""
    cb = RecordingPlan(initial(kind, BTC, connections=1, after=100))
    db = RecordingPlan(initial(kind, OPT, connections=1, after=20))
    with caplog.at_level(logging.WARNING, logger="lobstream.websocket"):
        recs = run_flow(recording, tmp_path, cb, db, registry=registry, per_connection=2)
    assert sorted((r.product, r.kind) for r in injected(cb, db)) == [(BTC, kind), (OPT, kind)]
    for plan, (hit, other), cut in ((cb, (BTC, ETH), 100), (db, (OPT, OPT2), 20)):
        for product in (hit, other):
            st = status_records(recs[product])
            assert [(s["state"], s["reason"]) for s in st] == [
                ("synced", "snapshot"), ("invalid", "disconnected"), ("synced", "snapshot")]
            detail = st[1]["detail"]
            assert ("1011" in detail) if kind == "close" else ("no close frame" in detail)
            first, second = valid_runs(recs[product])
            assert align(first, reference[product]) == 0
            assert len(first) == cut + 1 if product == hit else \
                0 < len(first) < len(reference[product])
            assert align(second, reference[product]) == 0
            assert len(second) == len(reference[product])
        feed = feed_of(registry, hit)
        assert feed is feed_of(registry, other)
        assert (feed.counts["connects"], feed.counts["resyncs"]) == (2, 0)
        assert len([n for _, _, n in plan.opened if n >= 1]) == 1  # one reconnect
        retries = [r for r in caplog.records if r.args and r.args[0] == feed.stream]
        assert len(retries) == 1


def test_shared_coinbase_drop_resyncs_both_products(recording, reference, tmp_path, registry):
    """BTC-USD and ETH-USD on one Coinbase connection (``products_per_connection=2``):
    ``sequence_num`` counts the connection's frames, so a dropped BTC-USD frame is
    a gap of both books, and both resync; each then continues as the clean run."""
    plan = FaultPlan([Fault("drop", product=BTC, after=100)])
    recs = run_flow(recording, tmp_path, plan, registry=registry, per_connection=2)
    (fault,) = plan.injected
    assert (fault.product, fault.kind) == (BTC, "drop")
    detail = f"sequence_num jumped from {fault.seq - 1} to {fault.seq + 1}"
    for product in (BTC, ETH):
        st = status_records(recs[product])
        assert [(s["state"], s["reason"], s["detail"]) for s in st[1:]] == [
            ("invalid", "gap", detail), ("synced", "snapshot", st[2]["detail"])]
        assert_resynced(recs[product], reference[product],
                        lost_from=100 if product == BTC else None)
    for product in (OPT, OPT2):
        assert_clean(recs[product], reference[product])
    feed = feed_of(registry, BTC)
    assert feed is feed_of(registry, ETH) and feed.stream == f"coinbase:{BTC}+1"
    assert (feed.counts["gaps"], feed.counts["resyncs"], feed.counts["connects"],
            feed.counts["snapshots"]) == (2, 2, 1, 4)


# ------------------------------------------------------------------- bad input


def test_bad_input_is_counted_logged_once_and_never_crashes(recording, reference, tmp_path, registry,
                                                           caplog):
    """Malformed frames and unknown message types are skipped (three of each per
    venue, each kind logged once with a sample); a frame with a broken size (negative,
    NaN, text) invalidates only its product, which resyncs each time."""
    cb = FaultPlan([
        Fault("malformed", product=BTC, after=30, every=100, count=3),
        Fault("unknown_type", product=BTC, after=60, every=100, count=3),
        Fault("bad_size", product=ETH, after=75, value="negative"),
        Fault("bad_size", product=ETH, after=150, value="nan"),
        Fault("bad_size", product=ETH, after=225, value="text"),
    ])
    db = FaultPlan([
        Fault("malformed", product=OPT, after=5, every=15, count=3),
        Fault("unknown_type", product=OPT, after=10, every=15, count=3),
        Fault("bad_size", product=OPT2, after=10, value="nan"),
        Fault("bad_size", product=OPT2, after=30, value="text"),
    ])
    with caplog.at_level(logging.WARNING, logger="lobstream.input"):
        recs = run_flow(recording, tmp_path, cb, db, registry=registry,
                        deribit_rate=DERIBIT_SLOW_RATE)
    assert Counter((r.product, r.kind) for r in injected(cb, db)) == {
        (BTC, "malformed"): 3, (BTC, "unknown_type"): 3, (OPT, "malformed"): 3,
        (OPT, "unknown_type"): 3, (ETH, "bad_size"): 3, (OPT2, "bad_size"): 2}

    # Skipped frames cost nothing: no status, no lost update, no false gap (on
    # Coinbase the unknown message took a sequence_num, the truncated copy none).
    for product in (BTC, OPT):
        assert_clean(recs[product], reference[product])
        counts = feed_counts(registry, product)
        assert (counts["bad_malformed"], counts["bad_unknown_type"]) == (3, 3)
        assert counts["gaps"] == 0 and counts["resyncs"] == 0

    # A broken size: the product goes invalid "bad_input" and resyncs, every time.
    for product, n in ((ETH, 3), (OPT2, 2)):
        st = status_records(recs[product])
        assert [(s["state"], s["reason"]) for s in st] == \
            [("synced", "snapshot")] + [("invalid", "bad_input"), ("synced", "snapshot")] * n
        assert all(s["detail"].startswith("bad_level: ") for s in st[1::2])
        runs = valid_runs(recs[product])
        starts = [align(run, reference[product]) for run in runs]
        assert starts[0] == 0 and starts == sorted(starts)
        assert starts[-1] + len(runs[-1]) == len(reference[product])
        counts = feed_counts(registry, product)
        # Counted as invalidations for bad input, not as sequence gaps.
        assert (counts["bad_bad_level"], counts["invalid_bad_input"], counts["resyncs"]) == \
            (n, n, n)
        assert counts["gaps"] == 0
    # The detail says what was wrong, and where in the frame.
    negative, nan, text = (status_records(recs[ETH])[i]["detail"] for i in (1, 3, 5))
    assert "Expected `float` >= 0.0" in negative and "new_quantity" in negative
    assert "Expected `float` >= 0.0" in nan and "new_quantity" in nan
    assert "Expected `float`, got `str`" in text and "new_quantity" in text

    warnings = [r.getMessage() for r in caplog.records if r.name == "lobstream.input"]
    kinds = Counter(re.match(r"(\w+): skipped (\w+) frame ", m).groups() for m in warnings)
    assert kinds == {("coinbase", "malformed"): 1, ("coinbase", "unknown_type"): 1,
                     ("coinbase", "bad_level"): 1, ("deribit", "malformed"): 1,
                     ("deribit", "unknown_type"): 1, ("deribit", "bad_level"): 1}
    assert all("; sample: " in m for m in warnings)
    assert all(r.levelno == logging.WARNING for r in caplog.records if r.name == "lobstream.input")


def test_oversized_frame_is_accepted(recording, reference, tmp_path, registry):
    """2 MiB frames (websockets' default limit is 1 MiB; lobstream allows 64 MiB)."""
    cb, db = FaultPlan([Fault("oversized", product=BTC, after=100)]), \
        FaultPlan([Fault("oversized", product=OPT, after=20, size=3 * 2**20)])
    recs = run_flow(recording, tmp_path, cb, db, registry=registry)
    assert sorted(r.product for r in injected(cb, db)) == [BTC, OPT]
    for product in PRODUCTS:
        assert_clean(recs[product], reference[product])
        counts = feed_counts(registry, product)
        assert counts["connects"] == 1
        assert not any(k.startswith("bad_") for k in counts)


# ---------------------------------------------------------------- error replies


def test_refused_subscription_stops_that_product_only(recording, reference, tmp_path, registry,
                                                      caplog):
    """A product the exchange does not have is refused on every channel: Coinbase
    subscribes ``level2`` and ``market_trades`` in messages of their own, and both
    are refused (``every=1``; refusing only the first let its trades stream on
    beside a refused book). Deribit subscribes in one request."""
    cb = FaultPlan([Fault("error", product=BTC, every=1)])
    db = FaultPlan([Fault("error", product=OPT)])
    with caplog.at_level(logging.WARNING):
        recs = run_flow(recording, tmp_path, cb, db, registry=registry)
    assert sorted((r.product, r.kind) for r in injected(cb, db)) == [
        (BTC, "error"), (BTC, "error"), (OPT, "error")]
    for product, detail, refusals in ((BTC, f"Failed to subscribe: {BTC} is not available", 2),
                                      (OPT, "11050 bad_request", 1)):
        assert [(r["type"], r["state"], r["reason"], r["detail"]) for r in recs[product]] == [
            ("status", "invalid", "refused", detail)]
        # Nothing else at all: no trades, tickers or bars of a refused product.
        assert (tmp_path / f"{VENUE[product]}_{product}.jsonl").read_bytes().count(b"\n") == 1
        errors = [r.getMessage() for r in caplog.records
                  if r.levelno == logging.ERROR and product in r.getMessage()]
        assert len(errors) == 1
        assert errors[0].startswith(f"{VENUE[product]} refused {product}: {detail} -> ")
        # No reconnect loop: the partition ended after its one connection.
        counts = feed_counts(registry, product)
        assert (counts["connects"], counts["errors"]) == (1, refusals)
    for product in (ETH, OPT2):
        assert_clean(recs[product], reference[product])
    assert not [r for r in caplog.records if r.name == "lobstream.websocket"]  # no reconnects


def test_deribit_raw_without_auth_is_refused_with_a_hint(recording, caplog, registry):
    """The configuration refuses ``raw``; a source built directly shows what the
    server says: 13778 for the whole request (both instruments share the
    connection, as by default), logged once, and lobstream points to 100ms. The
    connection then ends instead of reconnecting."""
    got: List[Any] = []
    resync = ResyncRequests()
    with SimulatorThread(recording, rate=DERIBIT_RATE) as sim:
        source = websocket_source("deribit", [OPT, OPT2], sim.url + "/deribit",
                                  {"interval": "raw"}, exit_on_close=True, registry=registry,
                                  resync=resync)
        flow = Dataflow("raw")
        books = op.stateful("book", op.input("in", flow, source),
                            BookStep(10, 10.0, resync, registry))
        op.output("out", books, TestingSink(got))
        with caplog.at_level(logging.WARNING):
            run_main(flow)
    detail = "13778 raw_subscriptions_not_available_for_unauthorized"
    assert sorted((k, r["type"], r["state"], r["reason"], r["detail"]) for k, r in got) == [
        (f"deribit:{p}", "status", "invalid", "refused", detail) for p in sorted((OPT, OPT2))]
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert f"deribit refused {OPT2}, {OPT}: {detail} -> " in errors[0] and "100ms" in errors[0]
    (feed,) = registry.feeds
    assert sorted(feed.books) == sorted((OPT, OPT2)) and sorted(feed.refused) == sorted(feed.books)
    assert (feed.counts["connects"], feed.counts["errors"]) == (1, 1)
    assert not [r for r in caplog.records if r.name == "lobstream.websocket"]  # no reconnects


# ------------------------------------------------------------------ crossed book


def crossing_filters(reference: Records, index: int, sent: List[str]) -> Any:
    """A :data:`FilterFactory` that adds, to BTC-USD's recorded update ``index``, a bid
    one dollar above the best ask the book has after that update. It also notes
    each BTC-USD snapshot sent (the recorded one, then generated ones)."""
    ask = reference[BTC][index]["ask_px"]
    seen = [0]

    async def cross(frame: OutFrame) -> Sequence[OutFrame]:
        if frame.product != BTC or frame.kind != "book":
            return [frame]
        event = frame.msg["events"][0]
        if event["type"] == "snapshot":
            sent.append(event["updates"][0]["event_time"])
        seen[0] += 1
        if seen[0] - 1 != index:
            return [frame]
        msg = orjson.loads(orjson.dumps(frame.msg))  # the payload is the recording's own
        msg["events"][0]["updates"].append({
            "side": "bid", "event_time": event["updates"][0]["event_time"],
            "price_level": repr(ask + 1.0), "new_quantity": "0.5"})
        frame.msg = msg
        return [frame]

    return lambda venue, number: cross if venue == "coinbase" else None


class TracedResync(ResyncRequests):
    """The flow's real resync requests, noting each request the book step made and
    each one a source partition took."""

    def __init__(self) -> None:
        super().__init__()
        self.requested: List[Request] = []
        self.taken: List[Request] = []

    def request(self, venue: str, product: str, reason: str, detail: str) -> None:
        self.requested.append((venue, product, reason, detail))
        super().request(venue, product, reason, detail)

    def take(self, owned: "set[Tuple[str, str]]") -> List[Request]:
        got = super().take(owned)
        self.taken += got
        return got


def test_crossed_book_alerts_invalidates_and_resyncs(recording, reference, tmp_path, registry,
                                                     capsys):
    index = 150
    ask = reference[BTC][index]["ask_px"]
    snapshots: List[str] = []
    resync = TracedResync()
    recs = run_flow(recording, tmp_path, registry=registry, resync=resync,
                    coinbase_filters=crossing_filters(reference, index, snapshots))
    detail = f"bid {ask + 1.0} > ask {ask}"
    st = status_records(recs[BTC])
    assert [(s["state"], s["reason"], s["detail"]) for s in st[1:]] == [
        ("invalid", "crossed", detail), ("synced", "snapshot", st[2]["detail"])]
    # No summary from the crossed book (the crossing update produced none) nor
    # after it until the new snapshot; then the book is the clean one again.
    assert_resynced(recs[BTC], reference[BTC], lost_from=index)
    assert all(s["bid_px"] < s["ask_px"] for s in summaries(recs[BTC]))
    console = capsys.readouterr().out.splitlines()
    crossed = [line for line in console if "CROSSED" in line]
    assert len(crossed) == 1 and f"coinbase:{BTC}  {detail}" in crossed[0]
    # The book step asked for the resync through ResyncRequests, the source
    # partition owning BTC-USD's connection took the request and resubscribed:
    # the server sent a second snapshot.
    assert resync.requested == [("coinbase", BTC, "crossed", detail)]
    assert resync.taken == resync.requested
    assert len(snapshots) == 2
    counts = feed_counts(registry, BTC)
    assert (counts["resyncs"], counts["connects"], counts["snapshots"]) == (1, 1, 2)
    for product in (ETH, OPT, OPT2):
        assert_clean(recs[product], reference[product])


# ------------------------------------------------------------- regressions (soak)


def test_broken_snapshot_is_requested_again(recording, reference, tmp_path, registry):
    """The snapshot itself has a broken size: lobstream rejects it and subscribes
    again (it used to wait for a snapshot that never came, the product silently
    dead, because only a synced book was resubscribed on bad input)."""
    cb, db = FaultPlan([Fault("bad_size", product=BTC)]), FaultPlan([Fault("bad_size", product=OPT)])
    recs = run_flow(recording, tmp_path, cb, db, registry=registry)
    assert sorted((r.product, r.kind) for r in injected(cb, db)) == [
        (BTC, "bad_size"), (OPT, "bad_size")]
    for product in (BTC, OPT):
        # Never valid before, so no "invalid" status: the first record is the
        # "synced" from the new snapshot, and the book is right from there on.
        assert statuses(recs[product]) == [("synced", "snapshot")]
        (run,) = valid_runs(recs[product])
        assert align(run, reference[product]) + len(run) == len(reference[product])
        counts = feed_counts(registry, product)
        assert (counts["bad_bad_level"], counts["resyncs"], counts["snapshots"]) == (1, 1, 1)
    for product in (ETH, OPT2):
        assert_clean(recs[product], reference[product])


def test_lost_snapshot_is_requested_again(recording, reference, tmp_path, registry):
    """The first frame, the snapshot, never arrives. Coinbase shows it in
    sequence_num; on Deribit the subscribe was confirmed, so an update arriving
    first means the snapshot was lost (the book used to wait for it forever,
    dropping every update, while the stream went on)."""
    cb, db = FaultPlan([Fault("drop", product=BTC)]), FaultPlan([Fault("drop", product=OPT)])
    recs = run_flow(recording, tmp_path, cb, db, registry=registry)
    assert sorted((r.product, r.kind) for r in injected(cb, db)) == [(BTC, "drop"), (OPT, "drop")]
    for product in (BTC, OPT):
        assert statuses(recs[product]) == [("synced", "snapshot")]
        (run,) = valid_runs(recs[product])
        assert align(run, reference[product]) + len(run) == len(reference[product])
        counts = feed_counts(registry, product)
        assert (counts["gaps"], counts["resyncs"], counts["snapshots"]) == (1, 1, 1)
    for product in (ETH, OPT2):
        assert_clean(recs[product], reference[product])


def test_gap_found_as_the_connection_ends_does_not_crash(recording):
    """A gap shows in the last frames before the server closes at the end of input:
    the resubscription has no connection left and is dropped. Sending it on the
    finished connection's closed event loop used to raise in ``next_batch`` and
    take the whole dataflow down."""
    plan = FaultPlan([Fault("drop", product=OPT2, after=len(recording.deribit[OPT2]) - 2)])
    registry = Registry()
    with SimulatorThread(recording, speed=0, faults=plan) as sim:
        source = websocket_source("deribit", [OPT2], sim.url + "/deribit", DERIBIT_BOOKS,
                                  exit_on_close=True,
                                  batch_size=1, registry=registry)
        part = source.build("in", 0, 1)
        out: List[Any] = []
        for _ in range(1000):  # subscribe, then wait for the snapshot
            out += part.next_batch()
            if any(isinstance(item, BookEvent) for _, item in out):
                break
            time.sleep(0.01)
        part._thread.join(10)  # the server sent the rest and closed; the loop is gone
        assert not part._thread.is_alive()
        with pytest.raises(StopIteration):
            for _ in range(1000):
                out += part.next_batch()  # the gap, then the end of input
        part.close()
    assert [(s.state, s.reason) for _, s in out if isinstance(s, BookStatus)] == \
        [("invalid", "gap")]
    (feed,) = registry.feeds
    assert feed.counts["resyncs"] == 1
