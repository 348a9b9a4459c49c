"""What the subcommands share: the command type, one-line usage errors, and the
options that set lobstream settings.

Settings options are sugar over the ``LOBSTREAM_*`` variables: each becomes one
variable for the run (so a typo in ``--set`` gets the same "did you mean" as a
variable would), laid over the configuration file and the environment, and
``lobstream config`` reports it as coming from an option.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from pathlib import Path
from typing import Callable, Dict, NamedTuple, NoReturn, Optional

from dataflows.config import env_names, read_layers

#: The repository checkout (the demo's recordings and examples live there).
ROOT = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    """A command line that cannot work; the message is one line."""


class Command(NamedTuple):
    """One ``lobstream`` subcommand.

    ``configure`` adds its arguments; ``execute`` runs it and returns the exit
    status. A ``passthrough`` command hands its arguments unparsed to a tool that
    has its own parser (``execute`` gets ``args.argv``). ``epilog`` closes its
    ``--help``."""

    name: str
    help: str
    description: str
    configure: Callable[[argparse.ArgumentParser], None]
    execute: Callable[[argparse.Namespace], int]
    passthrough: bool = False
    epilog: str = ""


class Parser(argparse.ArgumentParser):
    """Usage errors as one line naming the command and its --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fail(prog: str, message: str, status: int = 2) -> int:
    """Print a one-line error for ``prog`` and return ``status``."""
    sys.stderr.write(f"{prog}: error: {message}\n")
    return status


def add_settings(parser: argparse.ArgumentParser, *, out: bool = True) -> None:
    """Options that set lobstream settings for this run."""
    group = parser.add_argument_group(
        "settings (each sets a LOBSTREAM_* variable for this run; "
        "lobstream config --keys lists them all)")
    if out:
        group.add_argument("--out", metavar="DIR",
                           help="directory of the per-product JSON-lines files (run.jsonl_dir)")
    group.add_argument("--stdout", action="store_true",
                       help="also write every record to stdout as JSON lines; alerts go there "
                            "as type \"alert\" records and every human line to stderr, so the "
                            "output pipes into jq")
    group.add_argument("--bars", action="store_true",
                       help="print a compact line per closed bar (bars.console)")
    group.add_argument("--metrics", metavar="HOST:PORT",
                       help="serve metrics for lobstream top (run.metrics_addr; process i of a "
                            "cluster uses PORT+i)")
    group.add_argument("--status", type=float, metavar="S",
                       help="seconds between status lines, 0 for none (run.status_interval)")
    group.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE",
                       help="any setting, e.g. --set run.alert_bps=5 "
                            "--set coinbase.products=BTC-USD,SOL-USD (repeatable)")


def _variable(setting: str) -> str:
    """The environment variable of ``table.key``; UsageError with the closest name."""
    by_key = {f"{table}.{key}": name for name, (table, key) in env_names().items()}
    if setting not in by_key:
        close = difflib.get_close_matches(setting, list(by_key), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else \
            "; lobstream config --keys lists them"
        raise UsageError(f"--set {setting}: unknown setting{hint}")
    return by_key[setting]


def settings_overrides(args: argparse.Namespace) -> Dict[str, str]:
    """The ``LOBSTREAM_*`` variables the settings options ask for (``--stdout``
    is applied by :func:`run_environment`, which knows the file's sinks)."""
    env: Dict[str, str] = {}
    for item in args.set:
        setting, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set {item}: expected TABLE.KEY=VALUE, e.g. run.alert_bps=5")
        env[_variable(setting.strip())] = value.strip()
    if getattr(args, "out", None):
        env["LOBSTREAM_JSONL_DIR"] = args.out
    if args.bars:
        env["LOBSTREAM_BARS_CONSOLE"] = "true"
    if args.metrics:
        env["LOBSTREAM_METRICS_ADDR"] = args.metrics
    if args.status is not None:
        env["LOBSTREAM_STATUS_INTERVAL"] = f"{args.status:g}"
    return env


def run_environment(config: Optional[str], overrides: Dict[str, str],
                    stdout: bool = False) -> Dict[str, str]:
    """The environment a run reads: this process's, the configuration file, the
    options; ``stdout`` adds the stdout sink to the sinks otherwise in force.
    Raises ConfigError (one line) for a bad file or name."""
    env = dict(os.environ)
    if config:
        if not Path(config).is_file():
            raise UsageError(f"{config}: no such configuration file")
        env["LOBSTREAM_CONFIG"] = config
    env.update(overrides)
    if stdout:
        sinks = read_layers(env).tables["run"].get("sinks", ["jsonl"])
        names = [str(s).strip() for s in (sinks.split(",") if isinstance(sinks, str) else sinks)]
        env["LOBSTREAM_SINKS"] = ",".join(dict.fromkeys([n for n in names if n] + ["stdout"]))
        overrides["LOBSTREAM_SINKS"] = env["LOBSTREAM_SINKS"]
    return env
