"""The garbage collector's tuning while exports stream rows (shared by the exports running in one process)."""

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CollectorTuning:
    """The garbage collector, kept from walking the whole process over and over while exports run.

    Parquet rows wait in memory for their Arrow batch long enough to reach the oldest generation, so a long export
    sets off full collections again and again, each walking every object in the process (Django's and pyarrow's),
    for garbage that reference counting frees anyway. The objects from before the export are frozen out of
    collections, and a full collection comes after 100 middle ones instead of 10. (Switching the collector off
    instead lets Django's cyclic garbage grow with the export.) The collector is the process's: exports running
    at once on threads of one worker share the tuning, and the last to finish puts the collector back as the first
    found it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exports = 0
        self._thresholds = gc.get_threshold()

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._exports == 0:
                self._thresholds = gc.get_threshold()
                gc.freeze()
                gc.set_threshold(self._thresholds[0], self._thresholds[1], 100)
            self._exports += 1
        try:
            yield
        finally:
            with self._lock:
                self._exports -= 1
                if self._exports == 0:
                    gc.set_threshold(*self._thresholds)
                    gc.unfreeze()


collector_tuned = CollectorTuning()
"""`with collector_tuned():` around an export's writing."""
