"""One ordered, bounded parallel map for the stages (pack's images, split's image hashes).

    with OrderedPool(workers) as pool:            # forks here: create it before loading big inputs
        for item, result in pool.map(work, items, job=lambda item: item.path):
            ...

Results come back in the order of `items` (Pool.imap), so outputs never depend on the worker
count. Only `job(item)` crosses to the workers; the item itself waits in the main process. At most
`workers * in_flight_per_worker` items are read ahead, so memory does not grow with the input.
`workers` 0 means all usable cores; 1 runs the work in-process, without a Pool. Ctrl-C is handled
once, by the main process: workers ignore SIGINT, and leaving the block terminates them.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.pool
import signal
import threading
from collections import deque
from typing import Any, Callable, Iterable, Iterator

from stages.common import resolve_workers

CHUNKSIZE = 8            # tasks per Pool message: amortises IPC, small enough to keep cores busy
IN_FLIGHT_PER_WORKER = 4 * CHUNKSIZE


class Window:
    """Caps the items in flight. Pool.imap's feeder thread would otherwise read all the input
    ahead of the workers, and memory would grow with the dataset."""

    def __init__(self, size: int):
        self._slots = threading.Semaphore(size)
        self._closed = threading.Event()

    def gate(self, items: Iterable) -> Iterator:
        for item in items:
            while not self._slots.acquire(timeout=0.1):
                if self._closed.is_set():
                    return
            if self._closed.is_set():
                return
            yield item

    def release(self) -> None:
        self._slots.release()

    def close(self) -> None:
        self._closed.set()


def _worker_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled once, by the main process
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # Pool.terminate() stops workers with SIGTERM


def _identity(item: Any) -> Any:
    return item


class OrderedPool:
    """A context manager; `map` may be used once per pool."""

    def __init__(self, workers: int, chunksize: int = CHUNKSIZE, in_flight_per_worker: int = IN_FLIGHT_PER_WORKER):
        self.workers = resolve_workers(workers)
        self.chunksize = chunksize
        self._window = Window(self.workers * in_flight_per_worker)
        self._pool: multiprocessing.pool.Pool | None = None

    def __enter__(self) -> "OrderedPool":
        if self.workers > 1:
            self._pool = multiprocessing.Pool(self.workers, initializer=_worker_signals)
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._window.close()  # unblock the feeder thread before terminate() joins it
            self._pool.terminate()
            self._pool.join()

    def map(self, fn: Callable[[Any], Any], items: Iterable,
            job: Callable[[Any], Any] = _identity) -> Iterator[tuple[Any, Any]]:
        """(item, fn(job(item))) in the order of `items`."""
        pending: deque = deque()
        jobs = _jobs(self._window.gate(items), pending, job)
        results = self._pool.imap(fn, jobs, chunksize=self.chunksize) if self._pool else map(fn, jobs)
        for result in results:
            self._window.release()
            yield pending.popleft(), result


def _jobs(items: Iterable, pending: deque, job: Callable[[Any], Any]) -> Iterator:
    """Runs in Pool.imap's feeder thread: each item waits in `pending` (same order) while its job
    goes to the workers."""
    for item in items:
        pending.append(item)
        yield job(item)
