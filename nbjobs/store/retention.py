"""Dead letters (acknowledge), retention (prune, leaving tombstones) and home-wide settings."""
from __future__ import annotations

import time
from typing import Iterable

from ..errors import IllegalTransition
from ..job import TERMINAL, JobRecord, State, short_id


class RetentionMixin:
    """Dead letters, pruning of finished jobs, and the ``settings`` table."""

    _DEAD = "state IN ('failed', 'timed_out') AND acked_at IS NULL"

    def dead_letter_count(self) -> int:
        """How many dead letters there are (failed or timed out, not acknowledged)."""
        return self._q(f"SELECT count(*) FROM jobs WHERE {self._DEAD}")[0][0]

    def dead_letters(self, limit: int | None = 100) -> list[JobRecord]:
        """Failed and timed-out jobs that nobody retried or acknowledged, newest first."""
        sql = f"SELECT * FROM jobs WHERE {self._DEAD} ORDER BY finished_at DESC, id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._record(r) for r in self._q(sql)]

    def ack(self, job_ids: str | Iterable[str], actor: str) -> None:
        """Acknowledge dead letters: they stay recorded but leave the dead-letter list.  One
        transaction: if any ID is unknown or not a dead letter, none is acknowledged."""
        now = time.time()
        with self._tx() as conn:
            for job_id in [job_ids] if isinstance(job_ids, str) else job_ids:
                job = conn.execute("SELECT state, acked_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
                if job is None:
                    raise self._unknown(job_id)
                if job["state"] not in ("failed", "timed_out"):
                    raise IllegalTransition(f"job {short_id(job_id)} is {job['state']}, not a dead letter "
                                            "(only failed or timed-out jobs are); nothing to acknowledge")
                if job["acked_at"] is None:
                    conn.execute("UPDATE jobs SET acked_at = ?, updated_at = ? WHERE id = ?", (now, now, job_id))
                    self._event(conn, job_id, job["state"], job["state"], "dead letter acknowledged", actor, now)

    # --- retention ------------------------------------------------------------------------------
    def prunable(self, before: float, states: Iterable[str] | None = None,
                 dead_letters_only: bool = False) -> list[str]:
        """IDs of finished jobs (terminal states only) that finished before ``before``."""
        terminal = [s.value for s in TERMINAL]
        chosen = [State(s).value for s in states] if states else terminal
        chosen = [s for s in chosen if s in terminal]
        if not chosen:
            return []
        sql = (f"SELECT id FROM jobs WHERE finished_at < ? AND state IN ({', '.join('?' * len(chosen))})"
               + (" AND acked_at IS NULL" if dead_letters_only else ""))
        return [r["id"] for r in self._q(sql, (before, *chosen))]

    def prune(self, job_ids: Iterable[str], actor: str, batch: int = 500) -> int:
        """Delete these finished jobs with their attempts, events and outputs, leaving a tombstone
        in ``expired`` so the ID answers "expired on DATE".  Active jobs are never deleted; a group
        whose last job is pruned goes too."""
        ids = list(job_ids)
        now, done = time.time(), 0
        for i in range(0, len(ids), batch):
            chunk = ids[i:i + batch]
            marks = ", ".join("?" * len(chunk))
            terminal = ", ".join(f"'{s.value}'" for s in TERMINAL)
            with self._tx() as conn:
                conn.execute(f"INSERT OR REPLACE INTO expired (id, name, state, submitted_at, expired_at) "
                             f"SELECT id, name, state, submitted_at, ? FROM jobs WHERE id IN ({marks}) "
                             f"AND state IN ({terminal})", (now, *chunk))
                done += conn.execute(f"DELETE FROM jobs WHERE id IN ({marks}) AND state IN ({terminal})",
                                     chunk).rowcount
                # a group (sweep) goes with its last job
                conn.execute("DELETE FROM groups WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.group_id = groups.id)")
        return done

    # --- settings -------------------------------------------------------------------------------
    def get_setting(self, name: str, default: str | None = None) -> str | None:
        """A home-wide setting, or ``default`` when it is not set."""
        rows = self._q("SELECT value FROM settings WHERE name = ?", (name,))
        return rows[0]["value"] if rows else default

    def set_setting(self, name: str, value: str | None) -> None:
        """Set a home-wide setting (None removes it)."""
        with self._tx() as conn:
            if value is None:
                conn.execute("DELETE FROM settings WHERE name = ?", (name,))
            else:
                conn.execute("INSERT OR REPLACE INTO settings (name, value, updated_at) VALUES (?, ?, ?)",
                             (name, value, time.time()))
