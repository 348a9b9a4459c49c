"""The JSON-lines sink against real failures, in real ``python -m bytewax.run``
processes: an output directory that cannot work, a full disk (a lowered
RLIMIT_FSIZE, and a small tmpfs), a stop while paused, and 3,000 products under
``ulimit -n 1024``."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List

import orjson
import pytest

from sinks.files import check_output_dir
from sinks.names import file_name
from tests.sink_flows import ROOT, FlowRun

PRODUCT_FILE = file_name("coinbase", "P0-USD")


def _lines(path: Path) -> List[dict]:
    """Every line of ``path``, each of which must be whole JSON."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), f"partial last line in {path}"
    return [orjson.loads(line) for line in data.splitlines()]


def _can_mount(where: Path) -> bool:
    """Whether a private mount namespace with a tmpfs can be made here."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    where.mkdir(exist_ok=True)
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "mount", "-t", "tmpfs",
                            "-o", "size=64k", "tmpfs", str(where)], capture_output=True, timeout=30)
    return probe.returncode == 0


# -- start-time checks of the output directory ------------------------------------

def test_check_output_dir_creates_nested_directories(tmp_path):
    check_output_dir(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe file is gone


def _refusal(path) -> str:
    with pytest.raises(ValueError) as info:
        check_output_dir(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_check_output_dir_refuses_files_and_file_parents(tmp_path):
    (tmp_path / "f").write_text("x")
    assert _refusal(tmp_path / "f") == f"output directory '{tmp_path / 'f'}' is a file, not a directory"
    assert _refusal(tmp_path / "f" / "a" / "b") == (
        f"output directory '{tmp_path / 'f' / 'a' / 'b'}': its parent '{tmp_path / 'f'}' is a file, "
        "not a directory")


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="no sysfs")
def test_check_output_dir_refuses_what_root_cannot_write():
    # Tests run as root, for whom mode bits do not stop writes; sysfs does.
    assert _refusal("/sys/kernel").startswith("output directory '/sys/kernel' is not writable (E")
    assert _refusal("/sys/lobstream-out").startswith(
        "output directory '/sys/lobstream-out' cannot be created (E")


def test_check_output_dir_refuses_a_read_only_mount(tmp_path):
    mnt = tmp_path / "ro"
    if not _can_mount(mnt):
        pytest.skip("cannot make a private mount namespace here")
    script = ("from sinks.files import check_output_dir\n"
              "import sys\n"
              "try:\n"
              "    check_output_dir(sys.argv[1])\n"
              "except ValueError as ex:\n"
              "    print(ex)\n")
    out = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         'mount -t tmpfs -o ro,size=64k tmpfs "$1" && exec "$2" -c "$3" "$1/out"', "sh",
         str(mnt), sys.executable, script],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == (
        f"output directory '{mnt / 'out'}' cannot be created (EROFS: Read-only file system)"), out


# -- a full disk ------------------------------------------------------------------

FSIZE = 100_000  # bytes: about 430 records of tests.sink_flows, so several batches fit


def _limit_file_size() -> None:
    # Python ignores SIGXFSZ already; said here because the test depends on it:
    # a write past the limit then fails with EFBIG after writing what fits.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE, resource.RLIM_INFINITY))


@contextlib.contextmanager
def _paused(out: Path, records: int) -> Iterator[FlowRun]:
    """A run of one product's ``records`` whose sink has paused on EFBIG."""
    with FlowRun({"SINKTEST_DIR": str(out), "SINKTEST_RECORDS": str(records),
                  "SINKTEST_PRODUCTS": "1"}, preexec_fn=_limit_file_size) as run:
        line = run.wait_for("cannot write")
        assert f"cannot write {out / PRODUCT_FILE} (EFBIG: File too large); pausing" in line
        yield run


def test_disk_full_pauses_then_resumes_losing_nothing(tmp_path):
    with _paused(tmp_path, 2000) as run:
        # The batch that did not fit was cut back off: only whole batches are there.
        before = _lines(tmp_path / PRODUCT_FILE)
        assert 0 < len(before) < 2000 and len(before) % 50 == 0
        assert (tmp_path / PRODUCT_FILE).stat().st_size < FSIZE
        time.sleep(2.5)  # let a few retries fail first
        # more space (a higher limit) while the worker retries
        resource.prlimit(run.proc.pid, resource.RLIMIT_FSIZE,
                         (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        assert run.finish() == 0, run.stderr
        assert "written again after" in run.wait_for("resuming")
        assert run.stderr.count("cannot write") == 1  # one line however long the pause
        assert [r["n"] for r in _lines(tmp_path / PRODUCT_FILE)] == list(range(2000))


def test_stop_while_paused_gives_up_and_exits_non_zero(tmp_path):
    with _paused(tmp_path, 2000) as run:
        written = len(_lines(tmp_path / PRODUCT_FILE))
        run.proc.send_signal(signal.SIGTERM)
        assert run.finish() == 1, run.stderr
        line = run.wait_for("gave up")
        assert f"gave up on {tmp_path / PRODUCT_FILE} after" in line
        assert "(EFBIG: File too large): 50 records not written" in line
        assert [r["n"] for r in _lines(tmp_path / PRODUCT_FILE)] == list(range(written))


def test_full_tmpfs_pauses_then_resumes_when_space_is_freed(tmp_path):
    mnt = tmp_path / "small"
    if not _can_mount(mnt):
        pytest.skip("cannot make a private mount namespace here")
    copy = tmp_path / "copy"
    copy.mkdir()
    # The tmpfs only exists in the child's mount namespace: the test reaches it
    # through /proc/<pid>/root, and the script copies the output out at the end.
    script = ('set -e; mount -t tmpfs -o size=1m tmpfs "$MNT"; '
              'head -c 900k /dev/zero > "$MNT/filler"; set +e; '
              f'"{sys.executable}" -m bytewax.run "tests.sink_flows:build()"; rc=$?; '
              'cp "$MNT"/out/*.jsonl "$COPY"/; exit $rc')
    with FlowRun({"MNT": str(mnt), "COPY": str(copy), "SINKTEST_DIR": str(mnt / "out"),
                  "SINKTEST_RECORDS": "2000", "SINKTEST_PRODUCTS": "1"},
                 argv=["unshare", "-m", "--propagation", "private", "sh", "-c", script]) as run:
        line = run.wait_for("cannot write")
        assert "(ENOSPC: No space left on device); pausing" in line
        inside = Path(f"/proc/{run.proc.pid}/root") / mnt.relative_to("/")
        assert 0 < len(_lines(inside / "out" / PRODUCT_FILE)) < 2000
        (inside / "filler").unlink()
        assert run.finish() == 0, run.stderr
        run.wait_for("written again after")
        assert [r["n"] for r in _lines(copy / PRODUCT_FILE)] == list(range(2000))


# -- bounded open files -------------------------------------------------------------

def _limit_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def test_3000_products_replay_under_ulimit_1024(tmp_path):
    with FlowRun({"SINKTEST_DIR": str(tmp_path), "SINKTEST_RECORDS": "9000",
                  "SINKTEST_PRODUCTS": "3000", "SINKTEST_BATCH": "500"},
                 preexec_fn=_limit_open_files) as run:
        assert run.finish(timeout=120) == 0, run.stderr
        assert "ERROR" not in run.stderr
        files = sorted(tmp_path.iterdir())
        assert len(files) == 3000
        for path in files[::97]:
            recs = _lines(path)
            p = int(recs[0]["product"][1:-4])
            assert [r["n"] for r in recs] == [p, p + 3000, p + 6000]


def test_without_the_bound_the_same_replay_runs_out_of_descriptors(tmp_path):
    # The control for the test above: with more open files allowed than the
    # ulimit, opening fails (EMFILE), the sink pauses, and a stop ends it with 1.
    with FlowRun({"SINKTEST_DIR": str(tmp_path), "SINKTEST_RECORDS": "9000",
                  "SINKTEST_PRODUCTS": "3000", "SINKTEST_BATCH": "500",
                  "SINKTEST_MAX_OPEN": "5000"}, preexec_fn=_limit_open_files) as run:
        assert "(EMFILE: Too many open files); pausing" in run.wait_for("cannot write")
        run.proc.send_signal(signal.SIGTERM)
        assert run.finish() == 1, run.stderr
        assert "records not written" in run.wait_for("gave up")
