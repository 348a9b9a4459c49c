"""``lobstream simulate`` and ``lobstream convert``: the simulator and the converter.

Both tools have their own complete parsers (``python -m sources.simulator``,
``python -m sources.capture.convert``); these commands hand them the rest of the
command line unparsed, under the ``lobstream`` name, so ``--help`` is the tool's
own and nothing is declared twice.
"""

from __future__ import annotations

import argparse

from cli.common import Command
from sources.capture import convert
from sources.simulator import __main__ as simulator


def _rest(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("argv", nargs=argparse.REMAINDER)


def _simulate(args: argparse.Namespace) -> int:
    return simulator.main(args.argv, prog="lobstream simulate")


def _convert(args: argparse.Namespace) -> int:
    return convert.main(args.argv, prog="lobstream convert")


COMMANDS = [
    Command("simulate", "serve captures over each venue's real websocket protocol, locally",
            "", _rest, _simulate, passthrough=True),
    Command("convert", "convert cryptofeed, hftbacktest or ssc2ce recordings into captures",
            "", _rest, _convert, passthrough=True),
]
