"""The ``workers`` table: who runs, where, and whether it is alive."""
from __future__ import annotations

import os
import time
from typing import Any

from .. import config
from .connection import host


class WorkersMixin:
    """Workers register, heartbeat (see `QueueMixin.heartbeat`), explain themselves and stop."""

    def register_worker(self, worker_id: str, *, concurrency: int, executor: str = "local",
                        autostarted: bool = False, state: str = "running") -> None:
        """Record a worker (again: its row is updated).  ``state`` is ``starting`` while it connects
        to a scheduler or fills its pool, then ``running``; both count as alive (`live_workers`)."""
        now = time.time()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO workers (id, host, pid, executor, concurrency, autostarted, state, started_at, "
                "heartbeat_at) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET executor = excluded.executor, "
                "concurrency = excluded.concurrency, state = excluded.state, heartbeat_at = excluded.heartbeat_at",
                (worker_id, host(), os.getpid(), executor, concurrency, int(autostarted), state, now, now))

    def set_worker_offers(self, worker_id: str, offers: list[dict[str, float]] | None) -> None:
        """What this worker's executor offers jobs that need resources (one dict per place it runs
        attempts: a Dask worker's declared resources); None or [] for none."""
        import json

        with self._tx() as conn:
            conn.execute("UPDATE workers SET resources = ? WHERE id = ?",
                         (json.dumps(offers) if offers else None, worker_id))

    def set_worker_note(self, worker_id: str, note: str | None) -> None:
        """Why this worker does not claim right now (None: it does)."""
        with self._tx() as conn:
            conn.execute("UPDATE workers SET note = ? WHERE id = ?", (note, worker_id))

    def worker_stopped(self, worker_id: str) -> None:
        """Mark the worker stopped (and clear its note)."""
        now = time.time()
        with self._tx() as conn:
            conn.execute("UPDATE workers SET state = 'stopped', stopped_at = ?, heartbeat_at = ?, note = NULL "
                         "WHERE id = ?", (now, now, worker_id))

    def live_workers(self, lease: float = config.LEASE_SECONDS) -> list[dict[str, Any]]:
        """Workers (starting or running) that heartbeated within one lease period and have not stopped."""
        rows = self._q("SELECT * FROM workers WHERE state IN ('starting', 'running') AND heartbeat_at > ? "
                       "ORDER BY started_at", (time.time() - lease,))
        return [dict(r) for r in rows]
