"""The listing side of sync_state: batches of keys, listed by a thread ahead of the batch being written."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from itertools import islice

from dmsupdate.state.stores import ObjectInfo
from publications import reconcile

# Batches listed ahead of the one being written (bounded: memory does not grow with the bucket).
PREFETCH = 2
DONE = object()  # the end of a queue of batches


def batches(listing: Iterable[ObjectInfo]) -> Iterator[list[ObjectInfo]]:
    it = iter(listing)
    while batch := list(islice(it, reconcile.BATCH)):
        yield batch


def prefetched(listing: Iterable[ObjectInfo]) -> Iterator[list[ObjectInfo]]:
    """Batches of the listing; a thread lists the next PREFETCH batches while this one is written.

    Listing waits on the store and writing waits on the database: overlapped,
    a sync takes about as long as the slower of the two instead of their sum.
    Memory stays bounded by the queue. A listing error is raised here.
    """
    ready: queue.Queue = queue.Queue(maxsize=PREFETCH)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for batch in batches(listing):
                if not offer(batch):
                    return
            offer(DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            offer(exc)

    worker = threading.Thread(target=produce, name="sync_state-listing", daemon=True)
    worker.start()
    try:
        while True:
            item = ready.get()
            if item is DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()
