"""How this process takes part in the run: Bytewax's own scaling and recovery options.

``lobstream run`` and ``python -m bytewax.run`` take the same flags with the same
environment defaults (``-w/-i/-a`` for workers and processes, ``-r/-s/-b`` for
recovery), and both end in Bytewax's ``cli_main``, the only entry point that
serves Bytewax's metrics API. The flow needs them too, before Bytewax starts:
the start banner says which connections this process opens and where recovery
lives, and process ``i`` serves its metrics on ``metrics_addr``'s port + ``i``.
Under ``python -m bytewax.run`` they are read from its command line
(:func:`from_bytewax_argv`) without disturbing it.
"""

from __future__ import annotations

import argparse
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence

from bytewax.recovery import RecoveryConfig

#: Bytewax's epoch length when recovery is off (what ``bytewax.run`` uses).
DEFAULT_EPOCH_S = 10


class LaunchError(ValueError):
    """Scaling or recovery options that cannot work together; one line."""


class Launch(NamedTuple):
    """This process's place in the run and its recovery settings."""

    workers_per_process: int = 1
    process_id: Optional[int] = None
    addresses: Optional[List[str]] = None
    recovery_dir: Optional[Path] = None
    snapshot_s: Optional[int] = None
    backup_s: Optional[int] = None

    @property
    def processes(self) -> int:
        return len(self.addresses) if self.addresses else 1

    @property
    def process(self) -> int:
        return self.process_id or 0

    @property
    def total_workers(self) -> int:
        return self.workers_per_process * self.processes

    @property
    def workers(self) -> range:
        """This process's worker indices (Bytewax numbers them process by process)."""
        first = self.process * self.workers_per_process
        return range(first, first + self.workers_per_process)

    def recovery(self) -> str:
        """Recovery as the banner says it."""
        if self.recovery_dir is None:
            return "off (a restart starts afresh; see lobstream run --help)"
        parts = sorted(self.recovery_dir.glob("part-*.sqlite3"))
        return (f"on: {self.recovery_dir}/ ({len(parts)} partitions), snapshot every "
                f"{self.snapshot_s} s, backups kept {self.backup_s} s; resumes from the "
                "last snapshot there, if any")

    def cli_main_kwargs(self) -> Dict[str, Any]:
        """The keyword arguments of ``bytewax.run.cli_main`` these options mean."""
        recovery = None
        if self.recovery_dir is not None:
            recovery = RecoveryConfig(str(self.recovery_dir),
                                      timedelta(seconds=self.backup_s or 0))
        epoch = self.snapshot_s if self.snapshot_s is not None else DEFAULT_EPOCH_S
        return {"workers_per_process": self.workers_per_process, "process_id": self.process_id,
                "addresses": self.addresses, "epoch_interval": timedelta(seconds=epoch),
                "recovery_config": recovery}


def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
    """Bytewax's scaling and recovery flags, with its environment defaults."""
    scaling = parser.add_argument_group(
        "scaling (Bytewax's own flags; prefer processes to workers: workers share the GIL)")
    scaling.add_argument("-w", "--workers-per-process", type=int,
                         default=env.get("BYTEWAX_WORKERS_PER_PROCESS"), metavar="N",
                         help="worker threads in this process [env BYTEWAX_WORKERS_PER_PROCESS]")
    scaling.add_argument("-i", "--process-id", type=int, default=env.get("BYTEWAX_PROCESS_ID"),
                         metavar="I", help="this process's index in -a [env BYTEWAX_PROCESS_ID]")
    scaling.add_argument("-a", "--addresses", default=env.get("BYTEWAX_ADDRESSES"),
                         metavar="'H:P;H:P'",
                         help="every process's address, separated by ';' [env BYTEWAX_ADDRESSES]")
    recovery = parser.add_argument_group(
        "recovery (create the directory once: python -m bytewax.recovery DIR PARTITIONS)")
    recovery.add_argument("-r", "--recovery-directory", type=Path,
                          default=env.get("BYTEWAX_RECOVERY_DIRECTORY"), metavar="DIR",
                          help="resume from and snapshot to DIR [env BYTEWAX_RECOVERY_DIRECTORY]")
    recovery.add_argument("-s", "--snapshot-interval", type=int,
                          default=env.get("BYTEWAX_SNAPSHOT_INTERVAL"), metavar="S",
                          help="seconds between snapshots (also the epoch length; default "
                               f"{DEFAULT_EPOCH_S}) [env BYTEWAX_SNAPSHOT_INTERVAL]")
    recovery.add_argument("-b", "--backup-interval", type=int,
                          default=env.get("BYTEWAX_RECOVERY_BACKUP_INTERVAL"), metavar="S",
                          help="seconds of older snapshots kept "
                               "[env BYTEWAX_RECOVERY_BACKUP_INTERVAL]")


def _int(name: str, value: Any) -> Optional[int]:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise LaunchError(f"{name}={value!r}: expected an integer") from None


def from_args(args: argparse.Namespace) -> Launch:
    """The launch the parsed flags ask for; LaunchError (one line) if they cannot work."""
    workers = _int("--workers-per-process", args.workers_per_process) or 1
    process = _int("--process-id", args.process_id)
    addresses = [a.strip() for a in args.addresses.split(";") if a.strip()] \
        if args.addresses else None
    snapshot = _int("--snapshot-interval", args.snapshot_interval)
    backup = _int("--backup-interval", args.backup_interval)
    recovery = Path(args.recovery_directory) if args.recovery_directory else None
    if workers < 1:
        raise LaunchError(f"--workers-per-process={workers}: must be at least 1")
    if process is not None and not addresses:
        raise LaunchError("--process-id needs --addresses (every process's host:port)")
    if addresses and process is None:
        raise LaunchError("--addresses needs --process-id (this process's index in them)")
    if addresses and process is not None and not 0 <= process < len(addresses):
        raise LaunchError(f"--process-id={process}: must be in 0..{len(addresses) - 1} "
                          f"for {len(addresses)} addresses")
    if recovery is not None:
        if snapshot is None or backup is None:
            raise LaunchError("recovery needs --snapshot-interval and --backup-interval "
                              "(seconds), e.g. -r recovery -s 5 -b 30")
        if not recovery.is_dir():
            raise LaunchError(f"--recovery-directory={recovery}: no such directory; create it "
                              f"with: python -m bytewax.recovery {recovery} PARTITIONS")
    for name, value in (("--snapshot-interval", snapshot), ("--backup-interval", backup)):
        if value is not None and value < 0:
            raise LaunchError(f"{name}={value}: must not be negative")
    if snapshot == 0:
        raise LaunchError("--snapshot-interval=0: must be at least 1 second")
    return Launch(workers, process, addresses, recovery, snapshot, backup)


def from_bytewax_argv(argv: Sequence[str], env: Optional[Mapping[str, str]] = None) -> Launch:
    """The launch of a ``python -m bytewax.run`` command line (its other arguments
    are ignored; Bytewax itself reports problems with them)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser, os.environ if env is None else env)
    args, _ = parser.parse_known_args(list(argv))
    try:
        return from_args(args)
    except LaunchError:
        return Launch(_int("-w", args.workers_per_process) or 1)
