"""The per-frame comparison on the Coinbase recording: floor, full flow, cryptofeed, naive.

One long capture (the recording's update frames, then its replayable tail again and
again, ``sequence_num`` renumbered: :func:`benchmarks.data.build_repeated`) and a
short one that differs only in the number of passes. Each round runs, in
alternating order:

* the floor (:mod:`benchmarks.floor`) over the long capture's update frames;
* the full flow as users run it (:mod:`benchmarks.flowrun`) over the short and
  the long capture: ``(long run's CPU - short run's CPU) / extra frames`` is its
  marginal cost per frame, start-up, the flow's construction and the snapshots
  cancelling (the wall-time figure is kept beside it);
* cryptofeed (:mod:`benchmarks.cryptofeed_child`) over every frame of the long
  capture, the updates timed;
* the naive tutorial book (:mod:`benchmarks.naive`) over one repeated pass of
  updates (the same mix of frames the marginal cost is made of).

Every program is timed in CPU seconds (see :mod:`benchmarks.common`), every ratio
is taken within a round, between runs seconds apart, and the median over rounds
is reported. :func:`profile` then runs the long flow once more under
py-spy, for each step's share of its time (:mod:`benchmarks.profiling`).
Every program's final books are compared with the flow's: the same sizes on both
sides of both products, or the run fails (cryptofeed's are reported as they are).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from benchmarks import data, peer, profiling
from benchmarks.common import ROOT, median, run_module
from benchmarks.flowrun import FlowRun, run_flow

SYMBOLS_REPLY = ROOT / "recordings" / "reference" / "coinbase_products.json.gz"


class Inputs:
    """The short and long captures and what the runs need to know about them."""

    def __init__(self, rec: data.CoinbaseRecording, work: Path, short_passes: int,
                 long_passes: int) -> None:
        self.short = data.build_repeated(rec, work / "coinbase_short.jsonl", short_passes)
        self.long = data.build_repeated(rec, work / "coinbase_long.jsonl", long_passes)
        self.extra = self.long["update_frames"] - self.short["update_frames"]
        self.warmup = self.long["prefix_frames"]
        self.products = sorted(rec.snapshots)
        self.naive_start = self.warmup + self.long["first_pass_frames"]
        self.naive_frames = self.long["repeat_unit_frames"]


def compare(bench: Any, short_passes: int, long_passes: int, rounds: int) -> None:
    work: Path = bench.work
    inp = Inputs(bench.cb, work, short_passes, long_passes)
    env, env_note = peer.environment()
    runs: Dict[str, List[Any]] = {"floor": [], "short": [], "long": [], "cryptofeed": [],
                                  "naive": []}
    for r in range(rounds):
        order = ["floor", "short", "long", "cryptofeed", "naive"]
        for name in order if r % 2 == 0 else order[::-1]:
            if name == "cryptofeed" and env is None:
                continue
            runs[name].append(_measure(name, inp, work, r, env))
    marginal = [(lo.cpu - sh.cpu) / inp.extra * 1e6 for lo, sh in zip(runs["long"], runs["short"])]
    marginal_wall = [(lo.wall - sh.wall) / inp.extra * 1e6
                     for lo, sh in zip(runs["long"], runs["short"])]
    flow_us = median(marginal)
    last: FlowRun = runs["long"][-1]
    flow_books = {p: last.books[f"coinbase_{p}"] for p in inp.products}

    floor_us = [f["us_per_frame"] for f in runs["floor"]]
    floor_books = runs["floor"][-1]["books"]
    _same_books("floor", floor_books, flow_books, runs["floor"][-1]["top"])
    bench.row("floor", "Floor: minimal pipeline (msgspec decode + dict book + top of book)",
              median(floor_us), "µs/frame",
              notes=f"{inp.long['update_frames']:,} update frames timed, no Bytewax",
              runs_us=floor_us, books=floor_books, top=runs["floor"][-1]["top"],
              what="benchmarks/floor.py in a fresh process over the long capture's update "
                   "frames (snapshots untimed): typed msgspec decode, a dict per side, best "
                   "bid/ask (heap per side, lazy deletion) with sizes, mid and spread")

    ratios = [m / f for m, f in zip(marginal, floor_us)]
    bench.row("full_flow", "Full flow, marginal (python -m bytewax.run, JSON-lines sink)",
              flow_us, "µs/frame", ratio=median(ratios), ratio_unit="× floor",
              notes=f"CPU of a {inp.long['update_frames']:,}-frame run − a "
                    f"{inp.short['update_frames']:,}-frame one; {1e6 / flow_us:,.0f} frames/s; "
                    f"by wall time {median(marginal_wall):.1f} µs/frame",
              runs_us=marginal, ratios=ratios, books=flow_books, wall_runs_us=marginal_wall,
              cpu_s={"short": [x.cpu for x in runs["short"]],
                     "long": [x.cpu for x in runs["long"]]},
              wall_s={"short": [x.wall for x in runs["short"]],
                      "long": [x.wall for x in runs["long"]]},
              short=inp.short, long=inp.long,
              what="python -m bytewax.run dataflows.orderbook:flow with LOBSTREAM_REPLAY (full "
                   "speed), the default JSON-lines sink (replace mode) and every other setting "
                   "at its default (validation is always on); marginal µs/frame = (CPU time "
                   "of the process over the long capture - over the short one) / extra update "
                   "frames, per round; "
                   "ratio = that / the floor of the same round. Includes the start-up scan of "
                   "the capture, which grows with it")

    if env is None:
        bench.skip("cryptofeed", "cryptofeed on the same frames", env_note)
    else:
        cf = runs["cryptofeed"]
        cf_us = [c["us_per_frame"] for c in cf]
        cf_ratios = [c / m for c, m in zip(cf_us, marginal)]
        sizes = "; ".join(f"{p} {b['bids']:,}/{b['asks']:,}" for p, b in cf[-1]["books"].items())
        ours = "; ".join(f"{p} {b['bids']:,}/{b['asks']:,}" for p, b in flow_books.items())
        bench.row("cryptofeed", f"cryptofeed {env.cryptofeed} (Python {env.version}) on the "
                  "same frames", median(cf_us), "µs/frame", ratio=median(cf_ratios),
                  ratio_unit="× (lobstream frames/s ÷ cryptofeed's)",
                  notes=f"books bids/asks: cryptofeed {sizes}; lobstream {ours}",
                  runs_us=cf_us, ratios=cf_ratios, books=cf[-1]["books"], top=cf[-1]["top"],
                  books_match=_books_equal(cf[-1]["books"], flow_books),
                  tops_match=all([float(v) for v in cf[-1]["top"].get(p, [])[:4]] == b["top"][:4]
                                 for p, b in flow_books.items()),
                  python=env.base, found=env.found, venv=env_note, order_book=cf[-1]["order_book"],
                  what="cryptofeed's Coinbase feed (its own venv) handed every frame of the "
                       "long capture through message_handler, offline, with an L2 callback "
                       "computing best bid/ask with sizes, mid and spread; the update frames "
                       "after both snapshots timed; ratio = its µs/frame / the full flow's "
                       "marginal µs/frame of the same round")

    naive_us = [n["us_per_frame"] for n in runs["naive"]]
    _same_books("naive", runs["naive"][-1]["books"], flow_books)
    bench.row("naive", "Naive tutorial book (max()/min() after every change)",
              1e6 / median(naive_us), "frames/s",
              ratio=median([n / m for n, m in zip(naive_us, marginal)]),
              ratio_unit="× (full flow frames/s ÷ naive's)",
              notes=f"{inp.naive_frames} frames of a repeated pass, after "
                    f"{inp.naive_start:,} untimed", runs_us=naive_us,
              what="benchmarks/naive.py (the Bytewax tutorial's book, orjson, plain loop) in a "
                   "fresh process over one repeated pass of the long capture's updates; ratio "
                   "= its µs/frame / the full flow's marginal µs/frame of the same round")

    bench.core = inp


def profile(bench: Any) -> None:
    """The long flow run once more, under py-spy: each step's share of its time."""
    spy, spy_note = profiling.spy_command()
    if spy is None:
        bench.skip("steps", "Per-step profile of the full flow", spy_note)
        return
    inp: Inputs = bench.core
    run = run_flow(inp.long["path"], bench.work, "profile", spy=spy)
    assert run.samples is not None
    shares, samples = profiling.step_shares(run.samples)
    # The shares divide the unprofiled marginal cost when this run measured it.
    flow_us = bench.rows["full_flow"]["value"] if "full_flow" in bench.rows else None
    for step in profiling.ORDER:
        share = shares[step]
        bench.row(f"step_{_slug(step)}", f"Step: {step}",
                  share * flow_us if flow_us else None, "µs/frame" if flow_us else "",
                  ratio=share, ratio_unit="of the full flow",
                  notes=f"{round(share * samples):,} of {samples:,} samples",
                  what="py-spy samples of the main thread of the full flow's long run "
                       "(start-up and exit left out), sorted into steps by the innermost "
                       "lobstream frame (benchmarks/profiling.py); value = share × the "
                       "full flow's marginal µs/frame")
    bench.extra["profile"] = {"rate_hz": profiling.RATE, "samples": samples,
                              "shares": shares, "wall_s": run.wall}


def _measure(name: str, inp: Inputs, work: Path, r: int, env: Optional[peer.Peer]) -> Any:
    out, log = work / f"{name}_{r}.json", work / f"{name}_{r}.log"
    if name == "floor":
        return run_module("benchmarks.floor", ["--capture", inp.long["path"],
                                               "--warmup", str(inp.warmup)], out, log, 900)
    if name == "naive":
        return run_module("benchmarks.naive", ["--capture", inp.long["path"],
                                               "--warmup", str(inp.naive_start),
                                               "--frames", str(inp.naive_frames)], out, log, 900)
    if name == "cryptofeed":
        assert env is not None
        return run_module("benchmarks.cryptofeed_child",
                          ["--capture", inp.long["path"], "--warmup", str(inp.warmup),
                           "--products", ",".join(inp.products), "--symbols", str(SYMBOLS_REPLY)],
                          out, log, 900, python=env.python)
    meta = inp.short if name == "short" else inp.long
    run = run_flow(meta["path"], work, f"flow_{name}_{r}")
    expected = meta["update_frames"] + len(inp.products)
    if run.summaries != expected:
        raise RuntimeError(f"flow {name}: {run.summaries} summaries, expected {expected} "
                           "(a book crossed or gapped?)")
    return run


def _books_equal(theirs: Dict[str, Dict[str, Any]], ours: Dict[str, Dict[str, Any]]) -> bool:
    return all(theirs.get(p, {}).get(k) == b[k] for p, b in ours.items() for k in ("bids", "asks"))


def _same_books(name: str, theirs: Dict[str, Dict[str, Any]], ours: Dict[str, Dict[str, Any]],
                tops: Optional[Dict[str, List[float]]] = None) -> None:
    """A reference pipeline must end with the flow's books: the same sizes and, where
    it reports them, the same best levels, mid and spread."""
    same = _books_equal(theirs, ours)
    if tops is not None:
        same = same and all(tops.get(p) == b["top"] for p, b in ours.items())
    if not same:
        raise RuntimeError(f"{name}'s books {theirs} (tops {tops}) differ from the flow's {ours}")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
