"""Loading captures into a :class:`~sources.simulator.recording.Recording`.

Each received frame goes to a venue whose ``index`` recognises its shape
(:mod:`sources.simulator.exchanges`): the venue the capture names is asked
first, then the others in order, so any capture holding a simulated venue's
frames can be served while frames whose shape several venues share (Binance
spot and futures trades) go where the capture says. Recorded REST replies
(``rest`` frames, such as Binance depth snapshots) are indexed the same way by
the venues' ``index_rest``. A product's channel is taken from the first
connection (capture file and stream) that carried it.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from sources.capture.format import CaptureFrame, read_capture
from sources.simulator.exchanges import BY_VENUE, EXCHANGES
from sources.simulator.exchanges.base import Indexed, SimulatedExchange
from sources.simulator.recording import RecordedFrame, Recording

__all__ = ["CaptureError", "RecordedFrame", "Recording", "load_recording"]


class CaptureError(ValueError):
    """A capture that cannot be served; the message names the file and the problem."""


def _candidates(label: str) -> Tuple[SimulatedExchange, ...]:
    named = BY_VENUE.get(label)
    return EXCHANGES if named is None else (named, *(e for e in EXCHANGES if e is not named))


def _pieces(exchange: SimulatedExchange, frame: CaptureFrame,
            msg: Any) -> Optional[List[Indexed]]:
    if frame.dir == "rest":
        return exchange.index_rest(frame.url or "", msg)
    return exchange.index(msg) if isinstance(msg, dict) else None


def load_recording(paths: Iterable[Union[str, Path]]) -> Recording:
    """Index the received frames and REST replies of every capture, in the order
    given; raises :class:`CaptureError` for a missing, unreadable or foreign file."""
    recording = Recording()
    owners: Dict[Tuple[str, str, str], Tuple[int, str]] = {}
    for i, path in enumerate(paths):
        try:
            for frame in read_capture(path):
                if frame.dir not in ("recv", "rest") or not frame.is_json \
                        or not isinstance(frame.ts, (int, float)) or not math.isfinite(frame.ts):
                    continue
                msg = frame.msg
                owner = (i, frame.stream)
                for exchange in _candidates(frame.venue):
                    pieces = _pieces(exchange, frame, msg)
                    if pieces is None:
                        continue
                    venue = recording.channels.setdefault(exchange.venue, {})
                    sent = exchange.envelope_time(msg) if pieces and frame.dir == "recv" \
                        else None
                    for channel, product, payload in pieces:
                        if owners.setdefault((exchange.venue, channel, product), owner) == owner:
                            venue.setdefault(channel, {}).setdefault(product, []).append(
                                RecordedFrame(frame.ts, payload, sent))
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
