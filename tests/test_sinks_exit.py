"""Exit statuses of real ``python -m bytewax.run`` processes: a step that calls
``shutdown.fail``, and a stop by signal."""

from __future__ import annotations

import signal
import time

import pytest

from sources.runtime import shutdown
from tests.sink_flows import FlowRun


def test_fail_ends_the_run_with_its_exit_code():
    # The source only ends when a stop is requested, so ending proves fail() stops it.
    run = FlowRun({"SINKTEST_SINK": "fail", "SINKTEST_FAIL_AT": "1000", "SINKTEST_FAIL_CODE": "3"})
    assert run.finish() == 3, run.stderr
    errors = [line for line in run.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith("sinktest: failing at record 1000 as asked")
    assert "Traceback" not in run.stderr


def test_a_run_without_failure_exits_0():
    run = FlowRun({"SINKTEST_SINK": "fail", "SINKTEST_FAIL_AT": "1000", "SINKTEST_RECORDS": "999"})
    assert run.finish() == 0, run.stderr
    assert "ERROR" not in run.stderr


def test_a_signal_still_stops_cleanly_with_0(tmp_path):
    run = FlowRun({"SINKTEST_DIR": str(tmp_path)})
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
