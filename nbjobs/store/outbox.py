"""The webhook outbox: one row per delivery, written in the transaction that moved the job."""
from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from ..job import State, new_id
from ..policy import notify_wanted


#: `OutboxMixin._enqueue_notification`'s default: read the home's settings
READ = object()
#: the home's webhook URL, as a column of a statement that reads a job
NOTIFY_URL = "(SELECT value FROM settings WHERE name = 'notify_url')"


class OutboxMixin:
    """Queue webhook deliveries and record how each went (`nbjobs.notify` sends them)."""

    #: job fields a webhook carries (never parameters, inputs, sources or tracebacks)
    NOTIFY_FIELDS = ("id", "name", "kind", "state", "reason", "attempts", "retries", "submitted_at", "started_at",
                     "finished_at", "error_type", "error_message", "tags", "options")

    #: the ``notify_on`` settings that hear of slow runs (``job.slow``, see `SlowMixin.mark_slow`)
    SLOW_NOTIFY_ON = (None, "end", "all")

    def _enqueue_notification(self, conn: sqlite3.Connection, job_id: str, state: str, now: float,
                              options_json: str | None = None, home_url: Any = READ) -> None:
        """Queue the webhook for ``job_id`` entering ``state`` if its options (or the home's settings) ask for one.
        ``state`` ``"slow"`` is the event of a running attempt flagged slow (`SlowMixin.mark_slow`): it is
        sent wherever a webhook applies with ``notify_on`` end (the default) or all, once per attempt.
        ``home_url``: the home's ``notify_url`` setting when the caller read it in this transaction
        (`NOTIFY_URL`, a subquery of its own statement: one statement fewer on the claim and the end)."""
        if options_json is None:
            got = conn.execute("SELECT options FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if got is None:
                return
            options_json = got[0]
        options = json.loads(options_json) if options_json and options_json != "{}" else {}
        url = options.get("notify")
        on = options.get("notify_on")
        if url is None and home_url is None:
            return  # neither the job nor the home asks for webhooks
        if url is None:
            for r in conn.execute("SELECT name, value FROM settings WHERE name IN ('notify_url', 'notify_on')"):
                if r["name"] == "notify_url":
                    url = r["value"]
                elif on is None:
                    on = r["value"]
        slow = state == "slow"
        if not url or not (on in self.SLOW_NOTIFY_ON if slow else notify_wanted(on, state, State(state).terminal)):
            return
        row = conn.execute(f"SELECT {', '.join(self.NOTIFY_FIELDS)}, slow_after FROM jobs WHERE id = ?",
                           (job_id,)).fetchone()
        snapshot = {k: row[k] for k in self.NOTIFY_FIELDS if k not in ("options", "tags", "retries")}
        snapshot.update(state=row["state"] if slow else state, max_attempts=row["retries"] + 1,
                        tags=json.loads(row["tags"] or "[]"), schedule=options.get("schedule"), at=now)
        if slow:
            snapshot["slow_after"] = row["slow_after"]
        conn.execute("INSERT INTO outbox (id, job_id, url, event, body, next_at, created_at) VALUES (?,?,?,?,?,?,?)",
                     (new_id(), job_id, url, state, json.dumps(snapshot), now, now))

    def due_deliveries(self, now: float | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Outbox rows whose (next) delivery attempt is due, oldest first."""
        now = time.time() if now is None else now
        return [dict(r) for r in self._q("SELECT * FROM outbox WHERE state = 'pending' AND next_at <= ? "
                                         "ORDER BY next_at LIMIT ?", (now, int(limit)))]

    def claim_delivery(self, delivery_id: str, hold: float = 60.0, now: float | None = None) -> dict[str, Any] | None:
        """Take one due delivery for ``hold`` seconds (so another worker does not send it at the
        same time); counts the attempt.  None if someone else took it."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = conn.execute("UPDATE outbox SET next_at = ?, attempts = attempts + 1 WHERE id = ? AND "
                               "state = 'pending' AND next_at <= ? RETURNING *",
                               (now + hold, delivery_id, now)).fetchone()
        return dict(row) if row else None

    def delivery_result(self, delivery_id: str, *, ok: bool, status: int | None = None, error: str | None = None,
                        retry_at: float | None = None, now: float | None = None) -> None:
        """Record one delivery attempt: delivered, retried at ``retry_at``, or given up (failed)."""
        now = time.time() if now is None else now
        state = "delivered" if ok else ("pending" if retry_at is not None else "failed")
        with self._tx() as conn:
            conn.execute("UPDATE outbox SET state = ?, last_status = ?, last_error = ?, delivered_at = ?, "
                         "next_at = COALESCE(?, next_at) WHERE id = ?",
                         (state, status, None if ok else (error or "")[:500], now if ok else None, retry_at,
                          delivery_id))

    def deliveries(self, job_id: str) -> list[dict[str, Any]]:
        """The webhook deliveries of one job (oldest first), with attempts and the last error."""
        return [dict(r) for r in self._q("SELECT * FROM outbox WHERE job_id = ? ORDER BY created_at, id", (job_id,))]
