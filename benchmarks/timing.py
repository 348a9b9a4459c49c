"""Timing one pass over frames, the same way in every program compared.

Standard library only: the peer's program (:mod:`benchmarks.cryptofeed_child`)
uses it under its own interpreter. The figure compared is CPU time (see
:mod:`benchmarks.common`); wall time is kept beside it.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable, Dict, Tuple


def timed_pass(fn: Callable[[], Any], frames: int) -> Tuple[Any, Dict[str, float]]:
    """``fn()``'s result, and its CPU and wall time in total and per frame."""
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    return result, {"frames_timed": frames, "cpu_s": cpu, "wall_s": wall,
                    "us_per_frame": cpu / frames * 1e6, "wall_us_per_frame": wall / frames * 1e6}
