"""``python -m sources.simulator --capture PATH [...]``: serve captures until stopped.

Prints exactly one line, ``lobstream simulator listening on ws://HOST:PORT``, once
the port is open (scripts wait for it; with ``--port 0`` it is the only way to
learn the port), and exits 0 on SIGTERM or SIGINT. Plain HTTP GETs of the venues'
candle endpoints are answered on the same port from the captures' trades
(:mod:`sources.simulator.candles`).

Faults (see ``sources/simulator/faults.py`` for kinds and keys)::

    --fault gap:venue=coinbase,product=BTC-USD,after=100,frames=3
    --fault abort:connection=0,after=500 --fault refuse:after=500,duration=5
    --random-faults 0.01 --seed 7 --fault-log faults.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import IO, List, Optional

import orjson

from sources.simulator.context import SimulatorConfig
from sources.simulator.faults import RANDOM_KINDS, Fault, FaultPlan, FaultRecord, random_faults
from sources.simulator.candles import load_prints
from sources.simulator.market import load_recording
from sources.simulator.outbox import SendRecord
from sources.simulator.server import SimulatorServer, check_fault_venues


class SendLogFile:
    """The send log as CSV (``venue,product,seq,t_send_ms``), for benchmarks to
    join with the pipeline's output."""

    def __init__(self, path: str) -> None:
        self._f: IO[str] = open(path, "w", encoding="utf-8")
        self._f.write("venue,product,seq,t_send_ms\n")

    def __call__(self, record: SendRecord) -> None:
        seq = "" if record.seq is None else record.seq
        self._f.write(f"{record.venue},{record.product},{seq},{record.t_send_ms:.3f}\n")

    def close(self) -> None:
        self._f.close()


class FaultLogFile:
    """The injection log as JSON lines, flushed as faults happen so a soak run can
    be checked while it goes on."""

    def __init__(self, path: str) -> None:
        self._f: IO[bytes] = open(path, "wb")

    def __call__(self, record: FaultRecord) -> None:
        self._f.write(orjson.dumps(record._asdict()) + b"\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m sources.simulator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--capture", action="append", required=True, metavar="PATH",
                   help="lobstream capture to serve (repeatable)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--speed", type=float, default=1.0,
                   help="1 = recorded pace, X = X times faster, 0 = as fast as clients read")
    p.add_argument("--rate", type=float, default=None, metavar="N",
                   help="send N book frames per second per connection, ignoring recorded times")
    p.add_argument("--send-log", metavar="PATH",
                   help="write venue,product,seq,t_send_ms for every book frame sent")
    p.add_argument("--subscribe-timeout", type=float, default=5.0,
                   help="Coinbase: close connections that have not subscribed by then")
    p.add_argument("--min-heartbeat", type=float, default=10.0,
                   help="Deribit: smallest public/set_heartbeat interval accepted")
    p.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    p.add_argument("--fault", action="append", default=[], metavar="KIND[:key=value,...]",
                   help="inject a fault (repeatable), e.g. close:code=1001,after=50")
    p.add_argument("--random-faults", type=float, metavar="RATE",
                   help="inject a random fault into about RATE of the book frames")
    p.add_argument("--random-kinds", default=",".join(RANDOM_KINDS), metavar="KIND,...",
                   help="fault kinds --random-faults picks from (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for random faults")
    p.add_argument("--fault-log", metavar="PATH",
                   help="write every injected fault as a JSON line")
    return p


def fault_list(args: argparse.Namespace) -> List[Fault]:
    """The faults the flags ask for; raises ValueError on a bad one."""
    faults = [Fault.parse(spec) for spec in args.fault]
    if args.random_faults is not None:
        kinds = [k.strip() for k in args.random_kinds.split(",") if k.strip()]
        faults += random_faults(args.random_faults, kinds)
    check_fault_venues(faults)
    return faults


async def serve(args: argparse.Namespace, config: SimulatorConfig, faults: List[Fault]) -> None:
    send_log = SendLogFile(args.send_log) if args.send_log else None
    fault_log = FaultLogFile(args.fault_log) if args.fault_log else None
    plan = FaultPlan(faults, seed=args.seed, on_inject=fault_log) if faults else None
    server = SimulatorServer(load_recording(args.capture), host=args.host, port=args.port,
                             config=config, send_log=send_log, faults=plan,
                             candles=load_prints(args.capture))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        print(f"lobstream simulator listening on {server.url}", flush=True)
        await stop.wait()
    finally:
        await server.stop()
        if send_log is not None:
            send_log.close()
        if fault_log is not None:
            fault_log.close()


def main(argv: Optional[List[str]] = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    try:
        config = SimulatorConfig(speed=args.speed, rate=args.rate,
                                 subscribe_timeout=args.subscribe_timeout,
                                 min_heartbeat=args.min_heartbeat, compression=args.deflate)
        faults = fault_list(args)
    except ValueError as exc:
        cli.error(str(exc))
    asyncio.run(serve(args, config, faults))
    return 0


if __name__ == "__main__":
    sys.exit(main())
