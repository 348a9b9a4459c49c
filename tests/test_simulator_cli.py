"""``python -m sources.simulator``: every flag documented; a problem with the
port, a capture or a flag value is one line on stderr and exit status 2."""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from sources.simulator.__main__ import main, parser

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "recordings" / "deribit_options.jsonl.gz"


def test_help_documents_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for action in parser()._actions:
        assert action.help, f"{action.option_strings} has no help"
        for option in action.option_strings:
            assert option in text
    for path in ("/coinbase", "/coinbase-exchange", "/deribit", "/ws/api/v2",
                 "/api/v3/brokerage/market/products", "get_instruments"):
        assert path in text


def one_line_error(capsys: pytest.CaptureFixture[str], argv: List[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("content,expected", [
    (None, "no such capture file"),
    (b"hello, I am not a capture\n", "not a"),
    (b"{\"lobstream_capture\": 99}\n", "not a lobstream capture"),
    (b"\x1f\x8b\x08 broken gzip", "not a readable lobstream capture"),
])
def test_bad_captures_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   content: bytes, expected: str) -> None:
    path = tmp_path / ("capture.jsonl.gz" if content and content[:2] == b"\x1f\x8b"
                       else "capture.jsonl")
    if content is not None:
        path.write_bytes(content)
    err = one_line_error(capsys, ["--capture", str(path), "--port", "0"])
    assert expected in err and str(path) in err


def test_a_capture_of_a_gzip_text_file_is_refused(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "text.jsonl.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"plain words\n")
    assert "not a" in one_line_error(capsys, ["--capture", str(path)])


@pytest.mark.parametrize("flags,expected", [
    (["--limit", "deribit.max_sockets=3"], "max_connections"),
    (["--limit", "kraken.max_connections=3"], "kraken"),
    (["--schedule", "deribit:X:when=3"], "list=S"),
    (["--schedule", "coinbase:NOPE-XYZ:list=1"], "NOPE-XYZ"),
    (["--fault", "http_error:status=200"], "status"),
])
def test_bad_flag_values_are_one_line(capsys: pytest.CaptureFixture[str], flags: List[str],
                                      expected: str) -> None:
    err = one_line_error(capsys, ["--capture", str(CAPTURE), "--port", "0", *flags])
    assert expected in err


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "sources.simulator", "--capture", str(CAPTURE),
             "--port", str(port)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "in use" in proc.stderr.lower()
