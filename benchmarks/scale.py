"""Two processes against one: the production flow as a 2-process cluster (``-i``/``-a``).

Each input is a directory of captures with one stream per product (as a live run
opens one connection per Coinbase product, and as Deribit's placement spreads
instruments over workers), in a short and a long version. For 1 and for 2
processes the per-frame cost is (long run - short run) / extra frames, as for the
full-flow row, so the second process's start-up cancels too; the speedup is the
1-process cost over the 2-process cost, per round of four alternating runs, and
its median is reported.

On a machine that other work keeps busy, two processes rarely get two cores, so
each round also gives the speedup two free cores would allow, from CPU time
alone (:func:`_cpu_bound`): the work the cluster adds and an uneven split both
lower it, the load does not.

Two checks make the speedup mean something: the 2-process run writes exactly
the bytes the 1-process run writes (file by file), and each process's
end-of-run table lists exactly the books whose streams placement gave it, so no
book crossed a process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List

from benchmarks.common import median
from benchmarks.flowrun import FlowRun, run_flow


def stream_workers(capture_dir: str, workers: int) -> List[List[str]]:
    """Per worker, the streams (``venue:product``) placement gives it."""
    from sources.runtime.placement import Unit, assign
    from sources.transport.replay import capture_files, list_streams

    streams = list_streams(capture_files([capture_dir]))
    owner = assign([Unit(s, 1.0) for s in streams], workers)
    return [sorted(s for s, w in owner.items() if w == i) for i in range(workers)]


def process_pair(build: Callable[[Path, int], Dict[str, Any]], work: Path, label: str,
                 short_frames: int, long_frames: int, snapshots: int,
                 rounds: int) -> Dict[str, Any]:
    """Speedup of 2 processes over 1 on captures ``build(directory, frames_per_stream)``."""
    short = build(work / f"{label}_short", short_frames)
    long = build(work / f"{label}_long", long_frames)
    extra = long["update_frames"] - short["update_frames"]
    placed = stream_workers(long["dir"], 2)
    runs: Dict[str, List[FlowRun]] = {f"{p}p_{n}": [] for p in (1, 2) for n in ("short", "long")}
    speedups = []
    cpu_bounds = []
    cost: Dict[int, List[float]] = {1: [], 2: []}
    for r in range(rounds):
        order = [(p, n) for p in (1, 2) for n in ("short", "long")]
        for procs, size in order if r % 2 == 0 else order[::-1]:
            meta = long if size == "long" else short
            run = run_flow(meta["dir"], work, f"{label}_{procs}p_{size}_{r}", processes=procs)
            if run.summaries != meta["update_frames"] + snapshots:
                raise RuntimeError(f"{label}: {run.summaries} summaries for "
                                   f"{meta['update_frames']} updates + {snapshots} snapshots "
                                   "(a book crossed or gapped?)")
            runs[f"{procs}p_{size}"].append(run)
        for procs in (1, 2):
            cost[procs].append((runs[f"{procs}p_long"][-1].wall - runs[f"{procs}p_short"][-1].wall)
                               / extra * 1e6)
        speedups.append(cost[1][-1] / cost[2][-1])
        cpu_bounds.append(_cpu_bound(runs, extra))
    one, two = runs["1p_long"][-1], runs["2p_long"][-1]
    identical = one.digests == two.digests and bool(one.digests)
    on_their_streams = two.books_by_process == placed
    if not identical:
        raise RuntimeError(f"{label}: 1- and 2-process outputs differ")
    if not on_their_streams:
        raise RuntimeError(f"{label}: books per process {two.books_by_process}, "
                           f"their streams on {placed}")
    return {"speedup": median(speedups), "speedups": speedups,
            "cpu_bound_speedup": median(cpu_bounds), "cpu_bound_speedups": cpu_bounds,
            "us_per_frame_1p": median(cost[1]), "us_per_frame_2p": median(cost[2]),
            "frames_per_s_1p": 1e6 / median(cost[1]), "frames_per_s_2p": 1e6 / median(cost[2]),
            "us_per_frame_runs": {f"{p}p": cost[p] for p in (1, 2)},
            "wall_s": {k: [round(r.wall, 3) for r in v] for k, v in runs.items()},
            # Both processes' CPU: whether the cluster adds work, or only waits.
            "cpu_s": {k: [round(r.cpu, 3) for r in v] for k, v in runs.items()},
            "outputs_identical": identical, "books_on_their_streams_process": on_their_streams,
            "books_by_process_2p": two.books_by_process, "extra_frames": extra,
            "short": short, "long": long}


def _cpu_bound(runs: Dict[str, List[FlowRun]], extra: int) -> float:
    """The speedup two free cores would give, from CPU time alone: one process's
    marginal CPU over that of the busier of the two (the slower one sets the pace).
    Other people's load cannot change it, so it says what a busy machine hides:
    the work the cluster adds, and how evenly placement splits the rest."""
    one = runs["1p_long"][-1].cpu - runs["1p_short"][-1].cpu
    two = max(lo - sh for lo, sh in zip(runs["2p_long"][-1].cpus, runs["2p_short"][-1].cpus))
    return one / two if two > 0 else float("nan")
