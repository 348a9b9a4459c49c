"""End to end over websockets and REST: lobstream's Binance client against the
local simulator, in real Bytewax runs (``run_main`` over ``build_flow``).

The simulator serves the bundled Binance captures in the venues' own protocols
and cuts REST depth snapshots consistent with the diffs it has sent on the
connection (``sources.simulator.exchanges.binance_server``). Three things are
checked:

* spot, USD-M and COIN-M over the network produce the summaries, trades and bars
  the replay of the same captures produces;
* 50 spot symbols on one connection, one of them hit by a gap: that symbol alone
  fetches a new snapshot, no other symbol's book is disturbed, and the REST
  weight stays within the venue's budget;
* the depth endpoint answers 429 with ``Retry-After``, then 418: lobstream waits
  as it is told, the book resyncs afterwards, and nothing else moves.

Runs are paced (``speed`` 4-5): unpaced, a whole capture is on the wire before
the first REST reply is back, and the snapshot is cut far later in the stream
than the capture's own. Exchange times are not moved (``retime="none"``): bars
are windows of exchange time. Each test prints its figures (``pytest -s``).
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import orjson
import pytest
from bytewax.testing import run_main

from dataflows.config import Config, VenueConfig
from dataflows.orderbook import build_flow
from sources.runtime.registry import Registry
from sources.simulator import Fault, FaultPlan, SimulatorThread, load_recording
from tests.helpers import comparable, read_dir, valid_runs

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "recordings"
SPOT = RECORDINGS / "binance_spot_btcusdt.jsonl.gz"
PAIRS = RECORDINGS / "binance_spot_10pairs.jsonl.gz"
#: venue -> (capture, symbol, websocket path, settings). The hftbacktest captures
#: hold ``trade`` prints, no ``aggTrade`` (spot's and COIN-M's default), and COIN-M's
#: no ``markPrice`` (its ticker stream delivers nothing, as a quiet one would).
MARKETS: Dict[str, Tuple[Path, str, str, Dict[str, Any]]] = {
    "binance": (SPOT, "BTCUSDT", "/binance/stream", {"trades": "trade"}),
    "binance_usdm": (RECORDINGS / "binance_usdm_ethusdt.jsonl.gz", "ETHUSDT",
                     "/binance_usdm/public/stream", {}),
    "binance_coinm": (RECORDINGS / "binance_coinm_ethusd_perp.jsonl.gz", "ETHUSD_PERP",
                      "/binance_coinm/stream", {"trades": "trade"}),
}
#: Each venue's depth route, as the simulator's stats name it.
DEPTH_ROUTES = {"binance": "/api/v3/depth", "binance_usdm": "/fapi/v1/depth",
                "binance_coinm": "/dapi/v1/depth"}
DEPTH = DEPTH_ROUTES["binance"]
#: Spot: 6,000 request weight a minute per IP, of which lobstream spends half;
#: a depth snapshot of 1,000 levels a side weighs 50.
VENUE_BUDGET, LOBSTREAM_BUDGET, SNAPSHOT_WEIGHT = 6000, 3000, 50
#: Only the receive time differs between a run over the network and a replay.
LIVE_ONLY = ("ts_recv",)


def venue(sim: SimulatorThread, name: str, symbols: Sequence[str], path: str,
          settings: Dict[str, Any]) -> VenueConfig:
    """``symbols`` on one connection, websocket and REST both at the simulator."""
    return VenueConfig(list(symbols), sim.url + path, settings,
                       products_per_connection=len(symbols), rest_url=f"{sim.http_url}/{name}")


def run(venues: Dict[str, VenueConfig], out: Path, registry: Registry | None = None) -> None:
    run_main(build_flow(Config(venues=venues, exit_on_close=True, jsonl_dir=str(out),
                               status_interval=0), registry))


def replay(captures: Sequence[Path], out: Path) -> Dict[str, List[dict]]:
    run_main(build_flow(Config(replay=[str(p) for p in captures], jsonl_dir=str(out))))
    return read_dir(out)


def kinds(recs: Sequence[dict], kind: str) -> List[dict]:
    return [r for r in recs if r["type"] == kind]


def statuses(recs: Sequence[dict]) -> List[Tuple[str, str]]:
    return [(r["state"], r["reason"]) for r in kinds(recs, "status")]


def from_first_update(recs: Sequence[dict]) -> Tuple[List[dict], List[dict]]:
    """The records before the first diff applied after the book's snapshot (the
    second summary), and from it on."""
    first_update = [i for i, r in enumerate(recs) if r["type"] == "summary"][1]
    return list(recs[:first_update]), list(recs[first_update:])


def assert_same_as_replay(live: List[dict], replayed: List[dict], where: str) -> bool:
    """The live run is the replay, as far as the snapshot it was served allows.
    Returns whether that snapshot was the recorded one.

    Served the recorded snapshot (its REST request beat the stream past the
    recorded reply's update id, the usual case): the same records; from the first
    update after the snapshot on, in the same order too. Before it, where a trade
    falls relative to the snapshot differs by nature: the capture's REST reply came
    back after a trade print that a live reply from the simulator beats (the
    snapshot summary and its ``synced`` status then come first).

    Served a later one (on a loaded machine the request can reach the simulator
    after the stream has passed that id, 40 ms of paced stream for spot, and the
    book is then cut as of the last diff sent, as the venue's own would be): from
    it on the book is the recorded one update id for update id
    (:func:`assert_recorded_book`, level counts aside), to the capture's end, and
    every trade is the replay's, in order."""
    (live,), (replayed,) = (comparable({where: recs}, LIVE_ONLY).values()
                            for recs in (live, replayed))
    recorded = kinds(live, "summary")[0]["seq"] == kinds(replayed, "summary")[0]["seq"]
    if recorded:
        live_head, live_tail = from_first_update(live)
        replay_head, replay_tail = from_first_update(replayed)
        assert live_tail == replay_tail, where
        assert sorted(map(orjson.dumps, live_head)) == sorted(map(orjson.dumps, replay_head)), \
            where
        return True
    reference = {r["seq"]: r for r in kinds(replayed, "summary")}
    ids = sorted(reference)
    (book,) = valid_runs(live)
    assert book[0]["seq"] > ids[0], where
    assert_recorded_book(book, reference, ids, where)
    assert book[-1]["seq"] == ids[-1], where
    assert kinds(live, "trade") == kinds(replayed, "trade"), where
    print(f"{where}: served a snapshot {ids.index(book[0]['seq'])} updates past the recorded one")
    return False


#: Bar fields joined from the book (the rest come from trades and tickers).
BOOK_BAR_FIELDS = ("ofi", "mid", "spread_bps_mean", "spread_bps_min", "spread_bps_max",
                   "book_updates")


def final_bars(recs: Sequence[dict]) -> Dict[Tuple[float, int], dict]:
    """The last version of each bar (a revised bar is written again)."""
    return {(r["interval_s"], r["start"]): r for r in kinds(recs, "bar")}


def top(summary: dict, *drop: str) -> dict:
    """A summary without its level counts, receive time, product and ``drop``: a
    snapshot cut from the stream has 1,000 levels a side, where the recorded book
    had grown past them; the clones carry BTCUSDT's book under their own names."""
    dropped = {"bid_levels", "ask_levels", "ts_recv", "product", *drop}
    return {k: v for k, v in summary.items() if k not in dropped}


def assert_recorded_book(book: Sequence[dict], reference: Dict[int, dict], ids: Sequence[int],
                         where: str) -> None:
    """One valid run is the recorded book, update id for update id: its snapshot has
    the book the capture has at that id (a spot snapshot carries no exchange time,
    and no OFI as nothing came before it), and each update after it follows.

    A futures snapshot cut at a diff's ``u`` is followed by that diff again (the
    venue's rule applies the first diff with ``U <= lastUpdateId <= u``): the book
    stays as it is, so its summary is the recorded one with no order flow."""
    if len(book) > 1 and book[1]["seq"] == book[0]["seq"]:
        assert book[1]["ofi"] == 0, where
        assert top(book[1], "ofi") == top(reference[book[1]["seq"]], "ofi"), where
        book = [book[0], *book[2:]]
    seqs = [r["seq"] for r in book]
    start = ids.index(seqs[0])
    assert seqs == list(ids[start:start + len(seqs)]), where
    assert top(book[0], "ts_exchange", "ofi") == top(reference[seqs[0]], "ts_exchange",
                                                     "ofi"), where
    assert [top(r) for r in book[1:]] == [top(reference[s]) for s in seqs[1:]], where


def listed_usdt_symbols(count: int) -> List[str]:
    """The first ``count`` trading ``*USDT`` symbols of the bundled exchangeInfo:
    with ``clone_books`` the simulator serves each of them BTCUSDT's recorded book
    under its own name."""
    with gzip.open(RECORDINGS / "reference" / "binance_exchange_info.json.gz", "rb") as f:
        listed = json.load(f)["symbols"]
    return [s["symbol"] for s in listed
            if s.get("status") == "TRADING" and s["symbol"].endswith("USDT")][:count]


class TimedPlan(FaultPlan):
    """A fault plan that also notes when each REST request reached a route (the
    server asks it about every request within the weight budget)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.requests: List[Tuple[float, str]] = []

    def rest_fault(self, venue: str, path: str, snapshots: bool) -> Any:
        self.requests.append((time.monotonic(), path))
        return super().rest_fault(venue, path, snapshots)


@pytest.mark.parametrize("reply_delay", [0.0, 1.0], ids=["prompt_reply", "late_reply"])
def test_three_markets_over_websockets_and_rest_match_the_replay(tmp_path, reply_delay):
    """``late_reply``: each depth reply leaves 1 s later (5 s of the stream), so
    every book is cut past the recorded snapshot, the case a loaded machine can
    meet by chance."""
    captures = [capture for capture, _, _, _ in MARKETS.values()]
    plan = FaultPlan([Fault("slow_reply", venue=name, path=DEPTH_ROUTES[name],
                            duration=reply_delay) for name in MARKETS] if reply_delay else [])
    with SimulatorThread(load_recording(captures), speed=5, retime="none", faults=plan) as sim:
        run({name: venue(sim, name, [symbol], path, settings)
             for name, (_, symbol, path, settings) in MARKETS.items()}, tmp_path / "live")
        stats = {name: sim.stats[name] for name in MARKETS}
    live = read_dir(tmp_path / "live")
    replayed = replay(captures, tmp_path / "replay")
    assert sorted(live) == sorted(replayed) == sorted(
        f"{name}_{symbol}.jsonl" for name, (_, symbol, _, _) in MARKETS.items())
    for name, (_, symbol, _, _) in MARKETS.items():
        where = f"{name}_{symbol}.jsonl"
        recs = live[where]
        # One snapshot, fetched once over REST, and the book never lost.
        assert statuses(recs) == [("synced", "snapshot")], where
        assert stats[name].rest_symbols == {(DEPTH_ROUTES[name], symbol): 1}, where
        assert stats[name].rest_statuses == {200: 1}, where
        assert kinds(recs, "summary") and kinds(recs, "trade") and kinds(recs, "bar"), where
        recorded = assert_same_as_replay(recs, replayed[where], where)
        # Delayed, no reply can be the recorded snapshot; prompt, one usually is.
        assert not (recorded and reply_delay), where
        # With a later snapshot the book joined the bars later: bars that began
        # before its first update differ in their book fields only (a spot
        # snapshot carries no exchange time).
        joined = kinds(recs, "summary")[1]["ts_exchange"]
        bars, replay_bars = ([{k: v for k, v in bar.items() if k not in BOOK_BAR_FIELDS
                               or recorded or bar["start"] >= joined}
                              for bar in final_bars(r).values()]
                             for r in (recs, replayed[where]))
        assert comparable({where: bars}, LIVE_ONLY) == comparable({where: replay_bars},
                                                                  LIVE_ONLY), where
        print(f"{name}: {len(kinds(recs, 'summary'))} summaries, "
              f"{len(kinds(recs, 'trade'))} trades, {len(final_bars(recs))} bars; "
              f"REST weight {stats[name].rest_weight}")


def test_fifty_symbols_on_one_connection_one_gap_refetches_that_symbol_only(tmp_path):
    symbols = listed_usdt_symbols(50)
    victim = symbols[17]
    reference = {r["seq"]: r for r in kinds(replay([SPOT], tmp_path / "replay")[
        "binance_BTCUSDT.jsonl"], "summary")}
    ids = sorted(reference)
    plan = FaultPlan([Fault("gap", venue="binance", product=victim, after=300)])
    started_ms = time.time() * 1000.0
    # Trades off: this is about books and their REST snapshots.
    with SimulatorThread([SPOT], speed=5, retime="none", clone_books=True, faults=plan) as sim:
        run({"binance": venue(sim, "binance", symbols, "/binance/stream", {"trades": "off"})},
            tmp_path / "live")
        stats = sim.stats["binance"]
    live = read_dir(tmp_path / "live")
    assert sorted(live) == sorted(f"binance_{s}.jsonl" for s in symbols)
    assert [(r.product, r.kind) for r in plan.injected] == [(victim, "gap")]
    # One connection; every symbol fetched once, the victim once more; all answered.
    assert (stats.accepted_connections, stats.subscribe_requests) == (1, 1)
    assert stats.rest_symbols == {(DEPTH, s): 1 + (s == victim) for s in symbols}
    assert stats.rest_statuses == {200: len(symbols) + 1}
    assert stats.rest_weight == SNAPSHOT_WEIGHT * (len(symbols) + 1)
    assert stats.peak_rest_weight <= LOBSTREAM_BUDGET < VENUE_BUDGET
    synced_ms = []
    for symbol in symbols:
        recs = live[f"binance_{symbol}.jsonl"]
        synced_ms.append(kinds(recs, "status")[0]["ts_recv"])
        runs = valid_runs(recs)
        if symbol == victim:
            assert statuses(recs) == [("synced", "snapshot"), ("invalid", "gap"),
                                      ("synced", "snapshot")]
        else:
            assert statuses(recs) == [("synced", "snapshot")], symbol
        for book in runs:
            assert_recorded_book(book, reference, ids, symbol)
        assert runs[-1][-1]["seq"] == ids[-1], symbol
    print(f"50 symbols: all synced {max(synced_ms) - started_ms:.0f} ms after the start "
          f"(first {min(synced_ms) - started_ms:.0f} ms); REST weight {stats.rest_weight} "
          f"in all, peak {stats.peak_rest_weight} in one window (lobstream's share "
          f"{LOBSTREAM_BUDGET}, venue {VENUE_BUDGET}); {sum(stats.rest_symbols.values())} "
          f"depth requests")


def test_429_then_418_from_depth_is_waited_out_and_the_book_resyncs(tmp_path):
    """Ten real pairs sync (ten depth requests); then a gap on one of them, whose
    refetch gets 429 ``Retry-After: 2`` and its retry 418 ``Retry-After: 3`` (the
    venue sends one with its bans; without it lobstream would wait the 2 minutes
    Binance bans for at least, beyond this test's time)."""
    replayed = replay([PAIRS], tmp_path / "replay")
    symbols = sorted(name[len("binance_"):-len(".jsonl")] for name in replayed)
    victim = "ZILUSDT"
    plan = TimedPlan([
        Fault("gap", venue="binance", product=victim, after=60),
        Fault("http_error", venue="binance", path=DEPTH, status=429, retry_after=2,
              after=len(symbols)),
        Fault("http_error", venue="binance", path=DEPTH, status=418, retry_after=3,
              after=len(symbols) + 1)])
    registry = Registry()
    with SimulatorThread([PAIRS], speed=4, retime="none", faults=plan) as sim:
        run({"binance": venue(sim, "binance", symbols, "/binance/stream", {})},
            tmp_path / "live", registry)
        stats = sim.stats["binance"]
    live = read_dir(tmp_path / "live")
    assert [(r.kind, r.product) for r in plan.injected] == [
        ("gap", victim), ("http_error", DEPTH), ("http_error", DEPTH)]
    assert stats.rest_symbols == {(DEPTH, s): 1 + 3 * (s == victim) for s in symbols}
    assert stats.rest_statuses == {200: len(symbols) + 1, 429: 1, 418: 1}
    # The refetch got 429, its retry 418, the next request 200; each came only after
    # the Retry-After before it had passed.
    times = [t for t, path in plan.requests if path == DEPTH]
    assert len(times) == len(symbols) + 3
    limited, banned, served = times[-3:]
    assert banned - limited >= 2.0 and served - banned >= 3.0
    (feed,) = registry.feeds
    assert (feed.counts["connects"], feed.counts["gaps"], feed.counts["snapshots"]) == (
        1, 1, len(symbols) + 1)
    for symbol in symbols:
        where = f"binance_{symbol}.jsonl"
        if symbol != victim:
            # Untouched: the replay's records, the websocket's order from the first
            # update on.
            assert statuses(live[where]) == [("synced", "snapshot")], symbol
            assert_same_as_replay(live[where], replayed[where], where)
            continue
        assert statuses(live[where]) == [("synced", "snapshot"), ("invalid", "gap"),
                                         ("synced", "snapshot")]
        first, again = valid_runs(live[where])
        resynced_ms = kinds(live[where], "status")[2]["ts_recv"]
        lost_ms = kinds(live[where], "status")[1]["ts_recv"]
        # Before the gap and after the resync the book is the recorded one, to the
        # end of the capture.
        reference = {r["seq"]: r for r in kinds(replayed[where], "summary")}
        for book in (first, again):
            assert_recorded_book(book, reference, sorted(reference), symbol)
        assert again[-1]["seq"] == max(reference)
        # Its trades never stopped: prints do not wait for the book.
        assert comparable({where: kinds(live[where], "trade")}, LIVE_ONLY) == comparable(
            {where: kinds(replayed[where], "trade")}, LIVE_ONLY)
        print(f"429 then 418: {symbol} out for {resynced_ms - lost_ms:.0f} ms "
              f"(Retry-After 2 s + 3 s; requests {banned - limited:.2f} s and "
              f"{served - banned:.2f} s apart); {len(first)} + {len(again)} summaries; "
              f"{feed.counts['rest_failures']} failed snapshot attempts (the 429 and the "
              f"418, each retried 1 s later, then 2 s, by the feed's timer)")
