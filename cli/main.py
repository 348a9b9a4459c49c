"""``lobstream``: one command for everything a user does, each subcommand with its own --help.

Why argparse and not click or typer: the simulator and the converter already
have complete argparse parsers, which ``simulate`` and ``convert`` reuse as they
are; Bytewax's own ``-w/-i/-a/-r/-s/-b`` are argparse flags with environment
defaults, declared the same way here; and it costs no dependency. What click
would add (nested groups, prompts, completion) no command here needs. Usage
errors are one line naming the command and its ``--help``.

Each command lives in a module exposing ``COMMANDS`` (a list of
:class:`~cli.common.Command`); :data:`MODULES` is the order ``--help`` lists
them. The tick store's query and read commands join as one more module there,
built the same way.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Dict, List, Optional, Sequence

from cli.common import Command, Parser
from dataflows.banner import version

#: Command modules, in the order ``lobstream --help`` lists their commands.
MODULES = ("cli.flow", "cli.demo", "cli.tools", "cli.settings", "cli.plot", "cli.top")

DESCRIPTION = """\
Real-time limit-order-book and trade analytics on Bytewax: exact books per
product, spread, microprice, imbalances, order flow imbalance, trades and bars,
from the exchanges' public feeds or from recordings.

  lobstream demo                        # offline: simulator + bundled recordings
  lobstream run examples/live.toml      # the live public feeds
  lobstream plot book out/offline -o book.png
  lobstream top 127.0.0.1:9464          # a running flow, live

Each command has its own --help."""


def commands() -> List[Command]:
    found: List[Command] = []
    for name in MODULES:
        found.extend(importlib.import_module(name).COMMANDS)
    return found


def build_parser(cmds: Sequence[Command]) -> Parser:
    parser = Parser(prog="lobstream", description=DESCRIPTION,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"lobstream {version()}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND", parser_class=Parser)
    for cmd in cmds:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help,
                           epilog=cmd.epilog or None,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           add_help=not cmd.passthrough)
        cmd.configure(p)
        p.set_defaults(command=cmd, command_parser=p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmds = commands()
    by_name: Dict[str, Command] = {c.name: c for c in cmds}
    if argv and argv[0] in by_name and by_name[argv[0]].passthrough:
        # The tool parses its own arguments, --help included.
        return by_name[argv[0]].execute(argparse.Namespace(argv=argv[1:]))
    parser = build_parser(cmds)
    args, extra = parser.parse_known_args(argv)
    command: Optional[Command] = getattr(args, "command", None)
    if command is None:
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        parser.print_help(sys.stderr)
        return 2
    if extra:  # named by the subcommand, whose --help lists what it takes
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return command.execute(args)


if __name__ == "__main__":
    sys.exit(main())
