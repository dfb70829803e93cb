"""Loaders for tests and benchmarks: rows written straight into a `Store`, past its state machine.

nbjobs itself never writes rows this way (a job is submitted with `Store.insert_job` and moved by
the store); these build histories and big tables quickly, with known values.  Tests import them as
``from support.loaders import ...`` (pytest puts ``tests/`` on ``sys.path``); benchmarks first put
the repository's ``tests`` folder on ``sys.path``.

>>> import tempfile, pathlib
>>> from nbjobs.store import Store
>>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
>>> insert_rows(s, [{"name": "old", "kind": "cell", "state": "succeeded", "submitted_at": 1.0}])
1
"""
from __future__ import annotations

import json
import time
from typing import Any, Iterable

from nbjobs.job import State, new_id
from nbjobs.store import Store
from nbjobs.store.records import JSON_FIELDS


def insert_rows(store: Store, rows: Iterable[dict[str, Any]]) -> int:
    """Bulk-load job rows as they are (any ``jobs`` columns; ``tags``, ``parameters`` and
    ``options`` as Python values) in one transaction, without events: not for submitting (use
    `Store.insert_job`).  Missing columns: a new ID, ``queued``, name ``job``, kind ``cell``,
    submitted now.  Returns the number of rows written."""
    now = time.time()
    n = 0
    with store._tx() as conn:
        for spec in rows:
            row = {"id": spec.get("id") or new_id(), "state": State.QUEUED.value, "name": "job", "kind": "cell",
                   **spec}
            row.setdefault("submitted_at", now)
            row.setdefault("run_at", row["submitted_at"])
            row.setdefault("updated_at", row.get("finished_at") or row.get("started_at") or row["submitted_at"])
            for k in JSON_FIELDS:
                if k in row and not isinstance(row[k], str):
                    row[k] = json.dumps(row[k])
            conn.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                         tuple(row.values()))
            n += 1
    return n


def bulk_insert(store: Store, table: str, columns: Iterable[str], rows: Iterable[Iterable[Any]], *,
                defer_indexes: bool = False) -> int:
    """Load many rows into ``table`` (``jobs``, ``attempts`` or ``events``) in one transaction with
    ``executemany`` (no events, no checks).  ``defer_indexes=True`` drops the table's secondary
    indexes first and rebuilds them after (about 3x faster for a million rows; only on a database
    no other process is using).  Returns the number of rows written.  Attempts and events name their
    job by ``job_id`` (the columns of the views) and go straight to ``attempt_log`` and ``event_log``
    under its ``seq`` (through the views' triggers, SQLite would count no rows written).

    >>> import tempfile, pathlib
    >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
    >>> bulk_insert(s, "jobs", ["id", "name", "kind", "state", "submitted_at", "run_at", "updated_at"],
    ...             [("a" * 32, "old", "cell", "succeeded", 1.0, 1.0, 1.0)])
    1
    """
    if table not in ("jobs", "attempts", "events"):
        raise ValueError(f"bulk_insert loads jobs, attempts or events, not {table!r}")
    columns = list(columns)
    known = {r["name"] for r in store._q(f"PRAGMA table_info({table})")}
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise ValueError(f"{table} has no column(s) {', '.join(unknown)}")
    indexes = store._q("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                       "AND sql IS NOT NULL", (table,)) if defer_indexes else []
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    if table != "jobs":  # the views' rows: into the log, keyed by the job's seq (job_id last)
        at = columns.index("job_id")
        rest = columns[:at] + columns[at + 1:]
        sql = (f"INSERT INTO {table[:-1]}_log (job, {', '.join(rest)}) SELECT seq, {', '.join('?' * len(rest))} "
               "FROM jobs WHERE id = ?")
        rows = (tuple(r[:at]) + tuple(r[at + 1:]) + (r[at],) for r in map(tuple, rows))
    cache = store._q("PRAGMA cache_size")[0][0]
    store.conn.execute("PRAGMA cache_size = -262144")  # 256 MiB while loading: fewer page writes
    try:
        with store._tx() as conn:
            for ix in indexes:
                conn.execute(f"DROP INDEX {ix['name']}")
            n = conn.executemany(sql, rows).rowcount
            for ix in indexes:
                conn.execute(ix["sql"])
    finally:
        store.conn.execute(f"PRAGMA cache_size = {int(cache)}")
    return n


def retime(store: Store, job_id: str, submitted_at: float, attempts: Iterable[tuple[float, ...]] = (),
           finished_at: float | None = None) -> None:
    """Move a job's timestamps to chosen values after it went through the real state machine
    (`Store.insert_job`, `Store.claim`, `Store.finish_attempt`), so tests build histories with
    known timings.  ``attempts`` gives ``(started_at, finished_at)`` or ``(started_at, began_at,
    finished_at)`` of attempts 1, 2, ... (without ``began_at``, the attempt began its code as it
    started); the job's ``started_at`` becomes the first attempt's start, its ``began_at`` the last
    attempt's, and, if the job has finished, its ``finished_at`` becomes ``finished_at`` if given,
    else the last attempt's end (or ``submitted_at`` when it never started).  Events keep their
    times; nothing else changes.

    >>> import tempfile, pathlib
    >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
    >>> rec, _ = s.insert_job({"name": "a", "kind": "cell", "source": "1"}, actor="doctest")
    >>> _, number = s.claim("w1")
    >>> s.finish_attempt(rec.id, number, "w1", "succeeded")
    'succeeded'
    >>> retime(s, rec.id, 100.0, [(105.0, 135.0)])
    >>> r = s.get(rec.id); (r.submitted_at, r.started_at, r.finished_at, r.runtime)
    (100.0, 105.0, 135.0, 30.0)
    """
    spans = [(a[0], a[0], a[1]) if len(a) == 2 else tuple(a) for a in attempts]
    store.get(job_id)  # an unknown ID raises the store's own error
    with store._tx() as conn:
        job = conn.execute("SELECT finished_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
        for number, (start, began, end) in enumerate(spans, 1):
            conn.execute("UPDATE attempt_log SET started_at = ?, began_at = ?, finished_at = ? "
                         "WHERE job = (SELECT seq FROM jobs WHERE id = ?) AND number = ?", (start, began, end, job_id, number))
        finished = None
        if job["finished_at"] is not None:
            finished = finished_at if finished_at is not None else spans[-1][2] if spans else submitted_at
        conn.execute("UPDATE jobs SET submitted_at = ?, run_at = ?, started_at = ?, began_at = ?, finished_at = ?, "
                     "updated_at = ? WHERE id = ?",
                     (submitted_at, submitted_at, spans[0][0] if spans else None, spans[-1][1] if spans else None,
                      finished, submitted_at if finished is None else finished, job_id))


def lease_holder(store: Store, name: str, now: float | None = None) -> str | None:
    """Who holds the named lease now (None: nobody, or it expired)."""
    now = time.time() if now is None else now
    rows = store._q("SELECT holder FROM leases WHERE name = ? AND until > ?", (name, now))
    return rows[0][0] if rows else None
