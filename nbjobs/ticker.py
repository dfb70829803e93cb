"""A worker's background duties, beside claiming jobs: fire schedules, deliver webhooks, and
sweep waiting jobs.

One daemon thread per worker process with its own SQLite connection, so a slow webhook
receiver never delays a claim.  Each round (every `EVERY` seconds):

- holds or renews the home's ``firer`` lease and, if it holds it, fires due schedules
  (`schedule.tick`; one firer per home at a time, taken over when its worker dies);
- delivers due webhook rows from the outbox (`notify.deliver_due`);
- every `SWEEP_EVERY` seconds, looks at every ``waiting`` job (`Store.resolve_waiting`): the
  safety net behind the resolution that happens in the transaction where an upstream job ends.

``busy`` tells the worker loop to stay alive (an auto-started worker would otherwise exit when
idle): while unpaused schedules exist or webhooks wait for delivery.

>>> t = Ticker("/tmp/home", "worker-1")   # doctest: +SKIP
>>> t.start(); ...; t.stop()              # doctest: +SKIP
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from . import config

EVERY = 0.25
SCHEDULE_EVERY = 1.0
SWEEP_EVERY = 5.0


class Ticker(threading.Thread):
    """The background duties of worker ``holder`` for ``home``."""

    def __init__(self, home: Path | str, holder: str):
        super().__init__(name="nbjobs-ticker", daemon=True)
        self.home = Path(home)
        self.holder = holder
        self.busy = False
        self._stop_event = threading.Event()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        from . import notify, schedule
        from .store import Store

        store = Store(config.db_path(self.home))
        last_schedule = last_sweep = 0.0
        try:
            while not self._stop_event.is_set():
                now = time.monotonic()
                try:
                    if now - last_schedule >= SCHEDULE_EVERY:
                        last_schedule = now
                        schedule.tick(store, self.holder)
                        self.busy = store.active_flow()
                    if now - last_sweep >= SWEEP_EVERY:
                        last_sweep = now
                        store.resolve_waiting(f"worker:{self.holder}")
                    notify.deliver_due(store)
                except Exception as exc:  # noqa: the duties must outlive a bad row or a locked database
                    print(f"nbjobs worker {self.holder}: background duty failed: {type(exc).__name__}: {exc}",
                          file=sys.stderr, flush=True)
                self._stop_event.wait(EVERY)
        finally:
            try:
                store.drop_lease(schedule.LEASE_NAME, self.holder)
            except Exception:  # noqa: best effort; the lease expires anyway
                pass
            store.close()


__all__ = ["Ticker"]
