"""Slow runs: the runtimes a threshold is drawn from, and the flag on a running attempt."""
from __future__ import annotations

import time

from .. import policy
from .records import SEQ_OF


class SlowMixin:
    """What the worker reads and writes to flag an attempt that runs past its name's usual runtime."""

    def success_runtimes(self, name: str, limit: int = policy.SLOW_HISTORY) -> list[float]:
        """Runtimes (seconds) of the last ``limit`` successful jobs named ``name``, newest first:
        each one's succeeding attempt (its own start to end; the job's span when it has no attempt
        rows).  An indexed read (``jobs_name``) backwards from the newest submit."""
        rows = self._q(
            "SELECT COALESCE(a.finished_at - a.started_at, j.finished_at - j.started_at) FROM jobs j "
            "LEFT JOIN attempt_log a ON a.job = j.seq AND a.number = j.attempts "
            "WHERE j.name = ? AND j.state = 'succeeded' ORDER BY j.submitted_at DESC LIMIT ?", (name, int(limit)))
        return [r[0] for r in rows if r[0] is not None]

    def mark_slow(self, job_id: str, number: int, worker_id: str, threshold: float,
                  now: float | None = None) -> bool:
        """Flag attempt ``number`` of ``job_id`` as slow (it ran past ``threshold`` seconds), once:
        on the job (``slow_at``, ``slow_after``) and the attempt, and queue a ``job.slow`` webhook if
        the job has one.  Only while ``worker_id`` still runs that attempt.  True if it was flagged now."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = conn.execute(
                "UPDATE jobs SET slow_at = ?, slow_after = ?, updated_at = ? WHERE id = ? AND state = 'running' "
                "AND worker_id = ? AND attempts = ? AND slow_at IS NULL RETURNING options",
                (now, float(threshold), now, job_id, worker_id, int(number))).fetchone()
            if row is None:
                return False
            conn.execute(f"UPDATE attempt_log SET slow_at = ? WHERE job = {SEQ_OF} AND number = ?",
                         (now, job_id, int(number)))
            self._enqueue_notification(conn, job_id, "slow", now, row["options"])
        return True
