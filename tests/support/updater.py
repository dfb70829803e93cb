"""What tests and benchmarks read of the updater thread (nbjobs/watch.py) that the product does not
need: whether it runs, which jobs its views follow, and how often it was started, ticked and what
it cost (`count`, which instruments the one `watch.UPDATER`)."""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

from nbjobs import watch


def threads() -> list[threading.Thread]:
    """The updater threads alive in this process (at most one)."""
    return [t for t in threading.enumerate() if t.name == watch.THREAD_NAME]


def alive() -> bool:
    """Whether the updater thread runs now."""
    t = watch.UPDATER.thread
    return t is not None and t.is_alive()


def watching() -> list[str]:
    """IDs of the jobs followed by the updater's views now."""
    with watch.UPDATER.lock:
        views = list(watch.UPDATER.views)
    return [i for v in views for i in v.job_ids()]


@contextmanager
def count() -> Iterator[dict[str, float]]:
    """Count, while the block runs, the updater threads started, their ticks, and the ticks' CPU
    seconds (``time.thread_time`` on the updater thread) and wall seconds."""
    stats = {"threads": 0, "ticks": 0, "cpu": 0.0, "wall": 0.0}
    updater = watch.UPDATER
    run, tick = updater.run, updater.tick

    def counted_run() -> None:
        stats["threads"] += 1
        run()

    def counted_tick(*args, **kwargs) -> None:
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            tick(*args, **kwargs)
        finally:
            stats["ticks"] += 1
            stats["cpu"] += time.thread_time() - cpu
            stats["wall"] += time.perf_counter() - wall

    updater.run, updater.tick = counted_run, counted_tick
    try:
        yield stats
    finally:
        del updater.run, updater.tick  # back to the class's methods
