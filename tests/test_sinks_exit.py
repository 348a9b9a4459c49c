"""Exit statuses of real ``python -m bytewax.run`` processes: a step that calls
``shutdown.fail``, a stop by signal, and a stdout reader that goes away
(``lobstream ... | head``) for the stdout and console sinks."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import orjson
import pytest

from sources.runtime import shutdown
from tests.sink_flows import FlowRun


def test_fail_ends_the_run_with_its_exit_code():
    # The source only ends when a stop is requested, so ending proves fail() stops it.
    with FlowRun({"SINKTEST_SINK": "fail", "SINKTEST_FAIL_AT": "1000",
                  "SINKTEST_FAIL_CODE": "3"}) as run:
        assert run.finish() == 3, run.stderr
        errors = [line for line in run.stderr.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and errors[0].endswith("sinktest: failing at record 1000 as asked")
        assert "Traceback" not in run.stderr


def test_a_run_without_failure_exits_0():
    with FlowRun({"SINKTEST_SINK": "fail", "SINKTEST_FAIL_AT": "1000",
                  "SINKTEST_RECORDS": "999"}) as run:
        assert run.finish() == 0, run.stderr
        assert "ERROR" not in run.stderr


def test_a_signal_still_stops_cleanly_with_0(tmp_path):
    with FlowRun({"SINKTEST_DIR": str(tmp_path)}) as run:
        path = tmp_path / "coinbase_P0-USD.jsonl"
        deadline = time.monotonic() + 60
        while not (path.exists() and path.stat().st_size > 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        run.proc.send_signal(signal.SIGTERM)
        assert run.finish() == 0, run.stderr
        assert "SIGTERM received" in run.stderr and "ERROR" not in run.stderr
        assert path.read_bytes().endswith(b"\n")


def test_fail_refuses_a_status_that_is_not_a_failure():
    with pytest.raises(ValueError):
        shutdown.fail("never logged", code=0)
    assert shutdown.exit_code() == 0 and not shutdown.requested()


@pytest.mark.parametrize("sink", ["stdout", "console"])
def test_a_reader_that_goes_away_is_a_clean_stop(sink):
    with FlowRun({"SINKTEST_SINK": sink}, stdout=subprocess.PIPE) as run:
        assert run.proc.stdout is not None
        lines = [run.proc.stdout.readline() for _ in range(5)]
        run.proc.stdout.close()  # the reader goes away, as `head` does
        assert run.finish() == 0, run.stderr
        assert "stdout: the reader closed the pipe; stopping (exit status 0)" in run.stderr
        for noise in ("BrokenPipeError", "Exception ignored", "Traceback"):
            assert noise not in run.stderr
        if sink == "stdout":
            assert [orjson.loads(line)["n"] for line in lines] == [0, 1, 2, 3, 4]
        else:
            assert lines[0] == (
                "2026-08-09T21:05:52.101Z  SYNCED   coinbase:P0-USD  snapshot: record 0\n")


def test_head_in_a_shell_pipeline_exits_0():
    cmd = f'set -o pipefail; "{sys.executable}" -m bytewax.run "tests.sink_flows:build()" | head -n 3'
    with FlowRun({"SINKTEST_SINK": "stdout"}, stdout=subprocess.PIPE,
                 argv=["bash", "-c", cmd]) as run:
        assert run.proc.stdout is not None
        out = run.proc.stdout.read()  # to EOF: head took 3 lines and the pipeline ended
        assert run.finish() == 0, run.stderr
        assert len(out.splitlines()) == 3
        assert "BrokenPipeError" not in run.stderr and "Exception ignored" not in run.stderr
