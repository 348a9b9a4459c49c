"""cryptofeed, the peer users would run instead, in a virtual environment of its own.

cryptofeed 3 requires Python 3.13 or newer, and lobstream's Bytewax 0.21.1 has
no wheel beyond 3.12, so the two never share an interpreter: on 3.11, pip
silently installs cryptofeed 2.4.1, which loses the ask side of Coinbase Advanced
Trade snapshots and re-sorts its book on every read. The benchmark therefore
looks for the newest Python it can run among :data:`CANDIDATES`, first on
``PATH`` and then under pyenv's versions directory (pyenv's shims on ``PATH`` only
run the versions selected with ``pyenv global``/``local``, so each candidate is
tried, not just found), builds ``out/cryptofeed-venv`` with it once
(``pip install --upgrade cryptofeed`` from PyPI) and reuses it afterwards.
:func:`environment` says how the interpreter was found, or why there is none.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple

import orjson

from benchmarks.common import ROOT

VENV = ROOT / "out" / "cryptofeed-venv"
#: Interpreter names tried, newest first.
CANDIDATES = ("python3.14", "python3.13", "python3.12")
_MARKER = "lobstream-benchmark.json"


@dataclass
class Peer:
    """A working cryptofeed environment."""

    python: str        # the venv's interpreter
    base: str          # the interpreter it was built from
    found: str         # how that interpreter was found
    version: str       # Python version
    cryptofeed: str    # cryptofeed version installed


def _probe(exe: str) -> Optional[Tuple[str, str]]:
    """``(sys.executable, version)`` if ``exe`` runs, else None."""
    try:
        r = subprocess.run([exe, "-c", "import sys, platform; "
                            "print(sys.executable); print(platform.python_version())"],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = r.stdout.split()
    return (lines[0], lines[1]) if r.returncode == 0 and len(lines) == 2 else None


def find_python() -> Tuple[Optional[str], str]:
    """The newest candidate interpreter that runs, and how it was found (or why none)."""
    pyenv = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv") / "versions"
    tried: List[str] = []
    for name in CANDIDATES:
        for directory in os.environ.get("PATH", "").split(os.pathsep):
            exe = Path(directory) / name
            if exe.is_file() and os.access(exe, os.X_OK):
                probe = _probe(str(exe))
                if probe:
                    return probe[0], f"{name} on PATH ({exe} -> {probe[0]})"
                tried.append(f"{exe} does not run")
        versions = sorted(pyenv.glob(f"*/bin/{name}"), reverse=True) if pyenv.is_dir() else []
        for exe in versions:
            probe = _probe(str(exe))
            if probe:
                return probe[0], (f"{name} under pyenv's versions ({exe}); "
                                  + ("; ".join(tried) if tried else f"no {name} on PATH"))
            tried.append(f"{exe} does not run")
    return None, (f"no Python among {', '.join(CANDIDATES)} on PATH or under {pyenv}"
                  + (f" ({'; '.join(tried)})" if tried else ""))


def environment(timeout: float = 600.0) -> Tuple[Optional[Peer], str]:
    """The cryptofeed environment (built on first use), or None and why not."""
    marker = VENV / _MARKER
    python = VENV / "bin" / "python"
    if marker.is_file() and _probe(str(python)):
        return Peer(**orjson.loads(marker.read_bytes())), "reused " + str(VENV)
    base, found = find_python()
    if base is None:
        return None, found
    try:
        subprocess.run([base, "-m", "venv", "--clear", str(VENV)], check=True,
                       capture_output=True, text=True, timeout=timeout)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "cryptofeed"],
                       check=True, capture_output=True, text=True, timeout=timeout)
        out = subprocess.run([str(python), "-c", "import platform; from importlib import "
                              "metadata; print(platform.python_version()); "
                              "print(metadata.version('cryptofeed'))"],
                             check=True, capture_output=True, text=True, timeout=60)
    except subprocess.CalledProcessError as ex:
        last = (ex.stderr or ex.stdout or "").strip().splitlines()[-1:] or [""]
        return None, f"could not build {VENV} with {base}: {last[0][:200]}"
    except subprocess.TimeoutExpired:
        return None, f"building {VENV} with {base} took over {timeout:.0f} s"
    version, cryptofeed = out.stdout.split()
    peer = Peer(str(python), base, found, version, cryptofeed)
    marker.write_bytes(orjson.dumps(peer.__dict__))
    return peer, "built " + str(VENV)
