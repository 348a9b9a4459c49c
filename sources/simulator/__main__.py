"""``python -m sources.simulator --capture PATH [...]``: serve captures until stopped.

Prints exactly one line, ``lobstream simulator listening on ws://HOST:PORT``, once
the port is open (scripts wait for it; with ``--port 0`` it is the only way to
learn the port), and exits 0 on SIGTERM or SIGINT. A bad flag value, a capture
that is missing or not a lobstream capture, or a port that cannot be had prints
one line on stderr naming the problem and exits 2.

Websockets: /coinbase, /coinbase-exchange, /deribit (alias /ws/api/v2),
/binance/stream (and /binance/ws), /binance_usdm/public/stream and
/binance_usdm/market/stream (also unprefixed /public/..., /market/...),
/binance_coinm/stream. REST on the same port:
http://HOST:PORT/coinbase/api/v3/brokerage/market/products,
/coinbase-exchange/products, /deribit/api/v2/public/get_instruments (also
unprefixed /api/v2/...), /binance/api/v3/depth and /exchangeInfo,
/binance_usdm/fapi/v1/depth, /binance_coinm/dapi/v1/depth (also unprefixed
/api/v3/..., /fapi/v1/..., /dapi/v1/...), and the venues' candle endpoints
answered from the captures' trades (:mod:`sources.simulator.candles`).

Faults (see ``sources/simulator/faults.py`` for kinds and keys)::

    --fault gap:venue=coinbase,product=BTC-USD,after=100,frames=3
    --fault abort:connection=0,after=500 --fault refuse:after=500,duration=5
    --fault http_error:venue=deribit,status=429,retry_after=2,every=3
    --fault chain_break:venue=binance_usdm,after=50 --fault stale_snapshot:frames=20
    --random-faults 0.01 --seed 7 --fault-log faults.jsonl

Instruments and limits::

    --clone-books --schedule deribit:BTC-30JUL21-40000-C:list=10,delist=60
    --limit deribit.max_connections=64 --limit coinbase.messages_per_second=8
    --limit binance.rest_weight_per_minute=600 --lifetime 30 --shutdown-notice 5

Test credentials (checked for real: Deribit tokens expire, Coinbase Exchange
signatures must be within 30 s of the server's clock)::

    --api-key deribit:CLIENT_ID:CLIENT_SECRET --token-lifetime 30
    --api-key coinbase_exchange:KEY:BASE64_SECRET:PASSPHRASE --clock-skew 45
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import IO, Dict, List, NoReturn, Optional, Tuple

import orjson

from sources.simulator.candles import load_prints
from sources.simulator.clock import RETIME_MODES
from sources.simulator.context import REFERENCE_DIR, SimulatorConfig
from sources.simulator.exchanges import EXCHANGES, exchange
from sources.simulator.faults import RANDOM_KINDS, Fault, FaultPlan, FaultRecord, random_faults
from sources.simulator.limits import LIMIT_KEYS, parse_limit
from sources.simulator.market import load_recording
from sources.simulator.outbox import SendRecord
from sources.simulator.recording import Recording
from sources.simulator.server import SimulatorServer, check_fault_venues
from sources.simulator.universe import Listing

PROG = "python -m sources.simulator"


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


def _limit_defaults() -> str:
    return "; ".join(f"{e.venue}: " + (", ".join(f"{k}={getattr(e.limits, k)}" for k in LIMIT_KEYS
                                                 if getattr(e.limits, k) is not None) or "none")
                     for e in EXCHANGES)


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line too (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--capture", action="append", required=True, metavar="PATH",
                   help="lobstream capture to serve (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port (default: %(default)s)")
    p.add_argument("--speed", type=float, default=1.0,
                   help="1 = recorded pace, X = X times faster, 0 = as fast as clients read")
    p.add_argument("--rate", type=float, default=None, metavar="N",
                   help="send N book frames per second per connection, ignoring recorded times")
    p.add_argument("--retime", choices=RETIME_MODES, default="now",
                   help="now: exchange times moved so each venue's recording starts when the "
                        "server does; none: as recorded (default: %(default)s)")
    p.add_argument("--clone-books", action="store_true",
                   help="serve every listed instrument without a recorded book with a recorded "
                        "book of the same venue, under its own name")
    p.add_argument("--schedule", action="append", default=[],
                   metavar="VENUE:NAME[:list=S][,delist=S]",
                   help="list an instrument only from S seconds of server time, or delist it "
                        "then (repeatable)")
    p.add_argument("--limit", action="append", default=[], metavar="VENUE.KEY=N|off",
                   help=f"change a per-IP cap; KEY: {', '.join(LIMIT_KEYS)} (repeatable; "
                        f"defaults: {_limit_defaults()})")
    p.add_argument("--reference-dir", default=str(REFERENCE_DIR), metavar="DIR",
                   help="the venues' recorded REST replies ('' serves empty instrument lists; "
                        "default: the bundled recordings/reference)")
    p.add_argument("--send-log", metavar="PATH",
                   help="write venue,product,seq,t_send_ms for every book frame sent")
    p.add_argument("--subscribe-timeout", type=float, default=5.0,
                   help="Coinbase: close connections that have not subscribed by then")
    p.add_argument("--min-heartbeat", type=float, default=10.0,
                   help="Deribit: smallest public/set_heartbeat interval accepted")
    p.add_argument("--lifetime", type=float, default=None, metavar="S",
                   help="Binance: close connections after S seconds (default: 24 h)")
    p.add_argument("--shutdown-notice", type=float, default=600.0, metavar="S",
                   help="Binance: send serverShutdown S seconds before the lifetime ends "
                        "(default: %(default)s)")
    p.add_argument("--ping-interval", type=float, default=None, metavar="S",
                   help="Binance: seconds between pings (default: 20 spot, 180 futures)")
    p.add_argument("--pong-timeout", type=float, default=None, metavar="S",
                   help="Binance: close a connection whose pong is this late "
                        "(default: 60 spot, 600 futures)")
    p.add_argument("--weight-window", type=float, default=60.0, metavar="S",
                   help="Binance: the REST weight budget's window (default: %(default)s)")
    p.add_argument("--deflate", action="store_true", help="offer permessage-deflate")
    p.add_argument("--api-key", action="append", default=[], metavar="VENUE:FIELD:...",
                   help="an API key the venue accepts (repeatable): deribit:CLIENT_ID:SECRET, "
                        "coinbase_exchange:KEY:BASE64_SECRET:PASSPHRASE")
    p.add_argument("--token-lifetime", type=float, default=900.0, metavar="S",
                   help="Deribit: seconds an access token lives (default: %(default)s)")
    p.add_argument("--clock-skew", type=float, default=0.0, metavar="S",
                   help="the venues' clock runs S seconds ahead where signatures are timed")
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


def parse_api_key(spec: str) -> Tuple[str, Tuple[str, ...]]:
    """``VENUE:FIELD:...`` as ``(venue, fields)``; the last field keeps any further
    ``:`` (a passphrase may contain one). Raises ValueError."""
    venue, _, rest = spec.partition(":")
    fields = exchange(venue).key_fields
    if not fields:
        raise ValueError(f"--api-key {venue}: the venue has no authentication")
    return venue, tuple(rest.split(":", len(fields) - 1))


def config_from(args: argparse.Namespace) -> SimulatorConfig:
    """The config the flags ask for; raises ValueError on a bad value."""
    limits: dict = {}
    for spec in args.limit:
        venue, key, value = parse_limit(spec)
        limits.setdefault(venue, {})[key] = value
    api_keys: Dict[str, List[Tuple[str, ...]]] = {}
    for spec in args.api_key:
        venue, key = parse_api_key(spec)
        api_keys.setdefault(venue, []).append(key)
    return SimulatorConfig(speed=args.speed, rate=args.rate,
                           subscribe_timeout=args.subscribe_timeout,
                           min_heartbeat=args.min_heartbeat, compression=args.deflate,
                           retime=args.retime, clone_books=args.clone_books,
                           schedule=[Listing.parse(spec) for spec in args.schedule],
                           limits=limits, reference_dir=args.reference_dir or None,
                           lifetime=args.lifetime, shutdown_notice=args.shutdown_notice,
                           ping_interval=args.ping_interval, pong_timeout=args.pong_timeout,
                           weight_window=args.weight_window, api_keys=api_keys,
                           token_lifetime=args.token_lifetime, clock_skew=args.clock_skew)


async def serve(server: SimulatorServer) -> None:
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


def run(args: argparse.Namespace, config: SimulatorConfig, faults: List[Fault],
        recording: Recording) -> None:
    send_log = SendLogFile(args.send_log) if args.send_log else None
    fault_log = FaultLogFile(args.fault_log) if args.fault_log else None
    try:
        plan = FaultPlan(faults, seed=args.seed, on_inject=fault_log) if faults else None
        server = SimulatorServer(recording, host=args.host, port=args.port, config=config,
                                 send_log=send_log, faults=plan,
                                 candles=load_prints(args.capture))
        asyncio.run(serve(server))
    finally:
        for log in (send_log, fault_log):
            if log is not None:
                log.close()


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """Serve until stopped; ``prog`` names the command in help and errors
    (``lobstream simulate`` calls this too)."""
    args = parser(prog).parse_args(argv)
    try:
        config = config_from(args)
        faults = fault_list(args)
        recording = load_recording(args.capture)
        run(args, config, faults, recording)
    except (ValueError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
