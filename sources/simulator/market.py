"""Loading captures into a :class:`~sources.simulator.recording.Recording`.

Each received frame goes to the first venue whose ``index`` recognises its shape
(:mod:`sources.simulator.exchanges`), not by the capture's ``venue`` label, so any
capture holding a simulated venue's frames can be served. A product's channel is
taken from the first connection (capture file and stream) that carried it.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Dict, Iterable, Tuple, Union

from sources.capture.format import read_capture
from sources.simulator.exchanges import EXCHANGES
from sources.simulator.recording import RecordedFrame, Recording

__all__ = ["CaptureError", "RecordedFrame", "Recording", "load_recording"]


class CaptureError(ValueError):
    """A capture that cannot be served; the message names the file and the problem."""


def load_recording(paths: Iterable[Union[str, Path]]) -> Recording:
    """Index the received frames of every capture, in the order given; raises
    :class:`CaptureError` for a missing, unreadable or foreign file."""
    recording = Recording()
    owners: Dict[Tuple[str, str, str], Tuple[int, str]] = {}
    for i, path in enumerate(paths):
        try:
            for frame in read_capture(path):
                msg = frame.msg
                if frame.dir != "recv" or not isinstance(msg, dict) \
                        or not isinstance(frame.ts, (int, float)) or not math.isfinite(frame.ts):
                    continue
                owner = (i, frame.stream)
                for exchange in EXCHANGES:
                    pieces = exchange.index(msg)
                    if pieces is None:
                        continue
                    venue = recording.channels.setdefault(exchange.venue, {})
                    for channel, product, payload in pieces:
                        if owners.setdefault((exchange.venue, channel, product), owner) == owner:
                            venue.setdefault(channel, {}).setdefault(product, []).append(
                                RecordedFrame(frame.ts, payload))
                    break
        except FileNotFoundError:
            raise CaptureError(f"{path}: no such capture file") from None
        except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError) as exc:
            text = str(exc)
            if isinstance(exc, ValueError) and text.startswith(f"{path}:"):
                raise CaptureError(text) from None  # the format's own header check
            raise CaptureError(f"{path}: not a readable lobstream capture "
                               f"({type(exc).__name__}: {text})") from None
    return recording
