"""Reads for `nbjobs.metrics`: the job history as columns, and the outcome rows SLIs are built from."""
from __future__ import annotations

import sqlite3
from typing import Any, Iterable, Iterator

from ..job import ACTIVE, State
from .records import _job_filters


class HistoryMixin:
    """Bulk reads of many jobs at once, streamed as plain tuples (no `sqlite3.Row`)."""

    #: what `history_rows` returns, in order: one row per job ...
    HISTORY_COLUMNS = ("id", "name", "kind", "state", "reason", "attempts", "priority", "tags", "submitted_at",
                       "started_at", "began_at", "finished_at", "error_type", "error_message", "code_hash", "worker",
                       "output_path")
    #: ... or, with ``attempts=True``, one row per attempt
    ATTEMPT_COLUMNS = ("id", "attempt", "name", "kind", "state", "outcome", "reason", "attempts", "priority", "tags",
                       "submitted_at", "started_at", "began_at", "finished_at", "error_type", "error_message", "code_hash",
                       "worker", "output_path")
    #: the fields of each `outcome_rows` tuple, in order (``packed`` is explained there)
    OUTCOME_COLUMNS = ("group", "packed", "submitted_at", "started_at", "began_at", "finished_at")
    #: the columns `outcome_rows` can group by (None: one group, ``""``)
    OUTCOME_GROUPS = ("name", "kind", "priority")
    _STATE_CODE = "CASE state " + " ".join(f"WHEN '{s.value}' THEN {i}" for i, s in enumerate(State)) + " END"

    #: bytes of the database file a metrics read maps into memory (then unmaps)
    READ_MMAP = 1 << 30

    def _rows(self, sql: str, params: Iterable[Any]) -> Iterator[tuple]:
        """Plain tuple rows of one read (no `sqlite3.Row`), streamed.  The file is memory-mapped
        while they are read (`READ_MMAP`): a million-row read then fetches its pages without a
        system call each, about 30% faster; the map goes when the rows are exhausted."""
        conn = self.conn
        try:
            conn.execute(f"PRAGMA mmap_size = {self.READ_MMAP}")
            try:
                cur = conn.cursor()
                cur.row_factory = None
                yield from cur.execute(sql, tuple(params))
            finally:
                conn.execute("PRAGMA mmap_size = 0")
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def _columns(self, sql: str, params: Iterable[Any], n: int) -> list[list]:
        """One read by column (``n`` lists of equal length), which is what a DataFrame is built
        from: the rows of `_rows`, transposed once."""
        rows = list(self._rows(sql, params))
        return [[r[i] for r in rows] for i in range(n)]

    def history_rows(self, since: float | None = None, until: float | None = None, name: str | None = None,
                     state: str | Iterable[str] | None = None, tag: str | None = None,
                     attempts: bool = False) -> list[list]:
        """The job history as columns (`HISTORY_COLUMNS`, or `ATTEMPT_COLUMNS` with ``attempts``),
        oldest submit first (then in insertion order), from one query.  ``since``/``until`` bound ``submitted_at``
        (``since <= submitted_at < until``, epoch seconds); ``name`` matches exactly or as a glob;
        ``state`` is one state or several; ``tag`` one tag.  ``worker`` is the worker of the job's
        last attempt (per attempt: its own).  ``tags`` stay JSON text.

        >>> import tempfile, pathlib; from nbjobs.store import Store
        >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
        >>> rec, _ = s.insert_job({"name": "a", "kind": "cell", "source": "1"}, actor="doctest")
        >>> cols = dict(zip(Store.HISTORY_COLUMNS, s.history_rows()))
        >>> cols["name"], cols["state"], cols["worker"]
        (['a'], ['queued'], [None])
        """
        where, params = [], []
        if since is not None:
            where.append("j.submitted_at >= ?")
            params.append(float(since))
        if until is not None:
            where.append("j.submitted_at < ?")
            params.append(float(until))
        more_where, more_params = _job_filters("j", state, name, tag)
        where += more_where
        params += more_params
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        if attempts:
            sql = ("SELECT j.id, a.number, j.name, j.kind, j.state, a.outcome, j.reason, j.attempts, j.priority, "
                   "j.tags, j.submitted_at, a.started_at, a.began_at, a.finished_at, a.error_type, a.error_message, "
                   "a.code_hash, a.worker_id, a.output_path FROM jobs j JOIN attempt_log a ON a.job = j.seq"
                   f"{cond} ORDER BY j.submitted_at, j.seq, a.number")
            return self._columns(sql, params, len(self.ATTEMPT_COLUMNS))
        sql = ("SELECT j.id, j.name, j.kind, j.state, j.reason, j.attempts, j.priority, j.tags, j.submitted_at, "
               "j.started_at, j.began_at, j.finished_at, j.error_type, j.error_message, j.code_hash, a.worker_id, j.output_path "
               "FROM jobs j LEFT JOIN attempt_log a ON a.job = j.seq AND a.number = j.attempts"
               f"{cond} ORDER BY j.submitted_at, j.seq")
        return self._columns(sql, params, len(self.HISTORY_COLUMNS))

    def outcome_rows(self, since: float, group: str | None = "name") -> Iterator[tuple]:
        """What the SLI, SLO and Prometheus numbers are computed from, streamed as tuples
        (`OUTCOME_COLUMNS`, for ``numpy.fromiter``): every job that finished at or after
        ``since`` (epoch seconds) and every job not finished (``finished_at IS NULL``: waiting,
        queued, running, retrying).

        Few columns, because reading rows is what costs (about 0.3 µs a value): ``group`` is the
        value of the ``group`` column (one of `OUTCOME_GROUPS`, or ``""`` for None); ``packed`` is
        one small integer ``state + 8 * acknowledged + 16 * slow + 32 * attempts``, where ``state``
        is the index in `State` order (0 waiting ... 7 cancelled), ``acknowledged`` is 1 for an
        acknowledged dead letter and ``slow`` 1 when its latest attempt was flagged slow.  Two
        indexed reads (``jobs_finished``; ``jobs_waiting``, ``jobs_ready``, ``jobs_running``).

        >>> import tempfile, pathlib; from nbjobs.store import Store
        >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
        >>> rec, _ = s.insert_job({"name": "a", "kind": "cell", "source": "1"}, actor="doctest")
        >>> [row[:2] for row in s.outcome_rows(since=0.0)]   # queued (1), not acknowledged, 0 attempts
        [('a', 1)]
        """
        if group is not None and group not in self.OUTCOME_GROUPS:
            raise ValueError(f"cannot group by {group!r}; use one of {', '.join(self.OUTCOME_GROUPS)} or None")
        cols = (f"{group or repr('')}, {self._STATE_CODE} + 8 * (acked_at IS NOT NULL) + 16 * (slow_at IS NOT NULL) "
                "+ 32 * attempts, submitted_at, started_at, began_at, finished_at")
        # the active states one partial index each (jobs_waiting, jobs_ready, jobs_running)
        active = ("state = 'waiting'", "state IN ('queued', 'retrying')", "state = 'running'")
        assert {"waiting", "queued", "retrying", "running"} == {s.value for s in ACTIVE}
        sql = f"SELECT {cols} FROM jobs WHERE finished_at >= ? " + "".join(
            f"UNION ALL SELECT {cols} FROM jobs WHERE {a} AND finished_at IS NULL " for a in active)
        return self._rows(sql, (float(since),))
