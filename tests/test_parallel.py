"""stages/parallel.py: one ordered, bounded parallel map; results never depend on the worker count."""
from __future__ import annotations

import threading

from stages.parallel import OrderedPool, Window


def square(x: int) -> int:
    return x * x


def test_results_come_in_input_order_with_their_items_for_any_worker_count():
    items = [{"n": n} for n in range(200)]
    for workers in (1, 2):
        with OrderedPool(workers, chunksize=3) as pool:
            pairs = list(pool.map(square, items, job=lambda item: item["n"]))
        assert [item for item, _ in pairs] == items
        assert [result for _, result in pairs] == [n * n for n in range(200)]


def test_window_caps_the_items_read_ahead():
    window, read = Window(3), []
    gated = window.gate(iter(range(10)))
    feeder = threading.Thread(target=lambda: read.extend(gated))
    feeder.start()
    feeder.join(timeout=0.5)
    assert read == [0, 1, 2] and feeder.is_alive()   # blocked until a result is taken
    window.release()
    feeder.join(timeout=0.5)
    assert read == [0, 1, 2, 3]
    window.close()                                    # leaving the pool unblocks the feeder
    feeder.join(timeout=1)
    assert not feeder.is_alive()
