"""Rows to records, the events table, and `RecordsMixin._move`: the one way a job changes state."""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import MISSING
from typing import Any, Iterable

from ..errors import ExpiredJob, UnknownJob
from ..job import JobRecord, State, check_transition, short_id

#: the jobs columns stored as JSON text
JSON_FIELDS = ("tags", "parameters", "options", "resources")
_JOB_FIELDS = frozenset(JobRecord.__dataclass_fields__)
#: the fields of a `JobRecord` with a plain default: what a new row leaves to the table's defaults
_DEFAULTS = {k: f.default for k, f in JobRecord.__dataclass_fields__.items() if f.default is not MISSING}
_STATES = {s.value: s for s in State}
#: a state (a `State` or its value: they hash alike) -> its value
_VALUES = {s.value: s.value for s in State}
#: `RecordsMixin._move`'s statements, by (sets, where, returning): built once
_MOVE_SQL: dict[tuple[str, str, bool], str] = {}
#: the ``seq`` of the job whose full ID is the statement's next parameter: the key of its history rows
SEQ_OF = "(SELECT seq FROM jobs WHERE id = ?)"
#: one line of a job's history, numbered after its last: ``event_log`` is keyed by the job's ``seq``,
#: given (``?1``) or looked up by its ID (`RecordsMixin._event`)
_EVENT_INSERT = ("INSERT INTO event_log (job, id, at, from_state, to_state, reason, actor) VALUES "
                 "({job}, COALESCE((SELECT MAX(id) FROM event_log WHERE job = {job}), 0) + 1, ?2, ?3, ?4, ?5, ?6)")
_EVENT_BY_SEQ = _EVENT_INSERT.format(job="?1")
_EVENT_BY_ID = _EVENT_INSERT.format(job=SEQ_OF.replace("?", "?1"))
#: per column list of a row (``row.keys()``): the (field, position) pairs of a `JobRecord`
_LAYOUTS: dict[tuple[str, ...], tuple[tuple[str, int], ...]] = {}


def _job_filters(table: str, state: Any, name: str | None, tag: str | None) -> tuple[list[str], list[Any]]:
    """WHERE terms and parameters for the state(s) / name (exact or glob) / tag filters of job lists."""
    where: list[str] = []
    params: list[Any] = []
    if state:
        states = [state] if isinstance(state, str) else list(state)
        where.append(f"{table}.state IN ({', '.join('?' * len(states))})")
        params += [State(s).value for s in states]
    if name:
        where.append(f"{table}.name GLOB ?" if any(c in name for c in "*?[") else f"{table}.name = ?")
        params.append(name)
    if tag:
        where.append(f"EXISTS (SELECT 1 FROM json_each({table}.tags) WHERE value = ?)")
        params.append(tag)
    return where, params


def _decoded(d: dict[str, Any]) -> JobRecord:
    """The `JobRecord` of a ``jobs`` row's fields (a dict of column values): JSON parsed, state as `State`."""
    for k in JSON_FIELDS:
        v = d.get(k)
        d[k] = json.loads(v) if v and len(v) > 2 else ([] if k == "tags" else {})  # "{}", "[]": no parse
    d["state"] = _STATES[d["state"]]
    if len(d) == len(_JOB_FIELDS):  # every field: what JobRecord(**d) makes, without its 46-argument call
        rec = object.__new__(JobRecord)
        rec.__dict__.update(d)
        return rec
    return JobRecord(**d)


def new_record(row: dict[str, Any]) -> JobRecord:
    """The record of a job row as just inserted (`JobsMixin._job_row`): what reading it back would give,
    without the read."""
    d = {**_DEFAULTS, **row}
    if len(d) != len(_JOB_FIELDS):  # a column that is no field of the record
        d = {k: v for k, v in d.items() if k in _JOB_FIELDS}
    return _decoded(d)


class RecordsMixin:
    """Helpers every concern of the store shares: decode a row, record an event, move a job."""

    @staticmethod
    def _record(row: sqlite3.Row) -> JobRecord:
        """A ``jobs`` row, decoded (JSON columns parsed, the state as `State`)."""
        keys = tuple(row.keys())
        layout = _LAYOUTS.get(keys)
        if layout is None:  # once per column list: which positions are record fields
            layout = _LAYOUTS[keys] = tuple((k, i) for i, k in enumerate(keys) if k in _JOB_FIELDS)
        values = tuple(row)
        return _decoded({k: values[i] for k, i in layout})

    def _event(self, conn: sqlite3.Connection, job: str | int, old: str | None, new: str,
               reason: str | None, actor: str | None, at: float) -> None:
        """Record one line of the job's history (``old`` -> ``new``, why, by whom); ``job``: its full
        ID, or its ``seq`` where the caller has read it (no lookup)."""
        conn.execute(_EVENT_BY_SEQ if isinstance(job, int) else _EVENT_BY_ID, (job, at, old, new, reason, actor))

    def _move(self, conn: sqlite3.Connection, job_id: str, old: State | str, new: State | str, why: str,
              actor: str | None, now: float, *, sets: str = "", params: Iterable[Any] = (), where: str = "",
              where_params: Iterable[Any] = (), returning: bool = False, seq: int | None = None) -> Any:
        """Move job ``job_id`` from state ``old`` to ``new`` inside ``conn``'s transaction: every change
        of ``jobs.state`` goes through here.

        The lifecycle is checked first (`job.check_transition`: an illegal move raises
        `IllegalTransition` and the caller's transaction rolls back).  The row is updated only while
        it is still ``old`` (and matches ``where``, SQL with ``where_params``); ``updated_at``
        becomes ``now`` and ``sets`` (SQL assignments with ``params``) apply too; the move is
        recorded in ``events`` (``seq``: the job's, if the caller has read it).  Returns True, or
        False when no row was in ``old`` any more; with ``returning``, the updated row
        (`sqlite3.Row`) or None.
        """
        old, new = _VALUES.get(old) or State(old).value, _VALUES.get(new) or State(new).value
        check_transition(old, new)
        sql = _MOVE_SQL.get((sets, where, returning))
        if sql is None:
            sql = _MOVE_SQL[sets, where, returning] = (
                "UPDATE jobs SET state = ?, updated_at = ?" + (", " + sets if sets else "")
                + " WHERE id = ? AND state = ?" + (" AND " + where if where else "")
                + (" RETURNING *" if returning else ""))
        cur = conn.execute(sql, (new, now, *params, job_id, old, *where_params))
        row = cur.fetchone() if returning else None
        if (row is None) if returning else cur.rowcount == 0:
            return None if returning else False
        self._event(conn, job_id if seq is None else seq, old, new, why, actor, now)
        return row if returning else True

    def _unknown(self, prefix: str) -> Exception:
        """The error for an ID (or prefix) no job has: expired (a tombstone says when) or unknown."""
        rows = self._q("SELECT * FROM expired WHERE id >= ? AND id < ? LIMIT 1", (prefix, prefix + "g"))
        if rows:
            r = rows[0]
            day = time.strftime("%Y-%m-%d", time.gmtime(r["expired_at"]))
            return ExpiredJob(f"job {short_id(r['id'])} ({r['name']}, {r['state']}) expired on {day}: "
                              "its record was removed by retention")
        return UnknownJob(f"no job matches '{prefix}' in {self.path.parent}; list jobs with `nbjobs ls`")
