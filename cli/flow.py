"""``lobstream run``, ``record`` and ``replay``: the dataflow, through Bytewax's own ``cli_main``.

All three are the same flow (:mod:`dataflows.orderbook`) with different settings:
``record`` also writes every raw frame to a capture directory, ``replay`` reads
captures instead of the exchanges. Bytewax's ``-w/-i/-a/-r/-s/-b`` pass through
to ``cli_main``, the entry point ``python -m bytewax.run`` uses (and the only one
that serves Bytewax's metrics API), so both ways to start a run behave alike.
The process prints the start banner and, at the end, the per-product table on
stderr, and exits 0, or 3 when no product could be followed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Dict, Mapping, Optional

from bytewax.run import cli_main

from cli.common import (Command, UsageError, add_settings, fail, run_environment,
                        settings_overrides)
from dataflows import launch as launching
from dataflows.config import ConfigError
from dataflows.session import prepare

EPILOG = """\
Settings come from built-in defaults, then the configuration file (TOML), then
LOBSTREAM_* environment variables, then the options above; lobstream config
[FILE] shows each effective value and where it came from, lobstream config
--keys lists every key.

Stopping: Ctrl-C (SIGINT) or SIGTERM ends the inputs, flushes the sinks and
prints the end-of-run table; in a run of several processes, the process that
got the signal tells the others through the dataflow, and every process ends
(a second Ctrl-C aborts). Exit status: 0, 2 for a bad configuration, 3 when no
product could be followed (every one refused, or no book ever received).
"""


def add_flow_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    add_settings(parser)
    launching.add_arguments(parser, env)


def run_flow(prog: str, config: Optional[str], args: argparse.Namespace,
             extra: Optional[Dict[str, str]] = None) -> int:
    """Run the flow with the configuration file, the options and ``extra``
    settings; returns the exit status."""
    try:
        overrides = settings_overrides(args)
        overrides.update(extra or {})
        env = run_environment(config, overrides, stdout=args.stdout)
        launch = launching.from_args(args)
    except (UsageError, launching.LaunchError) as ex:
        return fail(prog, str(ex))
    except ConfigError as ex:
        return fail(prog, f"configuration error: {ex}")
    session = prepare(env, launch)
    try:
        cli_main(session.flow, **launch.cli_main_kwargs())
    except KeyboardInterrupt:
        session.finish()
        sys.stderr.write(f"{prog}: aborted by a second signal; the last batch may be lost\n")
        return 130
    return session.finish()


def _run(args: argparse.Namespace) -> int:
    return run_flow("lobstream run", args.config, args)


def _record(args: argparse.Namespace) -> int:
    return run_flow("lobstream record", args.config, args, {"LOBSTREAM_RECORD_DIR": args.to})


def _replay(args: argparse.Namespace) -> int:
    return run_flow("lobstream replay", args.config, args, {
        "LOBSTREAM_REPLAY": ",".join(args.paths), "LOBSTREAM_REPLAY_SPEED": f"{args.speed:g}"})


def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", metavar="CONFIG.toml",
                        help="configuration file (default: $LOBSTREAM_CONFIG, else built-in "
                             "defaults: Coinbase BTC-USD, ETH-USD and Deribit BTC/ETH-PERPETUAL)")
    add_flow_arguments(parser, os.environ)


def _configure_record(parser: argparse.ArgumentParser) -> None:
    _configure_run(parser)
    parser.add_argument("--to", default="captures", metavar="DIR",
                        help="directory of the captures, one file per connection and rotation "
                             "(default: %(default)s)")


def _configure_replay(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="CAPTURE",
                        help="capture files or directories (lobstream record's, or converted "
                             "with lobstream convert)")
    parser.add_argument("--speed", type=float, default=0.0,
                        help="0 = as fast as possible, deterministic output (default); "
                             "1 = the recorded pace; X = X times faster")
    parser.add_argument("--config", metavar="CONFIG.toml",
                        help="configuration file for everything but the input (depth, bars, sinks)")
    add_flow_arguments(parser, os.environ)


COMMANDS = [
    Command("run", "follow the live exchanges (or what the configuration says)",
            "Run the lobstream dataflow: exchange feeds -> exact books -> summaries, trades, "
            "bars -> sinks.\n\n  lobstream run examples/live.toml\n  lobstream run --set "
            "run.venues=coinbase --set coinbase.products=BTC-USD,SOL-USD --stdout | jq .\n"
            "  lobstream run cfg.toml -i 0 -a '127.0.0.1:2101;127.0.0.1:2102'   # and -i 1 ...\n"
            "  lobstream run cfg.toml -r recovery -s 5 -b 30", _configure_run, _run,
            epilog=EPILOG),
    Command("record", "follow the exchanges and record every raw frame for replay",
            "Run the dataflow and also record every raw frame (both directions, REST "
            "snapshots too) to gzip captures, one file per connection.\n\n"
            "  lobstream record examples/live.toml --to captures", _configure_record, _record,
            epilog=EPILOG),
    Command("replay", "replay captures through the same parsers and checks as live input",
            "Replay captures through the dataflow. At full speed ts_recv is the recorded "
            "receive time, so the output is a deterministic function of the captures.\n\n"
            "  lobstream replay captures/\n  lobstream replay recordings/deribit_options.jsonl.gz "
            "--speed 1 --bars", _configure_replay, _replay, epilog=EPILOG),
]
