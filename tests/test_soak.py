"""Soak: the real dataflow against all three simulated venues, with random faults,
for about a minute (``--soak-seconds`` or ``LOBSTREAM_SOAK_SECONDS`` for longer).

Each round runs lobstream (``build_flow`` + ``run_main``: Coinbase Advanced Trade
BTC-USD and ETH-USD, the ten Deribit options, the ten Coinbase Exchange products)
until every recording has been served, against simulators whose seeded fault plans
drop, duplicate, swap, skip and break frames, add malformed and unknown ones, and
now and then close or cut a connection (which then replays from its start). Rounds
repeat until the time is up, alternating two placements (:data:`PLACEMENTS`): the
venues' defaults (Coinbase one product per connection, the Deribit options on one
connection, the Coinbase Exchange products on one), and the other way round
(BTC-USD and ETH-USD sharing a connection, every option and Exchange product on a
connection of its own). After each round every product's output is checked
against a clean replay of the recordings:

* no summary has a crossed (or locked) book, and no crossed alert is raised;
* no summary comes from a stale book: every valid run (``synced`` to ``invalid``)
  is a contiguous stretch of the clean run, summary for summary. A snapshot may
  also arrive while the book is valid: on Coinbase a second gap found while a
  resync is pending resubscribes again, and the second snapshot must then hold the
  book the clean run has from where the run had got to;
* statuses alternate ``synced``/``invalid``, and each ``invalid`` has its own cause:
  for ``gap`` a drop, swap or gap that hit a frame inside the reported sequence
  hole, for ``bad_input`` a broken size of that product (on Coinbase Exchange,
  where nothing numbers book messages, also a malformed frame on its connection,
  which may have been any book's update), for ``disconnected`` a close or abort of
  a connection carrying it. A gap's fault is on the product
  itself, except where the venue numbers frames per connection (Coinbase), where
  it may be on any product of the connection. So nothing outside that reach is
  ever disturbed (a Deribit gap never touches the other options on the
  connection), and skipped frames (malformed, unknown types, duplicates) never
  cause a false gap;
* each drop, swap or gap that a later frame could reveal (one of that product, or
  on Coinbase any frame of the connection) is followed by an outage of every
  product it reaches; every outage ends with ``synced``, unless the recording ended
  (and the server closed) before the resubscription was answered, in which case the
  server must have stopped sending that product within ``GRACE_MS`` of it;
* every trade is written once, and only trades the recording holds, though each
  reconnect replays the recording, trades included, from its start;
* every round ends by itself; a product writes nothing only if none of its
  snapshots got through (a one-frame option whose only frame was dropped);
* memory stays flat.

Connections are paced (frames per second each, per placement): unpaced, a whole
recording is on the wire before a resubscription could be answered, and nothing
would ever resync. Past what the one-threaded simulators and lobstream can serve
together on two cores, a simulator catching up stops reading its sockets, answers
resubscriptions late and so blurs the check above. Fault rates are set so that
resyncs stay well within what lobstream may send on a connection (a resync is an
unsubscribe and a subscribe per product; 4 control messages/s on Coinbase and
Coinbase Exchange, 2 on Deribit): past that, resubscriptions queue, are answered
seconds late, and a product can stream on unsynced past the end check's
``GRACE_MS``, as it would live against an exchange's limits. Coinbase Exchange's
``level2_batch`` has no sequence numbers, so a lost, repeated or reordered update
cannot be seen there (see :mod:`sources.venues.coinbase_exchange`); it only gets the
faults a client can detect.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import orjson
import pytest
from bytewax.testing import run_main

from dataflows.config import Config, VenueConfig
from dataflows.orderbook import build_flow
from sources.simulator import (Fault, FaultPlan, FaultRecord, FrameFilter, OutFrame,
                               SimulatorThread, load_recording, random_faults)
from sources.runtime.registry import Registry
from sources.simulator.faults import BAD_SIZE, MALFORMED, UNKNOWN_TYPE
from sources.venues import get_venue

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "recordings"
CAPTURES = [RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz",
            RECORDINGS / "deribit_options.jsonl.gz",
            RECORDINGS / "coinbase_exchange_level2.jsonl.gz"]
SEED = 20260809

#: Per venue: products, path on the simulator and settings.
VENUES: Dict[str, Dict[str, Any]] = {
    "coinbase": dict(path="/coinbase", settings={}, products=["BTC-USD", "ETH-USD"]),
    "deribit": dict(
        path="/deribit", settings={"interval": "100ms", "trades": False, "tickers": False},
        products=["BTC-25MAR22-400000-C", "BTC-30APR21-20000-C", "BTC-31DEC21-300000-P",
                  "ETH-16APR21-1400-P", "ETH-16APR21-1600-C", "ETH-23APR21-2000-C",
                  "ETH-24SEP21-320-P", "ETH-30APR21-2240-P", "ETH-6APR21-2400-P",
                  "ETH-9APR21-1950-C"]),
    "coinbase_exchange": dict(
        path="/coinbase-exchange", settings={"channel": "level2_batch"},
        products=["BAND-BTC", "BAND-GBP", "CRV-EUR", "DASH-BTC", "NMR-EUR", "NU-GBP",
                  "SKL-BTC", "SKL-GBP", "SKL-USD", "YFI-BTC"]),
}
#: Coinbase Exchange gets only the faults a client can detect there. A malformed
#: frame may have been any book's update, so it resyncs every book on its
#: connection: on the connection all ten share, each one would queue twenty
#: resubscription messages (five seconds of what lobstream may send), so there
#: it is left out; on connections of their own it is one resync like any other.
EXCHANGE_KINDS = (MALFORMED, UNKNOWN_TYPE, BAD_SIZE)
SHARED_EXCHANGE_KINDS = (UNKNOWN_TYPE, BAD_SIZE)


def faults(rate: float, close: float, kinds: Sequence[str] = ()) -> List[Fault]:
    """Random stream faults on about ``rate`` of the book frames, and a close and an
    abort each with probability ``close`` per book frame."""
    return random_faults(rate, *((kinds,) if kinds else ())) + [
        Fault("close", probability=close), Fault("abort", probability=close)]


#: Per round (alternating), per venue: products per connection (0: the venue's
#: default), book frames per second per connection, and the fault plan. A shared
#: connection carries the frames of all its products, so it is paced faster and
#: gets rarer faults: each of them concerns as many products, and their resyncs
#: share the one connection's message budget.
PLACEMENTS: Tuple[Dict[str, Dict[str, Any]], ...] = (
    {"coinbase": dict(per_connection=0, rate=150, faults=faults(0.01, 1 / 2000)),
     "deribit": dict(per_connection=0, rate=40, faults=faults(0.02, 1 / 1000)),
     "coinbase_exchange": dict(per_connection=0, rate=2000,
                               faults=faults(0.001, 1 / 50000, SHARED_EXCHANGE_KINDS))},
    {"coinbase": dict(per_connection=2, rate=200, faults=faults(0.005, 1 / 4000)),
     "deribit": dict(per_connection=1, rate=100, faults=faults(0.05, 1 / 400)),
     "coinbase_exchange": dict(per_connection=1, rate=300,
                               faults=faults(0.003, 1 / 20000, EXCHANGE_KINDS))},
)
#: What may cause each reason of an ``invalid`` status.
CAUSES = {"gap": {"drop", "swap", "gap"}, "bad_input": {"bad_size", MALFORMED},
          "disconnected": {"close", "abort"}}
#: Faults that concern every product of the connection they hit.
CONNECTION_FAULTS = {"close", "abort"}
#: Where nothing numbers the book messages (Coinbase Exchange), an unreadable
#: frame may have been any book's lost update: every book on its connection
#: resyncs (:meth:`sources.feed.feed.Feed._unattributed`).
UNNUMBERED_FAULTS = {MALFORMED}
#: Faults after which the product must go through an outage, if a later frame of
#: it shows the hole. (A broken size may not matter: Deribit sends a size with a
#: level's removal, and lobstream, rightly, ignores it.)
GAP_FAULTS = {"drop", "swap", "gap"}
RESYNC_FAULTS = GAP_FAULTS | {"bad_size"}
#: An outage may stay open at the end of a round only if the server stopped sending
#: the product (the recording was over) within this long of it starting.
GRACE_MS = 2000.0
#: The last third of the run may use this much more memory at peak than the first.
RSS_SLACK_MB = 30.0

BOOK_FIELDS = ("bid_px", "bid_sz", "ask_px", "ask_sz", "spread", "spread_bps", "mid",
               "microprice", "imbalance", "depth_imbalance", "bid_levels", "ask_levels")
UPDATE_FIELDS = BOOK_FIELDS + ("ofi", "ts_exchange")

Key = Tuple[str, str]  # (venue, product)
Records = Dict[Key, List[Dict[str, Any]]]


class TappedPlan(FaultPlan):
    """A fault plan that also notes, per connection, its products and when it last
    put a book frame of each on the wire (epoch ms)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.products_of: Dict[int, set] = {}
        self.last_book: Dict[Tuple[int, str], float] = {}

    def frame_filter(self, venue: str, number: int) -> Optional[FrameFilter]:
        inner = super().frame_filter(venue, number)

        async def tap(frame: OutFrame) -> List[OutFrame]:
            out = list([frame] if inner is None else await inner(frame))
            if frame.kind == "book":
                product = frame.product or ""
                self.products_of.setdefault(number, set()).add(product)
                if any(o.kind == "book" for o in out):
                    self.last_book[(number, product)] = time.time() * 1000.0
            return out

        return tap

    def connections_of(self, product: str) -> List[int]:
        return [n for n, products in self.products_of.items() if product in products]

    def last_sent(self, number: int, product: Optional[str] = None) -> float:
        """When connection ``number`` last sent a book frame (of ``product``, if given)."""
        return max((t for (n, p), t in self.last_book.items()
                    if n == number and product in (None, p)), default=0.0)

    def reaching(self, venue: str, product: str) -> List[FaultRecord]:
        """The injected faults that can concern ``product``: its own, and those on a
        connection carrying it that concern the whole connection (closes and
        aborts; on a venue with one counter per connection, any lost frame; on one
        that numbers nothing, any unreadable frame)."""
        mine = set(self.connections_of(product))
        spec = get_venue(venue)
        wide = CONNECTION_FAULTS | (GAP_FAULTS if spec.connection_sequence else set()) | (
            UNNUMBERED_FAULTS if spec.book_chain is None and not spec.connection_sequence
            else set())
        return [r for r in self.injected if r.product == product
                or (r.connection in mine and r.kind in wide)]


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


class RssSampler(threading.Thread):
    """This process's RSS (MB) every ``interval`` seconds."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self.samples: List[float] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.samples.append(rss_mb())

    def stop(self) -> None:
        self._halt.set()
        self.join()


def read_records(directory: Path) -> Records:
    """Per product, every record the jsonl sink wrote."""
    out: Records = {}
    for f in sorted(directory.glob("*.jsonl")):
        venue, product = f.stem.rsplit("_", 1)
        out[(venue, product)] = [orjson.loads(line) for line in f.read_bytes().splitlines()]
    return out


def book_records(recs: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The book's own records: summaries and the statuses that make it valid or
    invalid. Trades, the warnings they raise and bars are what the faults here
    are not about (the faults hit book frames); they are checked apart."""
    return [r for r in recs if r["type"] == "summary"
            or (r["type"] == "status" and r["state"] in ("synced", "invalid"))]


def trade_ids(recs: Sequence[Dict[str, Any]]) -> List[str]:
    return [r["trade_id"] for r in recs if r["type"] == "trade"]


def clean_reference(out: Path) -> Records:
    """Every product's records from a clean replay of the recordings."""
    with contextlib.redirect_stdout(io.StringIO()):
        run_main(build_flow(Config(replay=[str(p) for p in CAPTURES], jsonl_dir=str(out))))
    return read_records(out)


def pick(summary: Dict[str, Any], names: Sequence[str]) -> Tuple[Any, ...]:
    return tuple(summary[k] for k in names)


class Aligner:
    """Finds where a valid run sits in a product's clean summaries (see
    :func:`tests.test_faults.align`), with the clean books indexed for speed."""

    def __init__(self, ref: Sequence[Dict[str, Any]]) -> None:
        self.ref = ref
        self.by_book: Dict[Tuple[Any, ...], List[int]] = {}
        for j, summary in enumerate(ref):
            self.by_book.setdefault(pick(summary, BOOK_FIELDS), []).append(j)

    def align(self, run: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Check ``run`` against the clean run; returns the snapshots it holds
        besides its first. A snapshot may come while the book is valid (a second
        resubscription was answered: see the module docstring); it must then have
        the book the clean run has at or after where the run had got to, and the
        updates after it must go on from there."""
        k, floor, snapshots = 0, 0, []
        while True:
            j, matched = self._longest(run[k:], floor)
            k += 1 + matched
            if k == len(run):
                return snapshots
            if run[k]["ofi"] is not None:  # an update that is not the clean one
                raise AssertionError(self.why(run, k, j + matched + 1))
            floor = j + matched
            snapshots.append(run[k])

    def _longest(self, run: Sequence[Dict[str, Any]], floor: int) -> Tuple[int, int]:
        """The start at or after ``floor`` whose book equals the snapshot ``run[0]``
        and from which most of the updates that follow match; and how many do."""
        deribit = run[0]["venue"] == "deribit"
        best: Optional[Tuple[int, int]] = None
        for j in self.by_book.get(pick(run[0], BOOK_FIELDS), ()):
            if j < floor or (deribit and self.ref[j]["seq"] != run[0]["seq"]):
                continue
            matched = 0
            for a, b in zip(run[1:], self.ref[j + 1:]):
                if pick(a, UPDATE_FIELDS) != pick(b, UPDATE_FIELDS) or \
                        (deribit and a["seq"] != b["seq"]):
                    break
                matched += 1
            if best is None or matched > best[1]:
                best = (j, matched)
        if best is None:
            raise AssertionError(f"{run[0]['venue']}:{run[0]['product']}: no clean book (from "
                                 f"index {floor} on) equals the snapshot's {run[0]}")
        return best

    def why(self, run: Sequence[Dict[str, Any]], k: int, j: int) -> str:
        clean = self.ref[j] if j < len(self.ref) else "nothing (the clean run has ended)"
        return (f"{run[0]['venue']}:{run[0]['product']}: summary {k} of a valid run of "
                f"{len(run)} is not the clean run's: {run[k]} != {clean}")


_CHAINS = (re.compile(r"sequence_num jumped from (\d+) to (\d+)$"),
           re.compile(r"update (\d+)->(\d+) does not follow (\d+)$"))


def explains(fault: FaultRecord, status: Dict[str, Any]) -> bool:
    """Whether ``fault`` (on the status's product) can have caused an ``invalid``
    status: a fault of the right kind, injected before the status was seen, and for
    a sequence gap one that hit a frame inside the gap. (The server's and the
    client's clocks are the same, but frames reach the client late when it is busy,
    so time alone cannot say which outage a fault belongs to.)"""
    if fault.kind not in CAUSES.get(status["reason"], ()) or fault.t_ms > status["ts_recv"]:
        return False
    if fault.kind == MALFORMED:  # the frame that could not be read is named
        return status["detail"].startswith("malformed:")
    if status["reason"] != "gap":
        return True
    coinbase, deribit = (p.match(status["detail"]) for p in _CHAINS)
    if coinbase:
        return int(coinbase[1]) < fault.seq < int(coinbase[2])
    if deribit:
        # Missing: (last, prev]; a swapped-back frame (a snapshot) may be ``last`` itself.
        return int(deribit[3]) <= fault.seq <= int(deribit[1])
    return True  # a lost snapshot: reported only while the book is invalid anyway


def timeline(faults: Sequence[FaultRecord], statuses: Sequence[Dict[str, Any]]) -> List[str]:
    """A product's faults and statuses in time order, for failure messages."""
    events = [(f.t_ms, f"{f.kind}@{f.connection}:{f.seq}") for f in faults] + \
        [(s["ts_recv"], f"{s['state']}:{s['reason']}") for s in statuses]
    t0 = min(t for t, _ in events)
    return [f"{t - t0:.1f} {what}" for t, what in sorted(events)]


class Soak:
    """Runs the rounds and checks each one; keeps the figures for the report.

    Each round gets fresh simulators and fault plans (seeded ``SEED + round``), so
    that nothing the harness keeps per connection piles up in the memory measured."""

    def __init__(self, recording: Any, reference: Records, tmp: Path) -> None:
        self.recording = recording
        self.aligners = {k: Aligner([r for r in v if r["type"] == "summary"])
                         for k, v in reference.items()}
        self.trades = {k: set(trade_ids(v)) for k, v in reference.items()}
        self.tmp = tmp
        self.rounds = 0
        self.round_seconds: List[float] = []
        self.feed: Counter = Counter()
        self.faults: Counter = Counter()
        self.outcome: Counter = Counter()
        self.resync_ms: List[float] = []
        self.trailing_ms: List[float] = []
        self.summaries = 0
        self.trades_checked = 0
        self.connections = 0  # opened at the start of each round, summed

    def round(self) -> None:
        out = self.tmp / f"round{self.rounds}"
        placement = PLACEMENTS[self.rounds % len(PLACEMENTS)]
        plans = {v: TappedPlan(placement[v]["faults"], seed=SEED + self.rounds)
                 for v in VENUES}
        sims = {v: SimulatorThread(self.recording, rate=placement[v]["rate"], faults=plans[v],
                                   retime="none")
                for v in VENUES}
        registry = Registry()
        for sim in sims.values():
            sim.start()
        try:
            venues = {v: VenueConfig(spec["products"], sims[v].url + spec["path"],
                                     spec["settings"], placement[v]["per_connection"])
                      for v, spec in VENUES.items()}
            started = time.monotonic()
            with contextlib.redirect_stdout(io.StringIO()) as console:
                run_main(build_flow(Config(venues=venues, exit_on_close=True,
                                           jsonl_dir=str(out), status_interval=0), registry))
            self.round_seconds.append(time.monotonic() - started)
        finally:
            for sim in sims.values():
                sim.stop()
        self.rounds += 1
        for feed in registry.feeds:
            self.feed.update(feed.counts)
        self.connections += len(registry.feeds)
        text = console.getvalue()  # what the console sink printed
        assert "CROSSED" not in text and "LOCKED" not in text
        written = read_records(out)
        assert set(written) <= {(v, p) for v, spec in VENUES.items() for p in spec["products"]}
        for key, all_recs in written.items():
            # Every trade once, and only trades the venue printed: reconnects replay
            # the recording from its start, so each reconnect resends them all.
            ids = trade_ids(all_recs)
            twice = [r for r in all_recs if r["type"] == "trade" and ids.count(r["trade_id"]) > 1]
            assert not twice, f"{key}: trades counted twice: {twice[:4]}"
            assert set(ids) <= self.trades[key], f"{key}: a trade the recording does not have"
            self.trades_checked += len(ids)
        recs = {k: book for k, v in written.items() if (book := book_records(v))}
        for venue, plan in plans.items():
            self.faults.update(r.kind for r in plan.injected)
            for product in VENUES[venue]["products"]:
                faults = plan.reaching(venue, product)
                numbers = plan.connections_of(product)
                if (venue, product) not in recs:
                    # Nothing written: only right if no snapshot got through and the
                    # recording ended before a new one could be asked for (a
                    # one-frame option whose frame was lost or broken).
                    state = registry.books.get((venue, product))
                    assert state is None or state.counts["snapshots"] == 0, (venue, product)
                    lost = [f.t_ms for f in faults if f.kind in RESYNC_FAULTS]
                    assert lost, (venue, product)
                    stopped = max((plan.last_sent(n, product) for n in numbers), default=0.0)
                    assert stopped - lost[0] <= GRACE_MS, \
                        f"{venue}:{product} wrote nothing, though it streamed on for " \
                        f"{stopped - lost[0]:.0f} ms: {timeline(faults, [])}"
                    self.outcome["no snapshot got through"] += 1
                    continue
                self.check(venue, product, recs[(venue, product)], faults,
                           {n: plan.last_sent(n, product) for n in numbers},
                           {n: plan.last_sent(n) for n in numbers})
        for f in out.iterdir():
            f.unlink()
        out.rmdir()

    def check(self, venue: str, product: str, recs: List[Dict[str, Any]],
              faults: List[FaultRecord], last_book: Dict[int, float],
              last_frame: Dict[int, float]) -> None:
        """``last_book``: per connection of the product, when it last sent a book frame
        of it; ``last_frame``: of any product (what reveals a Coinbase gap)."""
        where = f"round {self.rounds} {venue}:{product}"
        aligner = self.aligners[(venue, product)]
        # Summaries only while synced, each valid run a stretch of the clean run.
        runs: List[List[Dict[str, Any]]] = []
        valid = False
        for r in recs:
            if r["type"] == "status":
                valid = r["state"] == "synced"
                if valid:
                    runs.append([])
            else:
                assert valid, f"{where}: summary while the book was invalid: {r}"
                runs[-1].append(r)
                if r["bid_px"] is not None and r["ask_px"] is not None:
                    assert r["bid_px"] < r["ask_px"], f"{where}: crossed summary {r}"
        snapshots = []  # when a snapshot arrived while the book was valid
        for run in runs:
            snapshots += [r["ts_recv"] for r in aligner.align(run)]
            self.summaries += len(run)
        self.outcome["snapshot while valid (a second resubscription)"] += len(snapshots)
        # Statuses alternate, starting synced; each outage has its own cause.
        statuses = [r for r in recs if r["type"] == "status"]
        assert [s["state"] for s in statuses] == \
            ["synced", "invalid"] * (len(statuses) // 2) + ["synced"] * (len(statuses) % 2), where
        outages: List[Tuple[float, float]] = []
        unused = list(faults)  # each fault explains at most one outage
        for i, s in enumerate(statuses):
            if s["state"] != "invalid":
                continue
            cause = next((f for f in unused if explains(f, s)), None)
            assert cause is not None, f"{where}: {s['reason']} status without a cause on this " \
                f"product: {s}; faults and statuses: {timeline(faults, statuses)}"
            unused.remove(cause)
            end = statuses[i + 1]["ts_recv"] if i + 1 < len(statuses) else math.inf
            outages.append((s["ts_recv"], end))
            if end < math.inf and s["reason"] != "disconnected":
                self.resync_ms.append(end - s["ts_recv"])
            if end < math.inf:
                self.outcome["resynced" if s["reason"] != "disconnected" else "reconnected"] += 1
        if outages and outages[-1][1] == math.inf:
            # Still out at the end of the round: the server must have been done
            # with this product soon after, too soon to answer the resubscription.
            stopped = max(last_book.values())
            assert stopped - outages[-1][0] <= GRACE_MS, \
                f"{where}: never resynced although the product streamed for " \
                f"{stopped - outages[-1][0]:.0f} ms more: {timeline(faults, statuses)}"
            self.trailing_ms.append(stopped - outages[-1][0])
            self.outcome["out at the end of the recording"] += 1
        # Every detectable stream fault is followed by an outage of this product
        # (or hit before its first snapshot was taken, which then had to come again),
        # or healed by a snapshot that a second resubscription brought before any
        # update showed the hole (the valid runs above prove no summary missed it).
        # A frame of this product reveals the hole; on Coinbase, any later frame of
        # the connection.
        revealing = last_frame if get_venue(venue).connection_sequence else last_book
        outages.insert(0, (-math.inf, statuses[0]["ts_recv"]))
        for f in faults:
            if f.kind not in GAP_FAULTS:
                continue
            if revealing.get(f.connection, 0.0) <= f.t_ms:
                self.outcome[f"{f.kind} on the last frame (undetectable)"] += 1
                continue
            assert any(start >= f.t_ms or start < f.t_ms < end for start, end in outages) \
                or any(t > f.t_ms for t in snapshots), \
                f"{where}: {f} was not followed by an outage: {timeline(faults, statuses)}"
        if not faults:
            assert len(statuses) == 1 and len(runs[0]) == len(aligner.ref), where


def soak(seconds: float, tmp: Path) -> List[str]:
    """Run and check rounds for about ``seconds``; the figures, as report lines."""
    reference = clean_reference(tmp / "reference")
    recording = load_recording(CAPTURES)
    sampler = RssSampler()
    started = time.monotonic()
    sampler.start()
    try:
        run = Soak(recording, reference, tmp)
        while True:
            run.round()
            if time.monotonic() + max(run.round_seconds) > started + seconds:
                break
    finally:
        sampler.stop()
    elapsed = time.monotonic() - started

    rss = sampler.samples
    third = max(1, len(rss) // 3)
    first, last = max(rss[:third]), max(rss[-third:])
    bad = {k: n for k, n in run.feed.items() if k.startswith("bad_")}
    report = [
        f"soak: {elapsed:.1f} s, {run.rounds} rounds of {len(run.aligners)} products "
        f"({min(run.round_seconds):.1f}-{max(run.round_seconds):.1f} s each)",
        f"  frames received {run.feed['frames']} ({run.feed['frames'] / elapsed:.0f}/s), "
        f"book updates {run.feed['updates']}, snapshots {run.feed['snapshots']}, "
        f"summaries checked {run.summaries}, trades checked {run.trades_checked}",
        f"  faults injected {sum(run.faults.values())}: " + ", ".join(
            f"{k} {n}" for k, n in sorted(run.faults.items())),
        f"  feed: gaps {run.feed['gaps']}, resyncs requested {run.feed['resyncs']}, "
        f"duplicates dropped {run.feed['duplicates']}, bad input {bad}, "
        f"connects {run.feed['connects']} (reconnects {run.feed['connects'] - run.connections})",
        "  outages: " + ", ".join(f"{k} {n}" for k, n in sorted(run.outcome.items())),
        f"  resync time (invalid -> synced) median {statistics.median(run.resync_ms):.0f} ms, "
        f"max {max(run.resync_ms):.0f} ms" if run.resync_ms else "  no resyncs",
        f"  still out at the end: server stopped sending the product within "
        f"{max(run.trailing_ms, default=0):.0f} ms (median "
        f"{statistics.median(run.trailing_ms or [0]):.0f} ms)",
        f"  RSS peak {max(rss):.0f} MB: first third {first:.0f} MB, last third {last:.0f} MB "
        f"({len(rss)} samples, MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', '-')})",
    ]
    print("\n".join(report), flush=True)
    assert run.rounds >= 2
    assert run.faults["drop"] and run.faults["swap"] and run.faults["gap"]
    assert run.outcome["resynced"] > 0 and run.outcome["reconnected"] > 0
    assert last - first <= RSS_SLACK_MB, f"memory grew: {first:.0f} -> {last:.0f} MB"
    return report


@pytest.mark.soak
@pytest.mark.slow
def test_soak(soak_seconds: float, tmp_path: Path) -> None:
    """The soak runs in a process of its own, so that the memory it measures is the
    dataflow's, not what 300 earlier tests left in this one, and with
    ``MALLOC_ARENA_MAX=2``: each round starts new threads (the worker's socket
    thread, one per simulator), and glibc gives new threads arenas of their own
    (up to 8 per core), each keeping the high-water mark of the multi-MB frames
    handled in it; RSS then climbs for many rounds before it levels off, which says
    nothing about lobstream and would hide a real leak in a one-minute run. (A
    long-running lobstream keeps its socket thread, so it does not churn arenas
    this way.)"""
    env = dict(os.environ, MALLOC_ARENA_MAX="2", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "tests.test_soak", str(soak_seconds),
                           str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=2 * soak_seconds + 90)
    print("\n" + proc.stdout.rstrip())
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert proc.stdout.startswith("soak: ")


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    soak(float(sys.argv[1]), Path(sys.argv[2]))
