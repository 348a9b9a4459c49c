"""The start banner: what this process is about to follow and where everything goes.

Printed on stderr once the configuration is checked and the products resolved,
before the first connection opens, so a user sees at once which venues,
products and connections this process has, where records are written, whether
raw frames are recorded, and whether recovery is on and from where. In a run of
several processes each one prints its own share.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Dict, List, Sequence

from dataflows.config import Config
from dataflows.launch import Launch
from dataflows.monitoring import metrics_port
from sources.runtime.placement import ConnectionPlan

#: Product names listed per venue before "(N more)".
SHOWN_PRODUCTS = 6


def version() -> str:
    """lobstream's installed version."""
    try:
        return metadata.version("lobstream")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN_PRODUCTS])
    return shown + (f" ({len(items) - SHOWN_PRODUCTS} more)" if len(items) > SHOWN_PRODUCTS
                    else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _live(cfg: Config, plans: Sequence[ConnectionPlan], launch: Launch) -> List[str]:
    mine = [p for p in plans if p.worker in launch.workers]
    lines = []
    for name, vc in cfg.venues.items():
        here = [p for p in mine if p.venue.name == name]
        products = sorted(q for p in here for q in p.products)
        share = f"{len(products)} of {len(vc.products)}" if launch.processes > 1 \
            else str(len(products))
        lines.append(f"  {name:<18} {share} products on {_plural(len(here), 'connection')}"
                     f"   {vc.url}")
        if products:
            lines.append(f"  {'':<18} {_names(products)}")
    return lines


def _replay(cfg: Config, streams: Dict[str, Any]) -> List[str]:
    speed = "as fast as possible" if cfg.replay_speed == 0 else \
        f"{cfg.replay_speed:g}x the recorded pace"
    lines = [f"  {'replay':<18} {', '.join(cfg.replay)} ({speed})"]
    venues: Dict[str, List[str]] = {}
    for stream, info in streams.items():
        venues.setdefault(info.venue, []).append(stream)
    for venue, names in sorted(venues.items()):
        lines.append(f"  {venue:<18} {_plural(len(names), 'recorded connection')}: "
                     f"{_names(sorted(names))}; products as recorded")
    return lines


def banner(cfg: Config, launch: Launch, plans: Sequence[ConnectionPlan],
           streams: Dict[str, Any]) -> str:
    """The banner text (several lines, no trailing newline)."""
    workers = launch.workers
    if launch.processes == 1:
        where = _plural(len(workers), "worker")
    else:
        mine = f"worker {workers.start}" if len(workers) == 1 else \
            f"workers {workers.start}-{workers.stop - 1}"
        where = f"process {launch.process} of {launch.processes}, {mine} of {launch.total_workers}"
    lines = [f"lobstream {version()}: {where}"]
    lines += _replay(cfg, streams) if cfg.replay else _live(cfg, plans, launch)
    outputs = []
    for sink in cfg.sinks:
        if sink == "jsonl":
            outputs.append(f"jsonl {cfg.jsonl_dir}/<venue>_<product>.jsonl")
        elif sink == "stdout":
            outputs.append("stdout (JSON lines)")
        else:
            outputs.append(sink)
    lines.append(f"  {'records':<18} {'; '.join(outputs)}")
    if "stdout" in cfg.sinks:
        lines.append(f"  {'console':<18} alerts as JSON lines on stdout (type \"alert\"); "
                     "status changes and everything else on stderr")
    else:
        lines.append(f"  {'console':<18} alerts and book status changes on stdout")
    if cfg.bar_intervals:
        spans = ", ".join(_span(ms) for ms in cfg.bar_intervals)
        shown = "a line per closed bar" if cfg.bar_console else "not shown (--bars shows them)"
        lines.append(f"  {'bars':<18} {spans}; {shown}")
    else:
        lines.append(f"  {'bars':<18} off")
    if not cfg.replay:
        recording = f"raw frames to {cfg.record_dir}/" if cfg.record_dir else "off"
        lines.append(f"  {'recording':<18} {recording}")
    lines.append(f"  {'recovery':<18} {launch.recovery()}")
    if cfg.metrics_addr:
        host, port = metrics_port(cfg.metrics_addr, launch.process)
        lines.append(f"  {'metrics':<18} http://{host}:{port}/metrics (lobstream top {host}:{port})")
    status = f"every {cfg.status_interval:g} s on stderr" if cfg.status_interval else "off"
    lines.append(f"  {'status line':<18} {status}")
    return "\n".join(lines)


def _span(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms} ms"
