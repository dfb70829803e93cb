"""Dependencies between jobs: a waiting job moves on when its upstream jobs end.

What a waiting job does is decided by `job.dependency_outcome` (a pure function); this module
reads the upstream states, applies the outcome and cascades it to the jobs downstream.
"""
from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Iterable

from ..job import TERMINAL_VALUES, State, dependency_outcome
from .outbox import READ


class DependenciesMixin:
    """Resolve waiting jobs, inside the transaction that ended their upstream job."""

    def _changed(self, conn: sqlite3.Connection, job_id: str, state: str, actor: str, now: float,
                 options: str | None = None, home_url: Any = READ, downstream: bool = True) -> None:
        """Called inside the transaction that moved ``job_id`` to ``state``: queue its webhook
        (transactional outbox) and, when it ended, move on the jobs waiting for it; a dependent
        cancelled for that reason cascades to its own dependents (a work list, no recursion).
        ``options``: the job's options JSON when the caller has it (saves a read); ``home_url`` (the
        home's webhook URL) and ``downstream`` (False: no job waits for it) likewise."""
        todo = [(job_id, state, options, home_url, downstream)]
        while todo:
            jid, st, opts, url, down = todo.pop()
            self._enqueue_notification(conn, jid, st, now, opts, url)
            if down and st in TERMINAL_VALUES:
                waiting = [r[0] for r in conn.execute(
                    "SELECT d.job_id FROM deps d JOIN jobs j ON j.id = d.job_id "
                    "WHERE d.upstream_id = ? AND j.state = 'waiting'", (jid,))]
                for dep in waiting:
                    new = self._resolve_one(conn, dep, actor, now)
                    if new:
                        todo.append((dep, new, None, READ, True))

    def _resolve(self, conn: sqlite3.Connection, ids: Iterable[str], actor: str, now: float) -> None:
        """Resolve these waiting jobs now (a new job with upstream jobs, a retried one), cascading."""
        for jid in ids:
            new = self._resolve_one(conn, jid, actor, now)
            if new:
                self._changed(conn, jid, new, actor, now)

    def _resolve_one(self, conn: sqlite3.Connection, job_id: str, actor: str, now: float) -> str | None:
        """Apply `job.dependency_outcome` to one waiting job: queue it when its upstream jobs all
        succeeded (with ``after_any``: all ended), cancel it (reason ``dependency_failed``) when one
        ended failed, timed out or cancelled.  Returns the new state, or None when it keeps waiting."""
        job = conn.execute("SELECT state, options FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if job is None or job["state"] != State.WAITING.value:
            return None
        after_any = bool(json.loads(job["options"] or "{}").get("after_any"))
        ups = conn.execute(
            "SELECT d.upstream_id AS id, COALESCE(j.state, x.state, 'cancelled') AS state, "
            "COALESCE(j.name, x.name) AS name FROM deps d LEFT JOIN jobs j ON j.id = d.upstream_id "
            "LEFT JOIN expired x ON x.id = d.upstream_id WHERE d.job_id = ? ORDER BY d.upstream_id",
            (job_id,)).fetchall()
        outcome = dependency_outcome(((u["id"], u["name"], u["state"]) for u in ups), after_any)
        if outcome.state == State.CANCELLED:
            self._move(conn, job_id, State.WAITING, State.CANCELLED, f"{outcome.reason}: {outcome.message}", actor,
                       now, sets="reason = ?, finished_at = ?, error_type = 'DependencyFailed', error_message = ?",
                       params=(outcome.reason, now, outcome.message))
        elif outcome.state == State.QUEUED:
            self._move(conn, job_id, State.WAITING, State.QUEUED, outcome.message, actor, now,
                       sets="reason = NULL, run_at = ?", params=(now,))
        return None if outcome.state is None else outcome.state.value

    def resolve_waiting(self, actor: str) -> int:
        """The safety net behind the resolution at the moment an upstream job ends: look at every
        waiting job once.  Returns how many moved on."""
        ids = [r["id"] for r in self._q("SELECT id FROM jobs WHERE state = 'waiting'")]
        moved = 0
        for jid in ids:
            with self._tx() as conn:
                before = conn.execute("SELECT state FROM jobs WHERE id = ?", (jid,)).fetchone()
                self._resolve(conn, [jid], actor, time.time())
                after = conn.execute("SELECT state FROM jobs WHERE id = ?", (jid,)).fetchone()
                moved += int(before is not None and after is not None and before[0] != after[0])
        return moved

    def upstream(self, job_id: str) -> list[str]:
        """IDs of the jobs ``job_id`` waits for (or waited for)."""
        return [r[0] for r in self._q("SELECT upstream_id FROM deps WHERE job_id = ? ORDER BY upstream_id",
                                      (job_id,))]

    def downstream(self, job_id: str) -> list[str]:
        """IDs of the jobs that run after ``job_id``."""
        return [r[0] for r in self._q("SELECT job_id FROM deps WHERE upstream_id = ? ORDER BY job_id", (job_id,))]
