"""The queue: claim, heartbeat, progress, finish (by the retry policy; with the next claim in one
commit: `QueueMixin.finish_and_claim`), release, reclaim."""
from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import Any, Iterable

from .. import config, policy
from ..errors import BadInput
from ..job import TERMINAL_VALUES, JobRecord, State
from .connection import host
from .outbox import NOTIFY_URL
from .records import SEQ_OF


#: the claim's per-name limit: a job with a concurrency key is claimable only while fewer than its
#: ``max_running`` running jobs share its key.  Counted inside the claim's write transaction (BEGIN
#: IMMEDIATE), so two workers can never both take the last place; jobs without a key skip the count.
_UNDER_LIMIT = ("(jobs.concurrency_key IS NULL OR (SELECT count(*) FROM jobs AS r WHERE r.state = 'running' "
                "AND r.concurrency_key = jobs.concurrency_key) < COALESCE(jobs.max_running, 1))")


#: `QueueMixin.finish_attempt`'s read of the job, with what the end needs to know in the same
#: statement: the home's webhook URL and whether any job waits for this one
_FINISH_READ = ("SELECT seq, id, state, worker_id, attempts, cancel_requested, options, failures, retries, infra_failures, "
                f"{NOTIFY_URL} AS _notify_url, EXISTS (SELECT 1 FROM deps WHERE upstream_id = jobs.id) AS _downstream "
                "FROM jobs WHERE id = ?")
#: `QueueMixin.claim`'s read of the job it claimed, with the home's webhook URL
_CLAIMED_READ = f"SELECT *, {NOTIFY_URL} AS _notify_url FROM jobs WHERE id = ?"
_HOST = host()
_RUNNING = State.RUNNING.value
#: `QueueMixin._claim`'s SELECT, per placement term (`QueueMixin._fit`)
_CLAIM_SQL: dict[str, str] = {}
#: what a claim sets on the job besides its state
_CLAIM_SETS = ("worker_id = ?, lease_until = ?, attempts = ?, started_at = COALESCE(started_at, ?), reason = NULL, "
               "progress_done = 0, progress_total = 0, began_at = NULL, slow_at = NULL, slow_after = NULL, "
               "report_path = NULL")
_ATTEMPT_INSERT = ("INSERT INTO attempt_log (job, number, worker_id, host, pid, started_at, kernel, code_hash) "
                   "VALUES (?,?,?,?,?,?,?,?)")


class QueueMixin:
    """What workers do to jobs: claim one, keep its lease, report progress, end its attempt."""

    def claim(self, worker_id: str, lease: float = config.LEASE_SECONDS, *, pid: int | None = None,
              now: float | None = None, offers: Iterable[dict[str, float]] | None = ()) -> tuple[JobRecord, int] | None:
        """Claim the next runnable job (highest priority, then oldest) for ``worker_id``.

        ``offers``: the resources of each place the worker's executor runs attempts (a Dask worker's
        declared resources; none for the local executor); a job that needs resources none of them
        has (`policy.fits`) is passed over and stays queued.  None: any job.

        Returns ``(record, attempt_number)`` or None.  The read and the guarded update happen
        under one write lock, so no two workers (threads or processes) can claim the same job.
        """
        now = time.time() if now is None else now
        fit = self._fit(offers)
        with self._tx() as conn:
            return self._claim(conn, worker_id, lease, now, pid, fit)

    def _fit(self, offers: Iterable[dict[str, float]] | None) -> str:
        """The claim's placement term for these offers (see `claim`): "" for None (any job)."""
        if offers is None:
            return ""
        self._offers = [dict(o) for o in offers]
        if not getattr(self, "_fits_registered", False):
            self.conn.create_function("nbjobs_fits", 1, lambda text: policy.fits(json.loads(text), self._offers),
                                      deterministic=False)
            self._fits_registered = True
        return "AND (resources IS NULL OR nbjobs_fits(resources)) "

    def _claim(self, conn: sqlite3.Connection, worker_id: str, lease: float, now: float, pid: int | None,
               fit: str) -> tuple[JobRecord, int] | None:
        """`claim` inside ``conn``'s write transaction (``fit``: `_fit`'s term)."""
        sql = _CLAIM_SQL.get(fit)
        if sql is None:
            sql = _CLAIM_SQL[fit] = (
                "SELECT id, state, attempts, seq FROM jobs INDEXED BY jobs_ready WHERE state IN ('queued', 'retrying') "
                f"AND run_at <= ? AND {_UNDER_LIMIT} {fit}ORDER BY priority DESC, submitted_at, id LIMIT 1")
        row = conn.execute(sql, (now,)).fetchone()
        if row is None:
            return None
        number = row[2] + 1
        self._move(conn, row[0], row[1], _RUNNING, f"attempt {number}", f"worker:{worker_id}", now,
                   sets=_CLAIM_SETS, params=(worker_id, now + lease, number, now), seq=row[3])
        # the row as claimed (read back: cheaper than UPDATE ... RETURNING, which SQLite buffers)
        job = conn.execute(_CLAIMED_READ, (row[0],)).fetchone()
        rec = self._record(job)
        conn.execute(_ATTEMPT_INSERT, (row[3], number, worker_id, _HOST, pid or os.getpid(), now, rec.kernel,
                                       rec.code_hash))
        self._enqueue_notification(conn, rec.id, _RUNNING, now, job["options"], job["_notify_url"])
        return rec, number

    def running_per_key(self, keys: Iterable[str]) -> dict[str, int]:
        """How many running jobs hold each of these concurrency keys (the partial index ``jobs_key_running``)."""
        keys = list(dict.fromkeys(k for k in keys if k))
        if not keys:
            return {}
        rows = self._q(f"SELECT concurrency_key AS k, count(*) AS n FROM jobs WHERE state = 'running' AND "
                       f"concurrency_key IN ({', '.join('?' * len(keys))}) GROUP BY concurrency_key", keys)
        out = dict.fromkeys(keys, 0)
        out.update({r["k"]: r["n"] for r in rows})
        return out

    def set_placing(self, job_id: str, worker_id: str, why: str | None) -> None:
        """Say why a claimed job has not started yet (Dask holds it until a worker with its resources
        is free); None once it started.  Shown on the job's receipt."""
        with self._tx() as conn:
            conn.execute("UPDATE jobs SET reason = ?, updated_at = ? WHERE id = ? AND worker_id = ? AND state = 'running'",
                         (why, time.time(), job_id, worker_id))

    def heartbeat(self, worker_id: str, lease: float = config.LEASE_SECONDS) -> int:
        """Extend the leases of every job ``worker_id`` runs and mark the worker alive."""
        now = time.time()
        with self._tx() as conn:
            n = conn.execute("UPDATE jobs SET lease_until = ? WHERE worker_id = ? AND state = 'running'",
                             (now + lease, worker_id)).rowcount
            conn.execute("UPDATE workers SET heartbeat_at = ? WHERE id = ?", (now, worker_id))
        return n

    def held(self, worker_id: str) -> set[str]:
        """IDs of the jobs ``worker_id`` still holds (running under its lease).  A job it runs that
        is not among them was reclaimed by another worker after its lease expired (the worker was
        stopped or stuck): its attempt is fenced and must end at once."""
        return {r["id"] for r in self._q("SELECT id FROM jobs WHERE worker_id = ? AND state = 'running'",
                                         (worker_id,))}

    def cancel_requests(self, worker_id: str) -> list[str]:
        """IDs of this worker's running jobs that someone asked to cancel (a cheap read)."""
        rows = self._q("SELECT id FROM jobs WHERE worker_id = ? AND state = 'running' AND cancel_requested = 1",
                       (worker_id,))
        return [r["id"] for r in rows]

    def set_progress(self, job_id: str, worker_id: str, done: int, total: int) -> None:
        """Record how many cells of the attempt ran (no transaction: one small guarded write)."""
        try:
            self.conn.execute(
                "UPDATE jobs SET progress_done = ?, progress_total = ?, updated_at = ? "
                "WHERE id = ? AND worker_id = ? AND state = 'running'", (done, total, time.time(), job_id, worker_id))
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def set_began(self, job_id: str, number: int, worker_id: str, at: float) -> None:
        """Record that attempt ``number``'s start phase is over: its first cell of user code began
        at ``at`` (the worker's clock, like the claim's: a Dask worker's may differ).  Runtimes count from here; before, the receipt says the
        attempt is starting."""
        with self._tx() as conn:
            conn.execute(f"UPDATE attempt_log SET began_at = ? WHERE job = {SEQ_OF} AND number = ?", (at, job_id, number))
            conn.execute("UPDATE jobs SET began_at = ?, updated_at = ? WHERE id = ? AND worker_id = ? AND "
                         "state = 'running' AND attempts = ?", (at, time.time(), job_id, worker_id, number))

    def set_attempt_info(self, job_id: str, number: int, **info: Any) -> None:
        """Record what the runner reports when an attempt starts (paths, kernel, versions, hash; the
        kernel's pid and its path, forked, warm or cold; the host, for a Dask worker's)."""
        allowed = {"output_path", "log_path", "code_hash", "kernel", "versions", "host", "kernel_pid", "kernel_path"}
        info = {k: (json.dumps(v) if k == "versions" else v) for k, v in info.items() if k in allowed}
        if not info:
            return
        sets = ", ".join(f"{k} = ?" for k in info)
        with self._tx() as conn:
            conn.execute(f"UPDATE attempt_log SET {sets} WHERE job = {SEQ_OF} AND number = ?",
                         (*info.values(), job_id, number))
            if "output_path" in info:
                conn.execute("UPDATE jobs SET output_path = ?, updated_at = ? WHERE id = ?",
                             (info["output_path"], time.time(), job_id))

    def set_report(self, job_id: str, number: int, path: str | None) -> None:
        """Record the HTML report rendered from attempt ``number``'s output notebook (on the job too,
        when that attempt is its latest: the panel's row then links to it)."""
        now = time.time()
        with self._tx() as conn:
            conn.execute(f"UPDATE attempt_log SET report_path = ? WHERE job = {SEQ_OF} AND number = ?",
                         (path, job_id, number))
            conn.execute("UPDATE jobs SET report_path = ?, updated_at = ? WHERE id = ? AND attempts = ?",
                         (path, now, job_id, number))

    def finish_attempt(self, job_id: str, number: int, worker_id: str, outcome: str, *,
                       error: dict[str, Any] | None = None, outputs: Iterable[dict[str, Any]] = (),
                       output_path: str | None = None, actor: str | None = None,
                       log_tail: str | None = None) -> str | None:
        """Record the end of attempt ``number`` and move the job on by the retry policy.

        ``outcome`` is one of `policy.OUTCOME_STATE`; ``log_tail`` is the end of the attempt's log
        (kept with the attempt and the job, for `search`).  Returns the job's new state, or None when
        the worker no longer holds the job (its lease expired and another worker took over):
        such a late result is ignored, so a job is never recorded twice.
        """
        now = time.time()
        with self._tx() as conn:
            return self._finish(conn, job_id, number, worker_id, outcome, now, error, outputs, output_path, actor,
                                log_tail)

    def finish_and_claim(self, job_id: str, number: int, worker_id: str, outcome: str, *,
                         error: dict[str, Any] | None = None, outputs: Iterable[dict[str, Any]] = (),
                         output_path: str | None = None, log_tail: str | None = None,
                         lease: float = config.LEASE_SECONDS, pid: int | None = None,
                         offers: Iterable[dict[str, float]] | None = (),
                         ) -> tuple[str | None, tuple[JobRecord, int] | None]:
        """`finish_attempt` then `claim`, in one transaction: what a worker does when an attempt ends
        and its slot is free (one commit a job fewer).  Every row either writes is written the same.
        Returns ``(the ended job's new state or None, (record, attempt number) of the claimed job or None)``.

        >>> import tempfile, pathlib; from nbjobs.store import Store
        >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
        >>> a, _ = s.insert_job({"name": "a", "kind": "cell", "source": "1"}, actor="doctest")
        >>> b, _ = s.insert_job({"name": "b", "kind": "cell", "source": "2"}, actor="doctest")
        >>> rec, n = s.claim("w1")
        >>> state, (nxt, m) = s.finish_and_claim(rec.id, n, "w1", "succeeded")
        >>> (rec.name, state, nxt.name, m)
        ('a', 'succeeded', 'b', 1)
        """
        now = time.time()
        fit = self._fit(offers)
        with self._tx() as conn:
            state = self._finish(conn, job_id, number, worker_id, outcome, now, error, outputs, output_path, None,
                                 log_tail)
            return state, self._claim(conn, worker_id, lease, now, pid, fit)

    def _finish(self, conn: sqlite3.Connection, job_id: str, number: int, worker_id: str, outcome: str, now: float,
                error: dict[str, Any] | None, outputs: Iterable[dict[str, Any]], output_path: str | None,
                actor: str | None, log_tail: str | None) -> str | None:
        """`finish_attempt` inside ``conn``'s write transaction."""
        job = conn.execute(_FINISH_READ, (job_id,)).fetchone()
        if job is None or job["state"] != "running" or job["worker_id"] != worker_id \
                or job["attempts"] != number:
            conn.execute(f"UPDATE attempt_log SET outcome = 'stale', finished_at = ? "
                         f"WHERE job = {SEQ_OF} AND number = ? AND outcome = 'running'", (now, job_id, number))
            return None
        for out in outputs:
            conn.execute(
                "INSERT OR REPLACE INTO outputs (job_id, name, kind, type_name, value, path, size, attempt, "
                "recorded_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (job_id, out["name"], out["kind"], out.get("type_name"), out.get("value"), out.get("path"),
                 out.get("size"), number, now))
        return self._end_attempt(conn, job, outcome, error, output_path, actor or f"worker:{worker_id}", now,
                                 log_tail=log_tail)

    def _end_attempt(self, conn: sqlite3.Connection, job: sqlite3.Row, outcome: str,
                     error: dict[str, Any] | None, output_path: str | None, actor: str, now: float, *,
                     log_tail: str | None = None) -> str:
        """End the running attempt of ``job`` (its row, read in ``conn``'s transaction) with ``outcome``
        and move the job where `policy.decide` says.  Returns the new state."""
        if job["cancel_requested"] and outcome != "succeeded":
            outcome = "cancelled"
        options = json.loads(job["options"]) if job["options"] and job["options"] != "{}" else {}
        infra_retries = options.get("infra_retries")
        if infra_retries is None and outcome in policy.INFRA:
            infra_retries = self._infra_setting(conn)
        decision = policy.decide(outcome, job["failures"], job["retries"], options.get("retry_on"),
                                 infra_failures=job["infra_failures"],
                                 infra_retries=policy.INFRA_RETRIES if infra_retries is None else infra_retries,
                                 **options.get("backoff", {}))
        err = error or {}
        conn.execute(
            "UPDATE attempt_log SET finished_at = ?, outcome = ?, error_type = ?, error_message = ?, error_cell = ?, "
            "error_traceback = ?, output_path = COALESCE(?, output_path), log_tail = ? "
            "WHERE job = ? AND number = ?",
            (now, outcome, err.get("type"), err.get("message"), err.get("cell"), err.get("traceback"),
             output_path, log_tail, job["seq"], job["attempts"]))
        terminal = decision.state in TERMINAL_VALUES
        ok = outcome == "succeeded"
        why = f"attempt {job['attempts']}: {outcome}"
        if outcome in policy.INFRA:
            why += f" (infrastructure failure {decision.infra_failures}, not charged to the job)" if decision.infra \
                else f" (infrastructure budget of {decision.infra_failures - 1} spent)"
        if decision.state == State.RETRYING.value:
            why += f"; retry in {decision.delay:.1f} s"
        self._move(conn, job["id"], job["state"], decision.state, why, actor, now,
                   sets="reason = ?, failures = ?, infra_failures = ?, worker_id = NULL, lease_until = NULL, "
                   "run_at = ?, finished_at = ?, output_path = COALESCE(?, output_path), error_type = ?, "
                   "error_message = ?, error_cell = ?, error_traceback = ?, log_tail = COALESCE(?, log_tail)",
                   params=(None if ok else decision.reason, decision.failures, decision.infra_failures,
                           now + decision.delay, now if terminal else None, output_path,
                           None if ok else err.get("type"), None if ok else err.get("message"),
                           None if ok else err.get("cell"), None if ok else err.get("traceback"), log_tail),
                   seq=job["seq"])
        self._changed(conn, job["id"], decision.state, actor, now, job["options"],
                      *((job["_notify_url"], job["_downstream"]) if "_downstream" in job.keys() else ()))
        return decision.state

    def _infra_setting(self, conn: sqlite3.Connection) -> int | None:
        """The home's ``infra_retries`` setting (None: the default), read inside ``conn``'s transaction."""
        row = conn.execute("SELECT value FROM settings WHERE name = 'infra_retries'").fetchone()
        try:
            return policy.check_infra_retries(row["value"]) if row else None
        except BadInput:  # set by hand to something odd: the default
            return None

    def release(self, job_id: str, number: int, worker_id: str, why: str = "worker stopping") -> bool:
        """Give a running job back to the queue (a stopping worker); the attempt is recorded as
        ``released`` and does not count against the job's retries."""
        now = time.time()
        with self._tx() as conn:
            if not self._move(conn, job_id, State.RUNNING, State.QUEUED, why, f"worker:{worker_id}", now,
                              sets="worker_id = NULL, lease_until = NULL, run_at = ?, reason = 'released'",
                              params=(now,), where="worker_id = ? AND attempts = ?", where_params=(worker_id, number)):
                return False
            conn.execute(f"UPDATE attempt_log SET finished_at = ?, outcome = 'released' WHERE job = {SEQ_OF} "
                         "AND number = ?", (now, job_id, number))
        return True

    def reclaim_expired(self, actor: str, now: float | None = None) -> list[tuple[str, str]]:
        """Jobs whose worker stopped heartbeating: record the attempt as ``worker_lost`` and
        move each job on by its retry policy.  Returns ``[(job_id, new_state)]``."""
        now = time.time() if now is None else now
        rows = self._q("SELECT id FROM jobs WHERE state = 'running' AND lease_until < ?", (now,))
        done = []
        for r in rows:
            with self._tx() as conn:
                job = conn.execute("SELECT * FROM jobs WHERE id = ? AND state = 'running' AND lease_until < ?",
                                   (r["id"], now)).fetchone()
                if job is None:
                    continue
                err = {"type": "WorkerLost",
                       "message": f"worker {job['worker_id']} stopped heartbeating; its lease expired"}
                done.append((job["id"], self._end_attempt(conn, job, "worker_lost", err, None, actor, now)))
        return done
