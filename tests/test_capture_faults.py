"""The recorder against real process and file-system faults, each in a subprocess.

* ``kill -9`` of a process that records: the gzip capture has no trailer, and must
  replay every frame up to its last flush.
* ``RLIMIT_FSIZE`` lowered (SIGXFSZ ignored): writes fail with EFBIG.
* a 256 KiB tmpfs that fills up (ENOSPC) and a read-only tmpfs (EROFS), mounted in
  a private mount namespace (``unshare -m``) so nothing outlives the test; skipped
  where mounting is not allowed. (Tests run as root, and chmod does not stop root.)

In every case the recorder must not raise, must log one clear line, count what it
could not record, resume into a fresh file, and leave only readable captures.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest

from sources.capture.format import CaptureReport, read_capture

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60

_FRAMES = '''
import hashlib, json, logging, os, shutil, signal, subprocess, sys, time
from sources.capture.recorder import Recorder, check_record_dir, RecordDirError
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="LOG %(message)s")
def frame(i):
    return b'{"i":%d,"pad":"%s"}' % (i, hashlib.sha256(b"%d" % i).hexdigest().encode() * 4)
def write(r, start, n):
    for i in range(start, start + n):
        r.write(1.7e12 + i, "coinbase", "coinbase:BTC-USD", frame(i))
    return start + n
'''

KILL_CHILD = _FRAMES + '''
r = Recorder(sys.argv[1], "coinbase", "coinbase:BTC-USD", flush_seconds=0.2)
n = write(r, 0, 3000)
deadline = time.monotonic() + 20
while r.stats().pending and time.monotonic() < deadline:
    time.sleep(0.02)   # the flusher thread writes the burst out
print(n, r.stats().written, flush=True)
while True:            # keep recording until killed: the tail is unflushed
    n = write(r, n, 50)
    time.sleep(0.001)
'''

FSIZE_CHILD = _FRAMES + '''
import resource
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, hard))
r = Recorder(sys.argv[1], "coinbase", "coinbase:BTC-USD", compress=sys.argv[2] == "gz",
             retry_seconds=0.05, rotate_bytes=None)
n = write(r, 0, 6000)   # several times the limit: fails, pauses, retries into new files
paused = r.stats()
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
time.sleep(0.1)
n = write(r, n, 200)
r.close()
s = r.stats()
print(json.dumps({"sent": n, "written": s.written, "dropped": s.dropped, "files": s.files,
                  "paused_before": paused.dropped > 0, "paused_after": s.paused}))
'''

DISK_CHILD = _FRAMES + '''
disk, out, mode = sys.argv[1], sys.argv[2], sys.argv[3]
def mount(*opts):
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(opts), "tmpfs", disk], check=True)
def keep(r):   # copy the recorded files out of the namespace, freeing the tmpfs
    for p in r.files:
        if os.path.exists(p):
            shutil.copy(p, out)
            os.unlink(p)
result = {}
if mode == "full":
    mount("size=256k")
else:
    mount("size=4m", "ro")
    for where in (disk, os.path.join(disk, "sub")):
        try:
            check_record_dir(where)
        except RecordDirError as ex:
            result.setdefault("check", []).append(str(ex))
r = Recorder(disk, "coinbase", "coinbase:BTC-USD", retry_seconds=0.05)
n = 0
deadline = time.monotonic() + 20
while not r.stats().paused and n < 50_000 and time.monotonic() < deadline:
    n = write(r, n, 100)
n = write(r, n, 300)   # recording stays paused: these are dropped and counted
paused = r.stats()
r.flush()
if mode == "full":
    keep(r)              # free the disk
else:
    subprocess.run(["mount", "-o", "remount,rw", disk], check=True)
time.sleep(0.1)
n = write(r, n, 500)
r.close()
keep(r)
s = r.stats()
result.update({"sent": n, "written": s.written, "dropped": s.dropped, "files": s.files,
               "paused_dropped": paused.dropped, "paused_after": s.paused})
print(json.dumps(result))
'''


def run_child(script: str, *args: str, prefix: List[str] = ()) -> subprocess.CompletedProcess:
    proc = subprocess.run([*prefix, sys.executable, "-c", script, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def read_all(files: List[Path]) -> List[int]:
    """Every frame index in the files (sorted by name = time), checking each file
    reads without a single bad line."""
    got: List[int] = []
    for path in sorted(files):
        report = CaptureReport()
        got += [f.msg["i"] for f in read_capture(path, report=report)]
        assert set(report.counts) <= {"damaged_end"}, (path, report.counts)
    return got


def test_kill_9_leaves_a_capture_that_replays_to_its_last_flush(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        assert sel.select(TIMEOUT), "the recording child never reported"
        sent, flushed = map(int, proc.stdout.readline().split())
        assert flushed == sent == 3000
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    (path,) = tmp_path.iterdir()
    report = CaptureReport()
    got = [f.msg["i"] for f in read_capture(path, report=report)]  # no exception
    assert got == list(range(len(got))) and len(got) >= 3000
    assert report.counts["damaged_end"] == 1  # no gzip trailer: it was killed
    assert set(report.counts) <= {"damaged_end", "truncated"}


@pytest.mark.parametrize("compress", ["gz", "plain"])
def test_file_too_large_pauses_counts_and_resumes(tmp_path: Path, compress: str) -> None:
    proc = run_child(FSIZE_CHILD, str(tmp_path), compress)
    stats: Dict[str, object] = json.loads(proc.stdout)
    assert stats["paused_before"] and not stats["paused_after"]
    assert stats["dropped"] > 0
    assert stats["written"] + stats["dropped"] == stats["sent"]
    files = list(tmp_path.iterdir())
    assert len(files) == stats["files"] >= 2
    got = read_all(files)
    assert len(got) == stats["written"] and got == sorted(got)
    assert got[-200:] == list(range(stats["sent"] - 200, stats["sent"]))  # after the limit lifted
    assert "paused: File too large; the feed continues" in proc.stderr
    assert "recording resumed to" in proc.stderr
    for p in files:
        assert p.stat().st_size <= 150_000


def _mount_namespace() -> List[str]:
    probe = Path("/tmp") / f"lobstream-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        if shutil.which("unshare") is None:
            pytest.skip("unshare is not installed")
        ok = subprocess.run(["unshare", "-m", "sh", "-c",
                             f"mount -t tmpfs -o size=64k tmpfs {probe}"],
                            capture_output=True, timeout=TIMEOUT).returncode == 0
    finally:
        probe.rmdir()
    if not ok:
        pytest.skip("cannot mount a tmpfs in a private mount namespace here")
    return ["unshare", "-m"]


@pytest.mark.parametrize("mode", ["full", "read-only"])
def test_full_and_read_only_disks(tmp_path: Path, mode: str) -> None:
    prefix = _mount_namespace()
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    proc = run_child(DISK_CHILD, str(disk), str(out), mode, prefix=prefix)
    stats = json.loads(proc.stdout)
    assert stats["paused_dropped"] >= 300 and not stats["paused_after"]
    assert stats["written"] + stats["dropped"] == stats["sent"]
    got = read_all(list(out.iterdir()))
    assert len(got) == stats["written"] and got == sorted(got)
    assert got[-500:] == list(range(stats["sent"] - 500, stats["sent"]))
    why = "No space left on device" if mode == "full" else "Read-only file system"
    assert f"paused: {why}; the feed continues" in proc.stderr
    assert proc.stderr.count("paused:") == 1  # one line per pause, not per frame
    assert "recording resumed to" in proc.stderr
    if mode == "read-only":
        assert [("cannot write files in it" in m, "cannot create" in m) for m in stats["check"]] \
            == [(True, False), (False, True)]
        assert all(why in m and "\n" not in m for m in stats["check"])
    assert not list(disk.iterdir())  # the namespace's mount is gone with it
