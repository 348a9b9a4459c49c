"""Sink partitions that sit on the worker holding each product's book.

A :class:`~bytewax.outputs.FixedPartitionedSink` gets an epoch-end ``snapshot()``
call per partition (the commit point of the store and SQL sinks), which a
``DynamicSink`` lacks; but Bytewax routes its items by the sink's own partition
function, not by the stateful step's key. Bytewax sends an item to the partition
that ``part_fn(key)`` indexes in the *sorted* list of all partitions
(bytewax-notes §6), and when every worker lists every partition, partition ``i``
of that list is built on worker ``i % workers`` (§11).

So the partitions here are ``PARTS`` names that sort in index order, and
``part_fn`` is the routing key's own Bytewax hash ``h`` (the one
:func:`sources.runtime.placement.worker_of` reproduces) modulo :data:`PARTS`. The
item then lands on worker ``(h % PARTS) % workers``, which equals
``h % workers``, the worker of the product's book, whenever the worker count
divides :data:`PARTS` (5040 = 7!: every count from 1 to 10, and 12, 14, 15, 16,
18, 20, ...). No record crosses a process to reach its sink, and a partition's
identity does not depend on the worker count, so a resumed run may rescale.
"""

from __future__ import annotations

from typing import Generic, List, TypeVar

from bytewax.outputs import FixedPartitionedSink

from sources.runtime.placement import siphash13

X = TypeVar("X")
S = TypeVar("S")

PARTS = 5040
NAMES: List[str] = [f"p{i:04d}" for i in range(PARTS)]


def part_of(key: str) -> int:
    """The partition index of a routing key."""
    return siphash13(key.encode("utf-8") + b"\xff") % PARTS



class ColocatedSink(FixedPartitionedSink[X, S], Generic[X, S]):
    """A partitioned sink whose partitions sit on their products' workers."""

    def list_parts(self) -> List[str]:
        return NAMES

    def part_fn(self, item_key: str) -> int:
        return part_of(item_key)
