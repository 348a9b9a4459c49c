"""Real PostgreSQL and MariaDB servers for tests: plain processes on loopback ports.

Each server gets a throwaway data directory (``initdb`` / ``mariadb-install-db``),
listens only on 127.0.0.1 on a free port, and is stopped (and its directory
removed) by :meth:`Server.stop`. Debian installs the binaries (``.ci/run`` does
it); when they are absent, :func:`missing` says which, for a skip reason.
PostgreSQL refuses to run as root, so as root both servers run as their Debian
system users (``postgres``, ``mysql``).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from typing import List, Optional

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
MARIADB = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
MARIADB_INSTALL = shutil.which("mariadb-install-db")
#: Seconds a server may take to accept connections (a loaded 2-core machine).
START_DEADLINE = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing(kind: str) -> Optional[str]:
    """Why ``kind`` ("postgresql" or "mariadb") cannot run here, or None."""
    if kind == "postgresql":
        if not PG_BIN:
            return "PostgreSQL binaries absent (apt-get install postgresql)"
        return _user_missing("postgres")
    if not (MARIADB and MARIADB_INSTALL):
        return "MariaDB binaries absent (apt-get install mariadb-server)"
    return _user_missing("mysql")


def _user_missing(user: str) -> Optional[str]:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(user)
    except KeyError:
        return f"running as root and there is no {user!r} user to run the server as"
    return None


class Server:
    def __init__(self, proc: subprocess.Popen, directory: str, dsn: str, log: str) -> None:
        self.proc = proc
        self.directory = directory
        self.dsn = dsn
        self.log = log

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def _as(user: str, argv: List[str]) -> List[str]:
    return (["runuser", "-u", user, "--"] + argv) if os.geteuid() == 0 else argv


def _owned_dir(user: str) -> str:
    path = tempfile.mkdtemp(prefix=f"lobstream-{user}-")
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _wait(proc: subprocess.Popen, port: int, log: str) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"server did not listen on {port} within {START_DEADLINE:g} s: "
                       f"{_tail(log)}")


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read()[-1500:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def start_postgres() -> Server:
    bin_dir = PG_BIN[-1]
    top = _owned_dir("postgres")
    data, log = f"{top}/data", f"{top}/server.log"
    subprocess.run(_as("postgres", [f"{bin_dir}/initdb", "-D", data, "-U", "lobstream",
                                    "--auth=trust", "--no-sync", "-E", "UTF8"]),
                   check=True, capture_output=True, timeout=120)
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _as("postgres", [f"{bin_dir}/postgres", "-D", data, "-h", "127.0.0.1",
                             "-p", str(port), "-k", top, "-F", "-c", "fsync=off"]),
            stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, top, f"postgresql://lobstream@127.0.0.1:{port}/postgres", log)
    try:
        _wait(proc, port, log)
        _pg_ready(server.dsn)
    except Exception:
        server.stop()
        raise
    return server


def _pg_ready(dsn: str) -> None:
    import psycopg

    deadline = time.monotonic() + START_DEADLINE
    while True:
        try:
            psycopg.connect(dsn, connect_timeout=5).close()
            return
        except psycopg.OperationalError:  # "the database system is starting up"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def start_mariadb() -> Server:
    top = _owned_dir("mysql")
    data, log, sock = f"{top}/data", f"{top}/server.log", f"{top}/mysqld.sock"
    user = ["--user=mysql"] if os.geteuid() == 0 else []
    subprocess.run([MARIADB_INSTALL, "--no-defaults", f"--datadir={data}", *user,
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True, timeout=180)
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [MARIADB, "--no-defaults", f"--datadir={data}", *user, f"--port={port}",
             "--bind-address=127.0.0.1", f"--socket={sock}", "--skip-name-resolve",
             "--innodb-flush-log-at-trx-commit=2", f"--pid-file={top}/mysqld.pid",
             "--skip-log-bin"],
            stdout=out, stderr=subprocess.STDOUT)
    server = Server(proc, top, f"mysql://lobstream:lobstream@127.0.0.1:{port}/lobstream", log)
    try:
        _wait(proc, port, log)
        import pymysql

        conn = pymysql.connect(unix_socket=sock, user="root", password="")
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE DATABASE IF NOT EXISTS lobstream")
                cur.execute("CREATE USER IF NOT EXISTS 'lobstream'@'127.0.0.1' "
                            "IDENTIFIED BY 'lobstream'")
                cur.execute("GRANT ALL ON lobstream.* TO 'lobstream'@'127.0.0.1'")
            conn.commit()
        finally:
            conn.close()
    except Exception:
        server.stop()
        raise
    return server
