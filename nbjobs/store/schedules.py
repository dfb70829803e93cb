"""Cron schedules, what each fire decided, and the firing itself (one compare-and-set transaction)."""
from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Iterable

from ..errors import BadInput
from ..job import State


class SchedulesMixin:
    """The ``schedules`` and ``schedule_events`` tables; `fire_schedule` inserts the jobs a fire decided."""

    @staticmethod
    def _schedule(row: sqlite3.Row) -> dict[str, Any]:
        """A ``schedules`` row, decoded."""
        d = dict(row)
        d["spec"] = json.loads(d["spec"])
        d["paused"] = bool(d["paused"])
        return d

    def add_schedule(self, name: str, cron: str, tz: str, spec: dict[str, Any], *, misfire: str, misfire_cap: int,
                     overlap: str, now: float | None = None, actor: str = "api") -> dict[str, Any]:
        """Record a new schedule; slots before ``now`` never fire.  A taken name is refused."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM schedules WHERE name = ?", (name,)).fetchone():
                raise BadInput(f"a schedule named {name!r} exists; pick another name or remove it first "
                               f"(`nbjobs schedule rm {name}`)")
            conn.execute("INSERT INTO schedules (name, cron, tz, spec, misfire, misfire_cap, overlap, created_at, "
                         "updated_at, last_slot) VALUES (?,?,?,?,?,?,?,?,?,?)",
                         (name, cron, tz, json.dumps(spec), misfire, misfire_cap, overlap, now, now, now))
            self._schedule_event(conn, name, now, None, "added", None, f"by {actor}")
        return self.get_schedule(name)

    def _schedule_event(self, conn: sqlite3.Connection, name: str, at: float, slot: float | None, action: str,
                        job_id: str | None, detail: str | None) -> None:
        """Record what a schedule did (inside ``conn``'s transaction)."""
        conn.execute("INSERT INTO schedule_events (schedule, at, slot, action, job_id, detail) VALUES (?,?,?,?,?,?)",
                     (name, at, slot, action, job_id, detail))

    def get_schedule(self, name: str) -> dict[str, Any]:
        """One schedule by name (an unknown name raises `BadInput`)."""
        rows = self._q("SELECT * FROM schedules WHERE name = ?", (name,))
        if not rows:
            raise BadInput(f"no schedule named {name!r}; list them with `nbjobs schedule ls`")
        return self._schedule(rows[0])

    def list_schedules(self) -> list[dict[str, Any]]:
        """Every schedule, by name."""
        return [self._schedule(r) for r in self._q("SELECT * FROM schedules ORDER BY name")]

    def schedule_events(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        """What the schedule did, newest first: fired, skipped (overlap or misfire), paused..."""
        return [dict(r) for r in self._q("SELECT * FROM schedule_events WHERE schedule = ? ORDER BY id DESC LIMIT ?",
                                         (name, int(limit)))]

    def set_schedule_paused(self, name: str, paused: bool, now: float | None = None, actor: str = "api") -> None:
        """Pause or resume.  Resuming starts from ``now``: slots of the pause never fire."""
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = conn.execute("SELECT paused FROM schedules WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise BadInput(f"no schedule named {name!r}; list them with `nbjobs schedule ls`")
            if bool(row["paused"]) == paused:
                return
            conn.execute("UPDATE schedules SET paused = ?, updated_at = ?" + ("" if paused else ", last_slot = ?")
                         + " WHERE name = ?", (int(paused), now, name) if paused else (0, now, now, name))
            self._schedule_event(conn, name, now, None, "paused" if paused else "resumed", None, f"by {actor}")

    def remove_schedule(self, name: str) -> None:
        """Delete a schedule and its events (the jobs it fired stay)."""
        with self._tx() as conn:
            if conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount == 0:
                raise BadInput(f"no schedule named {name!r}; list them with `nbjobs schedule ls`")
            conn.execute("DELETE FROM schedule_events WHERE schedule = ?", (name,))

    def active_flow(self) -> bool:
        """True while a worker has background duties: unpaused schedules or pending webhooks."""
        return bool(self._q("SELECT EXISTS (SELECT 1 FROM schedules WHERE paused = 0) "
                            "OR EXISTS (SELECT 1 FROM outbox WHERE state = 'pending')")[0][0])

    def job_active(self, job_id: str | None) -> bool:
        """True while the job ``job_id`` has not ended (False for None or an unknown ID)."""
        if not job_id:
            return False
        rows = self._q("SELECT state FROM jobs WHERE id = ?", (job_id,))
        return bool(rows) and State(rows[0][0]).active

    def fire_schedule(self, name: str, expected_slot: float | None, new_slot: float | None,
                      fires: Iterable[tuple[float | None, dict[str, Any]]],
                      notes: Iterable[tuple[float | None, str, str]], actor: str,
                      now: float | None = None) -> list[str] | None:
        """Apply one firing decision in ONE transaction: insert the jobs of ``fires`` (``(slot,
        spec)``; each spec carries its idempotency key ``schedule:NAME:SLOT``), record ``notes``
        (``(slot, action, detail)``) and move the schedule's ``last_slot`` from ``expected_slot``
        to ``new_slot``.  Compare-and-set: if ``last_slot`` is no longer ``expected_slot`` (another
        firer got there first) nothing is written and None is returned.  ``expected_slot=None``
        (run-now) fires without moving ``last_slot``.  Returns the IDs of the jobs created."""
        now = time.time() if now is None else now
        created: list[str] = []
        with self._tx() as conn:
            row = conn.execute("SELECT last_slot, paused FROM schedules WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise BadInput(f"no schedule named {name!r}; list them with `nbjobs schedule ls`")
            if expected_slot is not None and row["last_slot"] != expected_slot:
                return None
            last_job = None
            for slot, spec in fires:
                job_row = self._job_row(spec, actor, now)
                if self._insert(conn, job_row, list(spec.get("after") or ()), actor, now):
                    created.append(job_row["id"])
                    last_job = job_row["id"]
                    self._schedule_event(conn, name, now, slot, "fired", job_row["id"], spec.get("note"))
                else:  # the slot's key exists: it fired before (never twice)
                    self._schedule_event(conn, name, now, slot, "duplicate", None, "slot had already fired")
            for slot, action, detail in notes:
                self._schedule_event(conn, name, now, slot, action, None, detail)
            conn.execute("UPDATE schedules SET last_slot = COALESCE(?, last_slot), fires = fires + ?, "
                         "last_job_id = COALESCE(?, last_job_id), updated_at = ? WHERE name = ?",
                         (new_slot if expected_slot is not None else None, len(created), last_job, now, name))
        return created

    def backfill_schedule(self, name: str, fires: Iterable[tuple[float, dict[str, Any]]], actor: str,
                          now: float | None = None) -> list[tuple[float, str, bool]]:
        """Insert the jobs of past slots (``(slot, spec)``, oldest first; each spec with its slot's
        idempotency key) in ONE transaction, without moving ``last_slot``.  A slot whose key exists
        (it fired or was backfilled before) keeps its job.  Jobs are submitted a microsecond apart,
        in slot order, so equal-priority backfills run oldest slot first.  Returns ``(slot, job ID,
        created)`` per slot."""
        now = time.time() if now is None else now
        out: list[tuple[float, str, bool]] = []
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM schedules WHERE name = ?", (name,)).fetchone() is None:
                raise BadInput(f"no schedule named {name!r}; list them with `nbjobs schedule ls`")
            for i, (slot, spec) in enumerate(fires):
                job_row = self._job_row(spec, actor, now + i * 1e-6)
                if self._insert(conn, job_row, list(spec.get("after") or ()), actor, now + i * 1e-6):
                    out.append((slot, job_row["id"], True))
                    self._schedule_event(conn, name, now, slot, "backfilled", job_row["id"], spec.get("note"))
                else:
                    existing = conn.execute("SELECT id FROM jobs WHERE idem_key = ?", (job_row["idem_key"],)).fetchone()
                    out.append((slot, existing["id"], False))
            created = sum(1 for _, _, c in out if c)
            conn.execute("UPDATE schedules SET fires = fires + ?, updated_at = ? WHERE name = ?", (created, now, name))
        return out
