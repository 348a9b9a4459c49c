"""Soak: the real dataflow against all three simulated venues, with random faults,
for about a minute (``--soak-seconds`` or ``LOBSTREAM_SOAK_SECONDS`` for longer).

Each round runs lobstream (``build_flow`` + ``run_main``, one websocket per product:
Coinbase Advanced Trade BTC-USD and ETH-USD, the ten Deribit options, the ten Coinbase
Exchange products) until every recording has been served, against three long-lived
simulators whose seeded fault plans drop, duplicate, swap, skip, break and pad frames
and now and then close or cut a connection (which then replays from its start).
Rounds repeat until the time is up. After each round, every product's output is
checked against a clean replay of the same recordings:

* no summary ever has a crossed (or locked) book, and no crossed alert is raised;
* no summary comes from a stale book: every valid run (``synced`` to ``invalid``) is
  a contiguous stretch of the clean run, summary for summary;
* statuses alternate ``synced``/``invalid``, and each ``invalid`` has a cause on that
  product's own connection since its previous one (a drop, swap or gap for ``gap``,
  a broken size for ``bad_input``, a close or abort for ``disconnected``), so no
  other product is ever disturbed;
* each detectable drop, swap, gap or broken size is followed by an outage of that
  product, and every outage ends with ``synced`` unless the server had finished the
  recording (and closed) before the resync could be answered: then it must have
  stopped sending that product within ``GRACE_MS`` of the outage starting;
* every round ends by itself with output for every product, and memory stays flat.

Connections are paced (a few hundred to a thousand frames per second each, about
25 at once): unpaced, a recording is on the wire before a resubscription could be
answered, and nothing would ever resync. Coinbase Exchange's ``level2_batch`` has no
sequence numbers, so a lost, repeated or reordered update cannot be seen there (see
:mod:`sources.coinbase_exchange`); it only gets the faults a client can detect.
"""

from __future__ import annotations

import ctypes
import math
import re
import statistics
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import orjson
import pytest
from bytewax.testing import run_main

import dataflows.monitoring
import sources.feed
from dataflows.config import Config, VenueConfig
from dataflows.orderbook import build_flow
from sources.simulator import (Fault, FaultPlan, FaultRecord, FrameFilter, OutFrame,
                               SimulatorThread, load_recording, random_faults)
from sources.simulator.faults import BAD_SIZE, MALFORMED, UNKNOWN_TYPE

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "recordings"
CAPTURES = [RECORDINGS / "coinbase_advanced_btc_eth.jsonl.gz",
            RECORDINGS / "deribit_options.jsonl.gz",
            RECORDINGS / "coinbase_exchange_level2.jsonl.gz"]
SEED = 20260809

#: Per venue: products, frames per second per connection, and the fault plan.
VENUES: Dict[str, Dict[str, Any]] = {
    "coinbase": dict(
        path="/coinbase", rate=300, products=["BTC-USD", "ETH-USD"],
        faults=random_faults(0.02) + [Fault("close", probability=1 / 2000),
                                      Fault("abort", probability=1 / 2000)]),
    "deribit": dict(
        path="/deribit", rate=100, interval="100ms",
        products=["BTC-25MAR22-400000-C", "BTC-30APR21-20000-C", "BTC-31DEC21-300000-P",
                  "ETH-16APR21-1400-P", "ETH-16APR21-1600-C", "ETH-23APR21-2000-C",
                  "ETH-24SEP21-320-P", "ETH-30APR21-2240-P", "ETH-6APR21-2400-P",
                  "ETH-9APR21-1950-C"],
        faults=random_faults(0.05) + [Fault("close", probability=1 / 400),
                                      Fault("abort", probability=1 / 400)]),
    "coinbase_exchange": dict(
        path="/coinbase-exchange", rate=600, channel="level2_batch",
        products=["BAND-BTC", "BAND-GBP", "CRV-EUR", "DASH-BTC", "NMR-EUR", "NU-GBP",
                  "SKL-BTC", "SKL-GBP", "SKL-USD", "YFI-BTC"],
        faults=random_faults(0.01, (MALFORMED, UNKNOWN_TYPE, BAD_SIZE))
        + [Fault("close", probability=1 / 20000), Fault("abort", probability=1 / 20000)]),
}
#: What may cause each reason of an ``invalid`` status.
CAUSES = {"gap": {"drop", "swap", "gap"}, "bad_input": {"bad_size"},
          "disconnected": {"close", "abort"}}
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
    """A fault plan that also notes, per connection, its product and when it last
    put one of that product's book frames on the wire (epoch ms)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.product_of: Dict[int, str] = {}
        self.last_book: Dict[int, float] = {}

    def frame_filter(self, venue: str, number: int) -> Optional[FrameFilter]:
        inner = super().frame_filter(venue, number)

        async def tap(frame: OutFrame) -> List[OutFrame]:
            out = list([frame] if inner is None else await inner(frame))
            if frame.kind == "book":
                self.product_of.setdefault(number, frame.product or "")
                if any(o.kind == "book" for o in out):
                    self.last_book[number] = time.time() * 1000.0
            return out

        return tap


def cap_malloc_arenas(n: int = 2) -> bool:
    """Limit glibc to ``n`` malloc arenas (``MALLOC_ARENA_MAX``) from now on.

    Every round starts ~25 connection threads, and glibc gives new threads arenas of
    their own (up to 8 per core), each keeping the high-water mark of the multi-MB
    frames parsed in it: RSS then climbs for a dozen rounds before it levels off,
    which says nothing about lobstream and would hide a real leak in a one-minute
    run. With the arenas capped, RSS follows what the process actually holds."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-8, n))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


class RssSampler(threading.Thread):
    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.interval = interval
        self.samples: List[Tuple[float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.samples.append((time.monotonic(), rss_mb()))

    def stop(self) -> None:
        self._halt.set()
        self.join()


def read_records(directory: Path) -> Records:
    out: Records = {}
    for f in sorted(directory.glob("*.jsonl")):
        venue, product = f.stem.rsplit("_", 1)
        out[(venue, product)] = [orjson.loads(line) for line in f.read_bytes().splitlines()]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Records:
    """Every product's summaries from a clean replay of the recordings."""
    out = tmp_path_factory.mktemp("reference")
    run_main(build_flow(Config(replay=[str(p) for p in CAPTURES], jsonl_dir=str(out))))
    return {k: [r for r in recs if r["type"] == "summary"] for k, recs in read_records(out).items()}


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

    def align(self, run: Sequence[Dict[str, Any]]) -> int:
        """Check ``run`` against the clean run; returns how many snapshots it holds
        besides its first. A snapshot may come while the book is valid (a second
        resubscription was answered: see the module docstring); it must then have
        the book the clean run has at or after where the run had got to, and the
        updates after it must go on from there."""
        k, floor, snapshots = 0, 0, 0
        while True:
            j, matched = self._longest(run[k:], floor)
            k += 1 + matched
            if k == len(run):
                return snapshots
            if run[k]["ofi"] is not None:  # an update that is not the clean one
                raise AssertionError(self.why(run, k, j + matched + 1))
            floor, snapshots = j + matched, snapshots + 1

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
           re.compile(r"prev_change_id (\d+) does not follow (\d+)$"))


def explains(fault: FaultRecord, status: Dict[str, Any]) -> bool:
    """Whether ``fault`` (on the status's product) can have caused an ``invalid``
    status: a fault of the right kind, injected before the status was seen, and for
    a sequence gap one that hit a frame inside the gap. (The server's and the
    client's clocks are the same, but frames reach the client late when it is busy,
    so time alone cannot say which outage a fault belongs to.)"""
    if fault.kind not in CAUSES.get(status["reason"], ()) or fault.t_ms > status["ts_recv"]:
        return False
    if status["reason"] != "gap":
        return True
    coinbase, deribit = (p.match(status["detail"]) for p in _CHAINS)
    if coinbase:
        return int(coinbase[1]) < fault.seq < int(coinbase[2])
    assert deribit, status
    # Missing: (last, prev]; a swapped-back frame (a snapshot) may be ``last`` itself.
    return int(deribit[2]) <= fault.seq <= int(deribit[1])


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
        self.aligners = {k: Aligner(v) for k, v in reference.items()}
        self.tmp = tmp
        self.rounds = 0
        self.round_seconds: List[float] = []
        self.feed: Counter = Counter()
        self.faults: Counter = Counter()
        self.outcome: Counter = Counter()
        self.resync_ms: List[float] = []
        self.trailing_ms: List[float] = []
        self.summaries = 0

    def round(self, feeds: set, console: Any) -> None:
        out = self.tmp / f"round{self.rounds}"
        plans = {v: TappedPlan(spec["faults"], seed=SEED + self.rounds)
                 for v, spec in VENUES.items()}
        sims = {v: SimulatorThread(self.recording, rate=spec["rate"], faults=plans[v])
                for v, spec in VENUES.items()}
        for sim in sims.values():
            sim.start()
        try:
            venues = {v: VenueConfig(spec["products"], sims[v].url + spec["path"],
                                     spec.get("interval", ""), spec.get("channel", ""))
                      for v, spec in VENUES.items()}
            started = time.monotonic()
            run_main(build_flow(Config(venues=venues, exit_on_close=True, jsonl_dir=str(out),
                                       status_interval=0)))
            self.round_seconds.append(time.monotonic() - started)
        finally:
            for sim in sims.values():
                sim.stop()
        self.rounds += 1
        streams: Dict[str, Counter] = {}
        for feed in feeds:
            self.feed.update(feed.counts)
            streams.setdefault(feed.stream, Counter()).update(feed.counts)
        feeds.clear()
        text = console.readouterr().out
        assert "CROSSED" not in text and "LOCKED" not in text
        recs = read_records(out)
        assert set(recs) <= {(v, p) for v, spec in VENUES.items() for p in spec["products"]}
        for venue, plan in plans.items():
            injected = plan.injected
            self.faults.update(r.kind for r in injected)
            for product in VENUES[venue]["products"]:
                faults = [r for r in injected if r.product == product]
                numbers = [n for n, p in plan.product_of.items() if p == product]
                if (venue, product) not in recs:
                    # Nothing written: only right if no snapshot ever got through (the
                    # recording of a one-frame option, its snapshot dropped).
                    assert streams[f"{venue}:{product}"]["snapshots"] == 0, (venue, product)
                    assert any(f.kind in RESYNC_FAULTS for f in faults), (venue, product)
                    self.outcome["no snapshot got through"] += 1
                    continue
                self.check(venue, product, recs[(venue, product)], faults,
                           {n: plan.last_book.get(n, 0.0) for n in numbers})
        for f in out.iterdir():
            f.unlink()
        out.rmdir()

    def check(self, venue: str, product: str, recs: List[Dict[str, Any]],
              faults: List[FaultRecord], last_book: Dict[int, float]) -> None:
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
        for run in runs:
            self.outcome["snapshot while valid (a second resubscription)"] += aligner.align(run)
            self.summaries += len(run)
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
                f"{stopped - outages[-1][0]:.0f} ms more"
            self.trailing_ms.append(stopped - outages[-1][0])
            self.outcome["out at the end of the recording"] += 1
        # Every detectable stream fault is followed by an outage of this product
        # (or hit before its first snapshot was taken, which then had to come again).
        outages.insert(0, (-math.inf, statuses[0]["ts_recv"]))
        for f in faults:
            if f.kind not in GAP_FAULTS:
                continue
            if last_book.get(f.connection, 0.0) <= f.t_ms:
                self.outcome[f"{f.kind} on the last frame (undetectable)"] += 1
                continue
            assert any(start >= f.t_ms or start < f.t_ms < end for start, end in outages), \
                f"{where}: {f} was not followed by an outage: {timeline(faults, statuses)}"
        if not faults:
            assert len(statuses) == 1 and len(runs[0]) == len(aligner.ref), where


@pytest.mark.soak
@pytest.mark.slow
def test_soak(reference, tmp_path, soak_seconds, monkeypatch, capfd):
    capped = cap_malloc_arenas()
    recording = load_recording(CAPTURES)
    feeds: set = set()  # the Feeds of a round, kept for their counters
    monkeypatch.setattr(sources.feed, "FEEDS", feeds)
    monkeypatch.setattr(dataflows.monitoring, "FEEDS", feeds)
    sampler = RssSampler()
    started = time.monotonic()
    deadline = started + soak_seconds
    sampler.start()
    try:
        soak = Soak(recording, reference, tmp_path)
        while True:
            soak.round(feeds, capfd)
            if time.monotonic() + max(soak.round_seconds) > deadline:
                break
    finally:
        sampler.stop()
    elapsed = time.monotonic() - started

    rss = [mb for _, mb in sampler.samples]
    third = max(1, len(rss) // 3)
    first, last = max(rss[:third]), max(rss[-third:])
    partitions = sum(len(spec["products"]) for spec in VENUES.values()) * soak.rounds
    bad = {k: n for k, n in soak.feed.items() if k.startswith("bad_")}
    report = [
        f"soak: {elapsed:.1f} s, {soak.rounds} rounds of {len(soak.aligners)} products "
        f"({min(soak.round_seconds):.1f}-{max(soak.round_seconds):.1f} s each)",
        f"  frames received {soak.feed['frames']} ({soak.feed['frames'] / elapsed:.0f}/s), "
        f"book updates {soak.feed['updates']}, snapshots {soak.feed['snapshots']}, "
        f"summaries checked {soak.summaries}",
        f"  faults injected {sum(soak.faults.values())}: " + ", ".join(
            f"{k} {n}" for k, n in sorted(soak.faults.items())),
        f"  feed: gaps {soak.feed['gaps']}, resyncs requested {soak.feed['resyncs']}, "
        f"duplicates dropped {soak.feed['duplicates']}, bad input {bad}, "
        f"connects {soak.feed['connects']} (reconnects {soak.feed['connects'] - partitions})",
        "  outages: " + ", ".join(f"{k} {n}" for k, n in sorted(soak.outcome.items())),
        f"  resync time (invalid -> synced) median {statistics.median(soak.resync_ms):.0f} ms, "
        f"max {max(soak.resync_ms):.0f} ms" if soak.resync_ms else "  no resyncs",
        f"  still out at the end: server stopped sending the product within "
        f"{max(soak.trailing_ms, default=0):.0f} ms (median "
        f"{statistics.median(soak.trailing_ms or [0]):.0f} ms)",
        f"  RSS peak {max(rss):.0f} MB; first third peak {first:.0f} MB, "
        f"last third peak {last:.0f} MB ({len(rss)} samples"
        + (", malloc arenas capped at 2)" if capped else ")"),
    ]
    with capfd.disabled():
        print("\n" + "\n".join(report))
    assert soak.rounds >= 2
    assert soak.faults["drop"] and soak.faults["swap"] and soak.faults["gap"]
    assert soak.outcome["resynced"] > 0 and soak.outcome["reconnected"] > 0
    assert last - first <= RSS_SLACK_MB, f"memory grew: {first:.0f} -> {last:.0f} MB"
