"""What this process is running, for the status line and the metrics endpoint.

Sources register their connections' feeds and the book step registers each
product's state here. The object is created with the flow and handed explicitly
to every part that fills it or reads it, so no module global holds live state.
Readers (the status thread, a metrics scrape) only read counters, which are plain
``Counter`` dicts updated on the workers: the hot path pays nothing for them.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Dict, List, Set, Tuple

if TYPE_CHECKING:
    from sources.feed.feed import Feed


class Registry:
    """Feeds (one per connection) and book states (one per product) of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._feeds: List["Feed"] = []
        #: (venue, product) -> the book step's state object.
        self.books: Dict[Tuple[str, str], Any] = {}
        #: Inboxes of this process's source partitions (queue depth, drops).
        self.inboxes: List[Any] = []
        #: Products whose book-step state was restored from a recovery snapshot.
        self.resumed: Set[Tuple[str, str]] = set()
        #: (venue, product) -> the latest bar record of its shortest interval.
        self.last_bars: Dict[Tuple[str, str], Dict[str, Any]] = {}
        #: A replay's streams (name -> what the capture says of it), for the banner.
        self.streams: Dict[str, Any] = {}

    def add_feed(self, feed: "Feed") -> None:
        with self._lock:
            self._feeds.append(feed)

    def add_inbox(self, inbox: Any) -> None:
        with self._lock:
            self.inboxes.append(inbox)

    @property
    def feeds(self) -> List["Feed"]:
        with self._lock:
            return list(self._feeds)
