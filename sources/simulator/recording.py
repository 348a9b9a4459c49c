"""Recorded market data as the simulator serves it: frames per venue, channel, product.

The simulator does not replay connections as recorded: each client connection gets
its own cursor per product it subscribes, starting at the beginning of that
product's recording. So a capture is split into one ordered list of frames per
``(venue, channel, product)``, each keeping its recorded receive time for pacing.
Which channels a venue has, and how its frames are recognised and split, is the
venue's business (``index`` in :mod:`sources.simulator.exchanges`); this module only
holds the result. :func:`sources.simulator.market.load_recording` builds it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Set

#: product -> frames in recorded order.
ByProduct = Dict[str, List["RecordedFrame"]]


class RecordedFrame(NamedTuple):
    """One recorded payload for one product, as decoded from the capture (prices
    and times stay as recorded): a Coinbase Advanced Trade event, a Coinbase
    Exchange message, a Deribit ``params.data`` (a trades notification's list as
    ``{"trades": [...]}``), a Binance event or REST depth reply."""

    ts: float  # recorded receive time, epoch ms
    payload: Dict[str, Any]
    #: The recorded envelope's send time, where the venue has one
    #: (:meth:`~sources.simulator.exchanges.base.SimulatedExchange.envelope_time`).
    envelope_time: Any = None


@dataclass
class Recording:
    """All servable data from a set of captures: ``channels[venue][channel][product]``.

    A product's channel is taken from the first connection (capture file and
    stream) that carried it: two recordings of one product interleaved would not
    form one consistent book.

    The properties below are the same data in the shapes tests were written
    against (``recording.deribit[instrument]``, ``recording.coinbase["l2_data"]``...).
    """

    channels: Dict[str, Dict[str, ByProduct]] = field(default_factory=dict)

    def frames(self, venue: str, channel: str, product: str) -> Sequence[RecordedFrame]:
        """One product's frames on one channel (empty if none were recorded)."""
        return self.channels.get(venue, {}).get(channel, {}).get(product, [])

    def products(self, venue: str) -> Set[str]:
        """Every product any channel of ``venue`` has data for."""
        return {p for by_product in self.channels.get(venue, {}).values() for p in by_product}

    def start(self, venue: str, channel: str) -> Optional[float]:
        """Recorded time of the first frame on ``channel`` (a venue's book channel:
        time zero for pacing and for shifting exchange times, so all products of a
        venue keep their recorded spacing relative to each other)."""
        firsts = [frames[0].ts for frames in self.channels.get(venue, {}).get(channel, {}).values()
                  if frames]
        return min(firsts) if firsts else None

    @property
    def coinbase(self) -> Dict[str, ByProduct]:
        """Coinbase Advanced Trade, by message channel (``l2_data``, ``ticker``...)."""
        return self.channels.get("coinbase", {})

    @property
    def deribit(self) -> ByProduct:
        return self.channels.get("deribit", {}).get("book", {})

    @property
    def coinbase_exchange(self) -> ByProduct:
        """Coinbase Exchange book messages (``snapshot``, ``l2update``)."""
        return self.channels.get("coinbase_exchange", {}).get("book", {})

    @property
    def binance(self) -> Dict[str, ByProduct]:
        """Binance spot, by channel (``depth``, ``trade``, ``snapshot``...)."""
        return self.channels.get("binance", {})
