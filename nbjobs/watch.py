"""The one updater thread of a process: it keeps live views (the panel, receipts) current and calls
``on_done`` callbacks, polling each home's SQLite about twice a second.

Each tick, per home: ``PRAGMA data_version`` first (free; it changes only when another connection
committed), then the IDs of rows updated since the last poll (``Store.changed_since``: an
index-only read), then only those rows (``Store.get_many``).  Every `View` of that home gets the
tick (`Tick`: the changed records, and reads on the thread's own connection) in its `View.refresh`.
The thread starts with the first view and stops when no view is left; a view that raises three
ticks in a row is dropped, the others go on.  Nothing here imports ipywidgets: the panel's views
(nbjobs/panel/widgets.py) are `View` subclasses.

>>> stop = watch(nbjobs.get("8f3a2c"), lambda rec: print(rec.state))  # doctest: +SKIP
>>> stop()                                                           # doctest: +SKIP
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from .errors import NbjobsError
from .job import TERMINAL, JobRecord, State

#: the thread's name (one per process)
THREAD_NAME = "nbjobs-updater"
#: seconds between two ticks
INTERVAL = 0.5
#: a row's ``updated_at`` is stamped before its transaction commits: rows updated this many seconds
#: before the newest change seen are checked again, so a slow commit is not missed
SLACK = 5.0
#: views re-read their rows in full at most this often (only if something changed): catches rows
#: removed by retention and anything the change check could not see
RESYNC = 10.0
#: the header's counts are re-read at most once a second after a change, and every 5 s regardless
#: (a worker that dies commits nothing; its heartbeat just gets old)
SUMMARY_MIN, SUMMARY_EVERY = 1.0, 5.0
#: more changed rows than this in one tick: views re-read in full instead
MAX_FRESH = 500


class Home:
    """The updater's state for one home: its own connection, the last ``data_version`` and the
    change watermark, and the header's counts."""

    def __init__(self, home: Path):
        from . import config
        from .store import Store

        self.home = Path(home)
        self.store = Store(config.db_path(self.home))  # the updater thread's own connection
        self.version: int | None = None
        self.watermark = time.time()
        self.seen: dict[str, float] = {}
        # last (state, acked_at) seen per changed job: the header's counts move only with these
        self.states: dict[str, tuple[State, Any]] = {}
        self.summary: dict[str, Any] | None = None
        self.summary_gen = 0
        self.summary_at = -1e9
        self.summary_stale = True

    def poll(self, now: float) -> "Tick":
        """The change check: ``PRAGMA data_version``; if another connection committed, the IDs of
        rows updated since the watermark (index only); then only the rows not seen at that stamp."""
        version = self.store.data_version()
        changed: dict[str, JobRecord] = {}
        flood = False
        if version != self.version:
            self.version = version
            pairs = self.store.changed_since(self.watermark - SLACK)
            fresh = [i for i, u in pairs if self.seen.get(i) != u]
            self.seen = dict(pairs)
            if pairs:
                self.watermark = max(self.watermark, pairs[-1][1])
            if len(fresh) > MAX_FRESH:
                flood = self.summary_stale = True
            elif fresh:
                changed = {r.id: r for r in self.store.get_many(fresh)}
                if len(self.states) > 20_000:
                    self.states.clear()
                for r in changed.values():
                    key = (r.state, getattr(r, "acked_at", None))
                    if self.states.get(r.id) != key:  # new, moved, or acknowledged: counts changed
                        self.summary_stale = True
                    self.states[r.id] = key
        return Tick(self, now, version, changed, flood)

    def get_summary(self, now: float) -> tuple[int, dict[str, Any]]:
        """The header's counts (`nbjobs.summary`) and their generation, re-read only when due."""
        due = now - self.summary_at >= (SUMMARY_MIN if self.summary_stale else SUMMARY_EVERY)
        if self.summary is None or due:
            s = self.store.summary()
            self.summary_at, self.summary_stale = now, False
            if s != self.summary:
                self.summary, self.summary_gen = s, self.summary_gen + 1
        return self.summary_gen, self.summary  # type: ignore[return-value]

    def close(self) -> None:
        self.store.close()


class Tick:
    """What one tick of the updater knows about one home."""

    __slots__ = ("home", "now", "version", "changed", "flood")

    def __init__(self, home: Home, now: float, version: int, changed: dict[str, JobRecord], flood: bool):
        self.home, self.now, self.version, self.changed, self.flood = home, now, version, changed, flood

    def summary(self) -> tuple[int, dict[str, Any]]:
        return self.home.get_summary(self.now)

    def records(self, **kw: Any) -> list[JobRecord]:
        """`nbjobs.records` on the thread's connection (for a view's full re-read)."""
        return self.home.store.list_jobs(**kw)

    def get(self, job_id: str) -> JobRecord | None:
        got = self.home.store.get_many([job_id])
        return got[0] if got else None


class View:
    """Something the updater keeps current: `refresh` runs on the updater thread each tick while
    `status` says ``live``; a view leaves at ``closed`` or ``dormant``."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.closed = False
        self.failures = 0

    def status(self) -> str:
        return "closed" if self.closed else "live"

    def refresh(self, tick: Tick) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def job_ids(self) -> list[str]:
        """The jobs it follows."""
        return []

    def close(self) -> None:
        self.closed = True
        deactivate(self)


class _Callback(View):
    """`watch`: a callback per tick for one job, until it returns False or the job ends."""

    def __init__(self, job: Any, callback: Callable[[JobRecord], Any]):
        super().__init__(Path(job.home))
        self.job_id, self.callback = job.id, callback
        self.record: JobRecord | None = None

    def job_ids(self) -> list[str]:
        return [self.job_id]

    def refresh(self, tick: Tick) -> None:
        fresh = tick.changed.get(self.job_id)
        if fresh is None and self.record is None:
            fresh = tick.get(self.job_id)
            if fresh is None:
                raise NbjobsError(f"job {self.job_id[:8]} vanished")
        if fresh is not None:
            self.record = fresh
        keep = self.callback(self.record)
        if keep is False or self.record.state in TERMINAL:
            self.closed = True


class Updater:
    """The views and the thread that serves them (one `UPDATER` per process)."""

    def __init__(self):
        self.views: list[View] = []
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def activate(self, view: View) -> None:
        """Serve ``view`` from the next tick on; start the thread if it is not running."""
        with self.lock:
            if view not in self.views:
                self.views.append(view)
            if self.thread is None:
                self.thread = threading.Thread(target=self.run, name=THREAD_NAME, daemon=True)
                self.thread.start()

    def deactivate(self, view: View) -> None:
        with self.lock:
            if view in self.views:
                self.views.remove(view)

    def stop_all(self) -> None:
        with self.lock:
            views = list(self.views)
            self.views.clear()
        for v in views:
            v.closed = True

    def run(self) -> None:
        """The thread: a tick every `INTERVAL` seconds until no view is left."""
        homes: dict[Path, Home] = {}
        try:
            while True:
                started = time.perf_counter()
                with self.lock:
                    if not self.views:
                        self.thread = None
                        return
                    current = list(self.views)
                self.tick(current, homes, time.time())
                time.sleep(max(0.05, INTERVAL - (time.perf_counter() - started)))
        finally:
            for h in homes.values():
                h.close()

    def tick(self, views: list[View], homes: dict[Path, Home], now: float) -> None:
        """One pass: drop views that are no longer live, poll each home once, refresh its views."""
        groups: dict[Path, list[View]] = {}
        for v in views:
            if v.status() != "live":
                self.deactivate(v)
                continue
            groups.setdefault(v.home, []).append(v)
        for home, group in groups.items():
            try:
                h = homes.get(home)
                if h is None:
                    h = homes[home] = Home(home)
                tick = h.poll(now)
            except Exception:  # noqa: the thread must live on; a view failing 3 times leaves
                for v in group:
                    self._failed(v)
                continue
            for v in group:
                try:
                    v.refresh(tick)
                    v.failures = 0
                except Exception:  # noqa: counted by _failed; the other views go on
                    self._failed(v)

    def _failed(self, v: View) -> None:
        v.failures += 1
        if v.failures >= 3:  # its home is gone, the job vanished, or its widgets keep failing
            self.deactivate(v)


UPDATER = Updater()


def activate(view: View) -> None:
    """Hand ``view`` to the updater thread (started if needed)."""
    UPDATER.activate(view)


def deactivate(view: View) -> None:
    """Take ``view`` off the updater (the thread stops when none is left)."""
    UPDATER.deactivate(view)


def watch(job: Any, callback: Callable[[JobRecord], Any]) -> Callable[[], None]:
    """Call ``callback(record)`` from the updater thread on every tick while ``job`` is active, and
    once more when it ends; a callback that returns False stops its watch.  Returns a function that
    stops it.  The callback must only assign widget traits (no print, no display)."""
    view = _Callback(job, callback)
    activate(view)
    return view.close


def unwatch_all() -> None:
    """Stop every live view and watch (the thread then exits); `%unload_ext nbjobs` calls this."""
    UPDATER.stop_all()


__all__ = ["watch", "unwatch_all", "activate", "deactivate", "View", "Home", "Tick", "Updater", "UPDATER",
           "THREAD_NAME", "INTERVAL", "RESYNC"]
