"""The SQLite store: schema, migrations, pragmas and every SQL statement of nbjobs.

One file, ``$NBJOBS_HOME/nbjobs.db``, is the single source of truth.  It runs in WAL mode with a
busy timeout and foreign keys on; every write is a short ``BEGIN IMMEDIATE`` transaction, so
readers never block and writers queue instead of failing.  The schema version lives in
``PRAGMA user_version`` and is moved forward by `MIGRATIONS`, so a newer nbjobs opens an older
database without losing rows.

One `Store` object answers for all of it; its methods live in one module per concern, each a mixin:

==================  =====================================================================
``connection.py``   connect, pragmas (WAL), transactions (``_tx``), errors, migrate
``schema.py``       the SQL of every schema version; `MIGRATIONS` (append only)
``records.py``      rows to records, events, ``_move``: the one way a job changes state
``jobs.py``         submit, read, list, count; cancel and retry
``queue.py``        claim, heartbeat, progress, finish (and claim the next in one commit), release, reclaim
``retention.py``    dead letters, pruning, settings
``history.py``      bulk reads for metrics
``slow.py``         slow runs: recent runtimes of a name, the flag on a running attempt
``search.py``       full-text search of the job history (``jobs_fts``, v8), indexed lazily (v14)
``dependencies.py`` waiting jobs moved on by `job.dependency_outcome`
``outbox.py``       webhook deliveries
``groups.py``       groups of jobs (sweeps); ID lookup across jobs and groups
``schedules.py``    cron schedules and their fires
``leases.py``       named leases (the schedule firer)
``workers.py``      the workers table
==================  =====================================================================

Decisions are pure functions the store applies: `job.check_transition` (every state change),
`policy.decide` (retry or not), `job.dependency_outcome` (wait, run or cancel).

>>> import tempfile, pathlib
>>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
>>> rec, created = s.insert_job({"name": "demo", "kind": "cell", "source": "1+1"}, actor="doctest")
>>> created, s.get(rec.id).state.value
(True, 'queued')
"""
from __future__ import annotations

import threading
from pathlib import Path

from .. import config
from ..job import ACTIVE, CLAIMABLE, TERMINAL, sources_of
from .connection import CHECKPOINT_PAGES, ConnMixin, actor_name
from .dependencies import DependenciesMixin
from .groups import GroupsMixin
from .history import HistoryMixin
from .jobs import JobsMixin
from .leases import LeasesMixin
from .outbox import OutboxMixin
from .queue import QueueMixin
from .records import RecordsMixin
from .retention import RetentionMixin
from .schedules import SchedulesMixin
from .schema import MIGRATIONS, SCHEMA_VERSION
from .search import SearchMixin
from .slow import SlowMixin
from .workers import WorkersMixin


class Store(ConnMixin, RecordsMixin, JobsMixin, QueueMixin, RetentionMixin, HistoryMixin, SearchMixin,
            DependenciesMixin, OutboxMixin, SchedulesMixin, LeasesMixin, WorkersMixin, GroupsMixin, SlowMixin):
    """All reads and writes of one nbjobs database.  One instance per thread.

    >>> Store.__doc__ is not None
    True
    """


# one Store per (thread, path): sqlite3 connections must not be shared between threads
_local = threading.local()


def open_store(path: Path | str | None = None) -> Store:
    """The calling thread's Store for ``path`` (default: the current home's database)."""
    path = Path(path) if path else config.db_path()
    cache = _local.__dict__.setdefault("stores", {})
    store = cache.get(path)
    if store is None:
        store = cache[path] = Store(path)
    return store


__all__ = ["Store", "open_store", "actor_name", "SCHEMA_VERSION", "MIGRATIONS", "CHECKPOINT_PAGES", "ACTIVE",
           "TERMINAL", "CLAIMABLE", "sources_of"]
