"""``lobstream config``: check a configuration and show the effective settings.

Without options it validates the configuration a run would use (the file, the
``LOBSTREAM_*`` environment and the settings options) and prints every
setting's value and where it came from: ``default``, ``file PATH``,
``environment NAME`` or ``option``. ``--check`` prints one line instead,
``--keys`` lists every key with its variable and default.
"""

from __future__ import annotations

import argparse
import sys

from cli.common import Command, UsageError, add_settings, fail, run_environment, settings_overrides
from dataflows.config import ConfigError
from dataflows.explain import explain, reference
from dataflows.report import table


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", metavar="CONFIG.toml",
                        help="configuration file (default: $LOBSTREAM_CONFIG)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="only validate: one line, exit status 0 or 2")
    mode.add_argument("--keys", action="store_true",
                      help="list every setting with its environment variable and default")
    add_settings(parser)


def _execute(args: argparse.Namespace) -> int:
    if args.keys:
        rows = reference()
        print(table(("key", "environment", "default", "meaning"),
                    [(r.key, r.env, r.value, r.help) for r in rows], (False,) * 4))
        return 0
    try:
        overrides = settings_overrides(args)
        env = run_environment(args.config, overrides, stdout=args.stdout)
        cfg, rows = explain(env, set(overrides))
    except UsageError as ex:
        return fail("lobstream config", str(ex))
    except ConfigError as ex:
        return fail("lobstream config", f"configuration error: {ex}")
    products = sum(len(v.products) for v in cfg.venues.values())
    what = f"replay of {len(cfg.replay)} paths" if cfg.replay else \
        f"{len(cfg.venues)} venues, {products} products"
    if args.check:
        print(f"configuration OK: {what}")
        return 0
    print(table(("setting", "value", "from"), [(r.key, r.value, r.origin) for r in rows],
                (False,) * 3))
    print(f"configuration OK: {what}", file=sys.stderr)
    return 0


COMMANDS = [
    Command("config", "check a configuration and show each setting and where it came from",
            __doc__.split("\n\n", 1)[1], _configure, _execute),
]
