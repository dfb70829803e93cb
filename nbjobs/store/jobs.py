"""Jobs: submit, read, list, count; the user's cancel and retry."""
from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Iterable

from .. import config
from ..errors import BadInput, IllegalTransition
from ..job import RETRYABLE, JobRecord, State, new_id, short_id
from .records import _job_filters, new_record
from .schema import CHANGED_LATE

#: `JobsMixin.changed_since`: the union is complete (see `schema.CHANGED_LATE`, the partial index's rows)
_CHANGED_SINCE = (
    f"SELECT id, updated_at FROM jobs INDEXED BY jobs_updated WHERE updated_at >= ?1 AND {CHANGED_LATE} "
    "UNION SELECT id, updated_at FROM jobs INDEXED BY jobs_submitted WHERE submitted_at >= ?1 AND updated_at >= ?1 "
    "UNION SELECT id, updated_at FROM jobs INDEXED BY jobs_running WHERE state = 'running' AND updated_at >= ?1 "
    "UNION SELECT id, updated_at FROM jobs INDEXED BY jobs_finished WHERE finished_at >= ?1 AND updated_at >= ?1 "
    "ORDER BY 2, 1")
#: the INSERT of a job row, per column list (`JobsMixin._job_row` makes one list)
_INSERT_SQL: dict[tuple[str, ...], str] = {}


class JobsMixin:
    """Submitting jobs, reading them back, and the user's actions on one job (cancel, retry)."""

    def insert_job(self, spec: dict[str, Any], actor: str) -> tuple[JobRecord, bool]:
        """Record a new job as ``queued`` (``waiting`` with upstream jobs in ``spec["after"]``,
        full IDs that must exist) and return ``(record, created)``.

        With an idempotency key (``spec["idem_key"]``) that is already used, nothing is written
        and the existing job is returned with ``created=False``; the UNIQUE index decides, so
        two racing processes cannot both create one.
        """
        now = time.time()
        row = self._job_row(spec, actor, now)
        after = list(spec.get("after") or ())
        with self._tx() as conn:
            if not self._insert(conn, row, after, actor, now):
                existing = conn.execute("SELECT * FROM jobs WHERE idem_key = ?", (row["idem_key"],)).fetchone()
                return self._record(existing), False
        # the row as inserted, unless resolving its upstream jobs may have moved it since
        return (self.get(row["id"]) if after else new_record(row)), True

    @staticmethod
    def _job_row(spec: dict[str, Any], actor: str, now: float) -> dict[str, Any]:
        """The ``jobs`` row of a new job from its spec (queued; `_insert` makes it waiting)."""
        tags, parameters, options = spec.get("tags"), spec.get("parameters"), spec.get("options")
        return {
            "id": spec.get("id") or new_id(),
            "name": spec.get("name") or "job",
            "kind": spec["kind"],
            "state": State.QUEUED.value,
            "priority": int(spec.get("priority") or 0),
            "tags": json.dumps(list(tags)) if tags else "[]",
            "notebook": spec.get("notebook"),
            "source": spec.get("source"),
            "parameters": json.dumps(parameters) if parameters else "{}",
            "kernel": spec.get("kernel"),
            "cwd": spec.get("cwd"),
            "retries": int(spec.get("retries") or 0),
            "timeout": spec.get("timeout"),
            "idem_key": spec.get("idem_key"),
            "submitted_at": now,
            "run_at": now,
            "updated_at": now,
            "code_hash": spec.get("code_hash"),
            "submitted_by": actor,
            "options": json.dumps(options) if options else "{}",
            "group_id": spec.get("group_id"),
            "concurrency_key": spec.get("concurrency_key"),
            "max_running": spec.get("max_running"),
            "resources": json.dumps(spec["resources"]) if spec.get("resources") else None,
        }

    def _insert(self, conn: sqlite3.Connection, row: dict[str, Any], after: list[str], actor: str,
                now: float) -> bool:
        """Insert one job row and its ``submitted`` event inside a transaction; False (nothing
        written) when its idempotency key is taken.  With upstream jobs (``after``: full IDs) it
        starts ``waiting`` and is resolved at once, so an upstream that already ended moves it on in
        the same transaction."""
        after = list(dict.fromkeys(after))
        if row["id"] in after:
            raise BadInput(f"job {short_id(row['id'])} cannot run after itself; remove it from --after")
        for up in after:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (up,)).fetchone() is None:
                raise self._unknown(up)
        if after:
            row = dict(row, state=State.WAITING.value)
        keys = tuple(row)
        sql = _INSERT_SQL.get(keys)
        if sql is None:
            sql = _INSERT_SQL[keys] = (
                f"INSERT INTO jobs ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))}) "
                "ON CONFLICT (idem_key) WHERE idem_key IS NOT NULL DO NOTHING")
        cur = conn.execute(sql, tuple(row.values()))
        if cur.rowcount == 0:
            return False
        why = "submitted" + (f" after {', '.join(short_id(u) for u in after)}" if after else "")
        self._event(conn, cur.lastrowid, None, row["state"], why, actor, now)  # lastrowid: the job's seq
        if after:
            conn.executemany("INSERT INTO deps (job_id, upstream_id) VALUES (?, ?)", [(row["id"], u) for u in after])
            self._resolve(conn, [row["id"]], actor, now)
        return True

    # --- reads ----------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord:
        """The record of one job by full ID (an unknown or expired ID raises)."""
        rows = self._q("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise self._unknown(job_id)
        return self._record(rows[0])

    def list_jobs(self, state: str | Iterable[str] | None = None, name: str | None = None,
                  tag: str | None = None, limit: int | None = 20, group: str | None = None) -> list[JobRecord]:
        """Newest first.  ``state`` may be one state or several; ``name`` matches exactly or as a
        glob (``train*``); ``group``: only the jobs of this group (full ID)."""
        where, params = _job_filters("jobs", state, name, tag)
        if group:
            where.append("jobs.group_id = ?")
            params.append(group)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY submitted_at DESC, id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._record(r) for r in self._q(sql, params)]

    def changed_since(self, since: float) -> list[tuple[str, float]]:
        """``(id, updated_at)`` of the jobs updated at or after ``since``, oldest change first: the
        panel's cheap "what changed?" step.  Four index ranges: a job updated since ``since`` was
        submitted then (``jobs_submitted``), or is running (``jobs_running``, a few rows), or ended
        at its last change (``jobs_finished``), or else it is in ``jobs_updated`` (`CHANGED_LATE`).

        >>> import tempfile, pathlib; from nbjobs.store import Store
        >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
        >>> rec, _ = s.insert_job({"name": "a", "kind": "cell", "source": "1"}, actor="doctest")
        >>> [i for i, _ in s.changed_since(rec.updated_at)] == [rec.id]
        True
        """
        return [(r[0], r[1]) for r in self._q(_CHANGED_SINCE, (since,))]

    def get_many(self, ids: Iterable[str]) -> list[JobRecord]:
        """The records of these job IDs (full IDs; unknown ones are left out), in no set order."""
        ids = list(ids)
        out: list[JobRecord] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out += [self._record(r) for r in
                    self._q(f"SELECT * FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})", chunk)]
        return out

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        """The attempts of one job, oldest first (``versions`` decoded)."""
        rows = self._q("SELECT * FROM attempts WHERE job_id = ? ORDER BY number", (job_id,))
        out = []
        for r in rows:
            d = dict(r)
            d["versions"] = json.loads(d["versions"]) if d["versions"] else {}
            out.append(d)
        return out

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The history of one job (its events), oldest first."""
        return [dict(r) for r in self._q("SELECT * FROM events WHERE job_id = ? ORDER BY id", (job_id,))]

    def outputs(self, job_id: str) -> list[dict[str, Any]]:
        """The outputs one job recorded, by name."""
        return [dict(r) for r in self._q("SELECT * FROM outputs WHERE job_id = ? ORDER BY name", (job_id,))]

    def counts(self) -> dict[str, int]:
        """Jobs per state (every state present, zero when none)."""
        out = {s.value: 0 for s in State}
        for r in self._q("SELECT state, count(*) AS n FROM jobs GROUP BY state"):
            out[r["state"]] = r["n"]
        return out

    def summary(self, lease: float = config.LEASE_SECONDS) -> dict[str, Any]:
        """Counts for a header: jobs per state, queue depth (queued + retrying + waiting), running,
        live workers and dead letters (failed or timed-out jobs nobody retried or acknowledged).
        Two indexed queries."""
        counts = self.counts()
        workers = self._q("SELECT executor, note, state, concurrency FROM workers WHERE state IN "
                          "('starting', 'running') AND heartbeat_at > ?", (time.time() - lease,))
        claiming = [w for w in workers if w["state"] == "running" and not w["note"]]
        return {
            "counts": counts,
            "queue_depth": counts["queued"] + counts["retrying"] + counts["waiting"],
            "running": counts["running"],
            "workers": len(workers),
            # what the live workers run on: 'local', or 'dask@<dashboard link>' (see executors.dask)
            "executors": sorted({w["executor"] or "local" for w in workers}),
            # why a live worker does not claim (e.g. its kernels keep failing to start), if one says so
            "worker_notes": [w["note"] for w in workers if w["note"]],
            # what `nbjobs.text.wait_reason` explains a queued job's wait with
            "starting": sum(w["state"] == "starting" for w in workers),
            "slots": sum(w["concurrency"] or 1 for w in claiming),
            "dead_letters": self.dead_letter_count(),
        }

    # --- user actions -------------------------------------------------------------------------
    def request_cancel(self, job_id: str, actor: str) -> str:
        """Cancel a job.  Not yet running: cancelled at once.  Running: flagged; the worker that
        runs it stops the kernel and records ``cancelled``.  Returns the state after the call."""
        now = time.time()
        with self._tx() as conn:
            job = conn.execute("SELECT state, cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if job is None:
                raise self._unknown(job_id)
            state = State(job["state"])
            if state == State.RUNNING:
                if not job["cancel_requested"]:
                    conn.execute("UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?", (now, job_id))
                    self._event(conn, job_id, "running", "running", "cancel requested", actor, now)
                return State.RUNNING.value
            if state.terminal:
                raise IllegalTransition(f"job {short_id(job_id)} already {state}; there is nothing to cancel "
                                        "(use `nbjobs retry` to run it again)")
            self._move(conn, job_id, state, State.CANCELLED, "cancelled before it ran", actor, now,
                       sets="reason = 'cancelled', cancel_requested = 1, finished_at = ?", params=(now,))
            self._changed(conn, job_id, State.CANCELLED.value, actor, now)
            return State.CANCELLED.value

    def retry(self, job_id: str, actor: str) -> None:
        """Re-queue a failed, timed-out or cancelled job under the same ID.  Attempt numbers
        continue; the retry budget starts afresh."""
        now = time.time()
        with self._tx() as conn:
            job = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if job is None:
                raise self._unknown(job_id)
            state = State(job["state"])
            if state not in RETRYABLE:
                hint = "wait for it to end" if state.active else "it succeeded; submit it again to rerun"
                raise IllegalTransition(f"job {short_id(job_id)} is {state}, so it cannot be retried ({hint})")
            waits = conn.execute("SELECT 1 FROM deps WHERE job_id = ? LIMIT 1", (job_id,)).fetchone() is not None
            new = State.WAITING.value if waits else State.QUEUED.value
            self._move(conn, job_id, state, new, "retried", actor, now,
                       sets="reason = 'retried', cancel_requested = 0, failures = 0, infra_failures = 0, run_at = ?, "
                       "budget_from = attempts, "
                       "finished_at = NULL, acked_at = NULL, error_type = CASE WHEN reason = 'dependency_failed' "
                       "THEN NULL ELSE error_type END, error_message = CASE WHEN reason = 'dependency_failed' "
                       "THEN NULL ELSE error_message END", params=(now,))
            if waits:  # upstream jobs again: queued at once if they all succeeded by now
                self._resolve(conn, [job_id], actor, now)
