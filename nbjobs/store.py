"""The SQLite store: schema, migrations, pragmas and every SQL statement of nbjobs.

One file, ``$NBJOBS_HOME/nbjobs.db``, is the single source of truth.  It runs in WAL mode with a
busy timeout and foreign keys on; every write is a short ``BEGIN IMMEDIATE`` transaction, so
readers never block and writers queue instead of failing.  The schema version lives in
``PRAGMA user_version`` and is moved forward by `MIGRATIONS`, so a newer nbjobs opens an older
database without losing rows.

>>> import tempfile, pathlib
>>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
>>> rec, created = s.insert_job({"name": "demo", "kind": "cell", "source": "1+1"}, actor="doctest")
>>> created, s.get(rec.id).state.value
(True, 'queued')
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from . import config, policy
from .errors import AmbiguousJob, ExpiredJob, IllegalTransition, StoreError, UnknownJob
from .job import (ACTIVE, CLAIMABLE, RETRYABLE, TERMINAL, JobRecord, State, check_transition,
                  new_id, normalize_prefix, short_id, sources_of)


def _import_sqlite_utils():
    """Import sqlite-utils without letting it import pandas/numpy (0.3 s we do not need).

    sqlite-utils imports pandas and numpy only to map their scalar types when inserting; the
    store never inserts them, and ``import nbjobs`` / every CLI call must stay light.
    """
    with _import_lock:
        module = sys.modules.get("sqlite_utils")
        if module is not None and hasattr(module, "Database"):
            return module
        blocked = [m for m in ("pandas", "numpy") if m not in sys.modules]
        for m in blocked:
            sys.modules[m] = None  # type: ignore[assignment]  # makes `import m` raise ImportError
        try:
            import sqlite_utils
        finally:
            for m in blocked:
                if sys.modules.get(m) is None:
                    del sys.modules[m]
        return sqlite_utils


_import_lock = threading.Lock()


# --- schema -------------------------------------------------------------------------------------
_STATES = ", ".join(f"'{s.value}'" for s in State)

SCHEMA_V1 = f"""
CREATE TABLE jobs (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('notebook', 'cell')),
    state            TEXT NOT NULL CHECK (state IN ({_STATES})),
    reason           TEXT,
    priority         INTEGER NOT NULL DEFAULT 0,
    tags             TEXT NOT NULL DEFAULT '[]',
    notebook         TEXT,
    source           TEXT,
    parameters       TEXT NOT NULL DEFAULT '{{}}',
    kernel           TEXT,
    cwd              TEXT,
    retries          INTEGER NOT NULL DEFAULT 0,
    timeout          REAL,
    idem_key         TEXT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    failures         INTEGER NOT NULL DEFAULT 0,
    submitted_at     REAL NOT NULL,
    run_at           REAL NOT NULL,
    started_at       REAL,
    finished_at      REAL,
    updated_at       REAL NOT NULL,
    worker_id        TEXT,
    lease_until      REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    progress_done    INTEGER NOT NULL DEFAULT 0,
    progress_total   INTEGER NOT NULL DEFAULT 0,
    error_type       TEXT,
    error_message    TEXT,
    error_cell       INTEGER,
    error_traceback  TEXT,
    code_hash        TEXT,
    output_path      TEXT,
    submitted_by     TEXT,
    options          TEXT NOT NULL DEFAULT '{{}}'
);
CREATE UNIQUE INDEX jobs_idem_key ON jobs (idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX jobs_ready ON jobs (priority DESC, submitted_at) WHERE state IN ('queued', 'retrying');
CREATE INDEX jobs_running ON jobs (worker_id) WHERE state = 'running';
CREATE INDEX jobs_submitted ON jobs (submitted_at);
CREATE INDEX jobs_state ON jobs (state);
CREATE INDEX jobs_name ON jobs (name, submitted_at);

CREATE TABLE attempts (
    job_id          TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number          INTEGER NOT NULL,
    worker_id       TEXT,
    host            TEXT,
    pid             INTEGER,
    started_at      REAL NOT NULL,
    finished_at     REAL,
    outcome         TEXT NOT NULL DEFAULT 'running',
    error_type      TEXT,
    error_message   TEXT,
    error_cell      INTEGER,
    error_traceback TEXT,
    output_path     TEXT,
    log_path        TEXT,
    code_hash       TEXT,
    kernel          TEXT,
    versions        TEXT,
    PRIMARY KEY (job_id, number)
);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY,
    job_id     TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at         REAL NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    reason     TEXT,
    actor      TEXT
);
CREATE INDEX events_job ON events (job_id, id);

CREATE TABLE outputs (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL,
    type_name   TEXT,
    value       TEXT,
    path        TEXT,
    size        INTEGER,
    attempt     INTEGER,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (job_id, name)
);

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    host         TEXT,
    pid          INTEGER,
    executor     TEXT,
    concurrency  INTEGER,
    autostarted  INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL,
    started_at   REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    stopped_at   REAL
);
"""

# v2: tombstones of pruned jobs, so an expired ID answers "expired on DATE", not "unknown".
SCHEMA_V2 = """
CREATE TABLE expired (
    id           TEXT PRIMARY KEY,
    name         TEXT,
    state        TEXT,
    submitted_at REAL,
    expired_at   REAL NOT NULL
);
"""

# v3: dead letters can be acknowledged; home-wide settings (e.g. the default retention).
SCHEMA_V3 = """
ALTER TABLE jobs ADD COLUMN acked_at REAL;
CREATE INDEX jobs_dead ON jobs (finished_at) WHERE state IN ('failed', 'timed_out') AND acked_at IS NULL;
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

# v4: indexes for the live panel: "which rows changed since T" (a covering index, so the change
# check never touches the table) and "newest jobs in state S" (no sort of every row in that state).
SCHEMA_V4_PANEL = """
CREATE INDEX jobs_updated ON jobs (updated_at, id);
CREATE INDEX jobs_state_submitted ON jobs (state, submitted_at);
"""

#: MIGRATIONS[n] moves a database from user_version n to n + 1.  Append only; never edit.
MIGRATIONS: list[str] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4_PANEL]
SCHEMA_VERSION = len(MIGRATIONS)

_JSON_FIELDS = ("tags", "parameters", "options")
_JOB_FIELDS = tuple(JobRecord.__dataclass_fields__)
_FAILURES = frozenset(policy.RETRY_ON)


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


def _host() -> str:
    return socket.gethostname()


def actor_name(role: str = "api") -> str:
    """Who did it, for the events table: ``role:user@host:pid``."""
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        user = str(os.getuid())
    return f"{role}:{user}@{_host()}:{os.getpid()}"


class Store:
    """All reads and writes of one nbjobs database.  One instance per thread.

    >>> Store.__doc__ is not None
    True
    """

    def __init__(self, path: Path | str, *, migrate: bool = True):
        self.path = Path(path)
        self.conn = self._connect()
        self.db = _import_sqlite_utils().Database(self.conn)
        if migrate:
            self.migrate()

    # --- connection ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        path = self.path
        try:
            config.make_private_dir(path.parent)
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        except OSError as exc:
            raise StoreError(
                f"cannot create the nbjobs database in {path.parent} ({exc.strerror}); "
                "set NBJOBS_HOME to a folder you can write"
            ) from None
        if not os.access(path, os.R_OK | os.W_OK):
            raise StoreError(f"cannot read and write {path}; fix its permissions or set NBJOBS_HOME elsewhere")
        try:
            conn = sqlite3.connect(path, timeout=config.BUSY_TIMEOUT, isolation_level=None,
                                   check_same_thread=False)
            conn.row_factory = sqlite3.Row
            mode = self._set_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(config.BUSY_TIMEOUT * 1000)}")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None
        if mode.lower() != "wal":
            raise StoreError(f"{path} cannot use WAL mode (got {mode}); put NBJOBS_HOME on a local disk")
        return conn

    @staticmethod
    def _set_wal(conn: sqlite3.Connection) -> str:
        """``PRAGMA journal_mode=WAL``, retried while another process converts a new database:
        SQLite answers the losers of that race SQLITE_BUSY at once, without the busy timeout."""
        deadline = time.monotonic() + config.BUSY_TIMEOUT
        while True:
            try:
                return conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def _error(self, exc: sqlite3.Error) -> StoreError:
        msg = str(exc)
        if "not a database" in msg or "malformed" in msg or "corrupt" in msg:
            return StoreError(f"{self.path} is not a readable nbjobs database ({msg}); move it aside "
                              "(nbjobs then starts a new one) or restore a backup")
        if "locked" in msg or "busy" in msg:
            return StoreError(f"{self.path} stayed locked by another process for {config.BUSY_TIMEOUT:.0f} s "
                              f"({msg}); retry, or stop the process holding it")
        if "readonly" in msg or "unable to open" in msg or "disk I/O" in msg:
            return StoreError(f"cannot write {self.path} ({msg}); check its permissions and free disk space")
        return StoreError(f"{self.path}: {msg}")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction.  BEGIN IMMEDIATE takes the write lock up front, so the
        reads inside it see exactly the rows it then updates: this is what makes a claim
        atomic across processes."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            raise self._error(exc) from None

    def _q(self, sql: str, params: Iterable[Any] | dict = ()) -> list[sqlite3.Row]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    # --- schema -------------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return self._q("PRAGMA user_version")[0][0]

    def migrate(self) -> int:
        """Bring the schema to `SCHEMA_VERSION`, one forward step at a time.  Returns the version."""
        current = self.version
        if current > SCHEMA_VERSION:
            raise StoreError(f"{self.path} was written by a newer nbjobs (schema {current}, this one knows "
                             f"{SCHEMA_VERSION}); upgrade nbjobs: pip install -U nbjobs")
        if current == SCHEMA_VERSION:
            return current
        with self._tx() as conn:
            current = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
            for step in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[step].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={step + 1}")
        return SCHEMA_VERSION

    def data_version(self) -> int:
        """Changes whenever another connection commits: a cheap 'anything new?' check."""
        return self._q("PRAGMA data_version")[0][0]

    # --- rows -> records ----------------------------------------------------------------------
    @staticmethod
    def _record(row: sqlite3.Row) -> JobRecord:
        d = {k: row[k] for k in row.keys() if k in _JOB_FIELDS}
        for k in _JSON_FIELDS:
            d[k] = json.loads(d[k]) if d.get(k) else ({} if k != "tags" else [])
        d["state"] = State(d["state"])
        return JobRecord(**d)

    def _event(self, conn: sqlite3.Connection, job_id: str, old: str | None, new: str,
               reason: str | None, actor: str | None, at: float) -> None:
        conn.execute("INSERT INTO events (job_id, at, from_state, to_state, reason, actor) VALUES (?,?,?,?,?,?)",
                     (job_id, at, old, new, reason, actor))

    # --- submit ---------------------------------------------------------------------------------
    def insert_job(self, spec: dict[str, Any], actor: str) -> tuple[JobRecord, bool]:
        """Record a new job as ``queued`` and return ``(record, created)``.

        With an idempotency key (``spec["idem_key"]``) that is already used, nothing is written
        and the existing job is returned with ``created=False``; the UNIQUE index decides, so
        two racing processes cannot both create one.
        """
        now = time.time()
        row = {
            "id": spec.get("id") or new_id(),
            "name": spec.get("name") or "job",
            "kind": spec["kind"],
            "state": State.QUEUED.value,
            "priority": int(spec.get("priority") or 0),
            "tags": json.dumps(list(spec.get("tags") or [])),
            "notebook": spec.get("notebook"),
            "source": spec.get("source"),
            "parameters": json.dumps(spec.get("parameters") or {}),
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
            "options": json.dumps(spec.get("options") or {}),
        }
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        with self._tx() as conn:
            cur = conn.execute(
                f"INSERT INTO jobs ({cols}) VALUES ({marks}) ON CONFLICT (idem_key) WHERE idem_key IS NOT NULL "
                "DO NOTHING", tuple(row.values()))
            if cur.rowcount == 0:
                existing = conn.execute("SELECT * FROM jobs WHERE idem_key = ?", (row["idem_key"],)).fetchone()
                return self._record(existing), False
            self._event(conn, row["id"], None, State.QUEUED.value, "submitted", actor, now)
        return self.get(row["id"]), True

    # --- reads ----------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord:
        rows = self._q("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise self._unknown(job_id)
        return self._record(rows[0])

    def resolve(self, text: str) -> str:
        """The full ID for an ID or unique prefix, as in git.  Raises a clear error otherwise."""
        prefix = normalize_prefix(text)
        upper = prefix + "g"  # every hex digit sorts below 'g'
        rows = self._q("SELECT id, name FROM jobs WHERE id >= ? AND id < ? ORDER BY id LIMIT 6", (prefix, upper))
        if len(rows) == 1:
            return rows[0]["id"]
        if len(rows) > 1:
            shown = ", ".join(f"{short_id(r['id'])} ({r['name']})" for r in rows[:5])
            raise AmbiguousJob(f"job ID prefix '{prefix}' matches several jobs: {shown}; give more characters")
        raise self._unknown(prefix)

    def _unknown(self, prefix: str) -> Exception:
        rows = self._q("SELECT * FROM expired WHERE id >= ? AND id < ? LIMIT 1", (prefix, prefix + "g"))
        if rows:
            r = rows[0]
            day = time.strftime("%Y-%m-%d", time.gmtime(r["expired_at"]))
            return ExpiredJob(f"job {short_id(r['id'])} ({r['name']}, {r['state']}) expired on {day}: "
                              "its record was removed by retention")
        return UnknownJob(f"no job matches '{prefix}' in {self.path.parent}; list jobs with `nbjobs ls`")

    def list_jobs(self, state: str | Iterable[str] | None = None, name: str | None = None,
                  tag: str | None = None, limit: int | None = 20) -> list[JobRecord]:
        """Newest first.  ``state`` may be one state or several; ``name`` matches exactly or as a
        glob (``train*``)."""
        where, params = _job_filters("jobs", state, name, tag)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY submitted_at DESC, id"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._record(r) for r in self._q(sql, params)]

    def changed_since(self, since: float) -> list[tuple[str, float]]:
        """``(id, updated_at)`` of the jobs updated at or after ``since``, oldest change first.
        Reads only the ``jobs_updated`` index: this is the panel's cheap "what changed?" step.

        >>> import tempfile, pathlib
        >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
        >>> rec, _ = s.insert_job({"name": "a", "kind": "cell", "source": "1"}, actor="doctest")
        >>> [i for i, _ in s.changed_since(rec.updated_at)] == [rec.id]
        True
        """
        return [(r[0], r[1]) for r in self._q(
            "SELECT id, updated_at FROM jobs WHERE updated_at >= ? ORDER BY updated_at, id", (since,))]

    def get_many(self, ids: Iterable[str]) -> list[JobRecord]:
        """The records of these job IDs (full IDs; unknown ones are left out), in no set order."""
        ids = list(ids)
        out: list[JobRecord] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            out += [self._record(r) for r in
                    self._q(f"SELECT * FROM jobs WHERE id IN ({', '.join('?' * len(chunk))})", chunk)]
        return out

    def insert_rows(self, rows: Iterable[dict[str, Any]]) -> int:
        """Bulk-load job rows as they are (any ``jobs`` columns; ``tags``, ``parameters`` and
        ``options`` as Python values) in one transaction, without events: for benchmarks, tests and
        imports, not for submitting (use `insert_job`).  Returns the number of rows written.

        >>> import tempfile, pathlib
        >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
        >>> s.insert_rows([{"name": "old", "kind": "cell", "state": "succeeded", "submitted_at": 1.0}])
        1
        """
        now = time.time()
        n = 0
        with self._tx() as conn:
            for spec in rows:
                row = {"id": spec.get("id") or new_id(), "state": State.QUEUED.value, "name": "job",
                       "kind": "cell", **spec}
                row.setdefault("submitted_at", now)
                row.setdefault("run_at", row["submitted_at"])
                row.setdefault("updated_at", row.get("finished_at") or row.get("started_at") or row["submitted_at"])
                for k in _JSON_FIELDS:
                    if k in row and not isinstance(row[k], str):
                        row[k] = json.dumps(row[k])
                conn.execute(f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                             tuple(row.values()))
                n += 1
        return n

    def attempts(self, job_id: str) -> list[dict[str, Any]]:
        rows = self._q("SELECT * FROM attempts WHERE job_id = ? ORDER BY number", (job_id,))
        out = []
        for r in rows:
            d = dict(r)
            d["versions"] = json.loads(d["versions"]) if d["versions"] else {}
            out.append(d)
        return out

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self._q("SELECT * FROM events WHERE job_id = ? ORDER BY id", (job_id,))]

    def outputs(self, job_id: str) -> list[dict[str, Any]]:
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
        workers = self._q("SELECT executor FROM workers WHERE state = 'running' AND heartbeat_at > ?",
                          (time.time() - lease,))
        return {
            "counts": counts,
            "queue_depth": counts["queued"] + counts["retrying"] + counts["waiting"],
            "running": counts["running"],
            "workers": len(workers),
            # what the live workers run on: 'local', or 'dask@<dashboard link>' (see executors.dask)
            "executors": sorted({w["executor"] or "local" for w in workers}),
            "dead_letters": self.dead_letter_count(),
        }

    # --- dead letters ---------------------------------------------------------------------------
    _DEAD = "state IN ('failed', 'timed_out') AND acked_at IS NULL"

    def dead_letter_count(self) -> int:
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
        in ``expired`` so the ID answers "expired on DATE".  Active jobs are never deleted."""
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
        return done

    # --- settings -------------------------------------------------------------------------------
    def get_setting(self, name: str, default: str | None = None) -> str | None:
        rows = self._q("SELECT value FROM settings WHERE name = ?", (name,))
        return rows[0]["value"] if rows else default

    def set_setting(self, name: str, value: str | None) -> None:
        with self._tx() as conn:
            if value is None:
                conn.execute("DELETE FROM settings WHERE name = ?", (name,))
            else:
                conn.execute("INSERT OR REPLACE INTO settings (name, value, updated_at) VALUES (?, ?, ?)",
                             (name, value, time.time()))

    # --- the queue: claim, heartbeat, finish ----------------------------------------------------
    def claim(self, worker_id: str, lease: float = config.LEASE_SECONDS, *, pid: int | None = None,
              now: float | None = None) -> tuple[JobRecord, int] | None:
        """Claim the next runnable job (highest priority, then oldest) for ``worker_id``.

        Returns ``(record, attempt_number)`` or None.  The read and the guarded update happen
        under one write lock, so no two workers (threads or processes) can claim the same job.
        """
        now = time.time() if now is None else now
        with self._tx() as conn:
            row = conn.execute(
                "SELECT id, state FROM jobs WHERE state IN ('queued', 'retrying') AND run_at <= ? "
                "ORDER BY priority DESC, submitted_at, id LIMIT 1", (now,)).fetchone()
            if row is None:
                return None
            job = conn.execute(
                "UPDATE jobs SET state = 'running', worker_id = ?, lease_until = ?, attempts = attempts + 1, "
                "started_at = COALESCE(started_at, ?), updated_at = ?, reason = NULL, progress_done = 0 "
                "WHERE id = ? AND state IN ('queued', 'retrying') RETURNING *",
                (worker_id, now + lease, now, now, row["id"])).fetchone()
            number = job["attempts"]
            conn.execute("INSERT INTO attempts (job_id, number, worker_id, host, pid, started_at, kernel, code_hash) "
                         "VALUES (?,?,?,?,?,?,?,?)",
                         (job["id"], number, worker_id, _host(), pid or os.getpid(), now, job["kernel"],
                          job["code_hash"]))
            self._event(conn, job["id"], row["state"], State.RUNNING.value, f"attempt {number}",
                        f"worker:{worker_id}", now)
        return self._record(job), number

    def heartbeat(self, worker_id: str, lease: float = config.LEASE_SECONDS) -> int:
        """Extend the leases of every job ``worker_id`` runs and mark the worker alive."""
        now = time.time()
        with self._tx() as conn:
            n = conn.execute("UPDATE jobs SET lease_until = ? WHERE worker_id = ? AND state = 'running'",
                             (now + lease, worker_id)).rowcount
            conn.execute("UPDATE workers SET heartbeat_at = ? WHERE id = ?", (now, worker_id))
        return n

    def cancel_requests(self, worker_id: str) -> list[str]:
        """IDs of this worker's running jobs that someone asked to cancel (a cheap read)."""
        rows = self._q("SELECT id FROM jobs WHERE worker_id = ? AND state = 'running' AND cancel_requested = 1",
                       (worker_id,))
        return [r["id"] for r in rows]

    def set_progress(self, job_id: str, worker_id: str, done: int, total: int) -> None:
        try:
            self.conn.execute(
                "UPDATE jobs SET progress_done = ?, progress_total = ?, updated_at = ? "
                "WHERE id = ? AND worker_id = ? AND state = 'running'", (done, total, time.time(), job_id, worker_id))
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def set_attempt_info(self, job_id: str, number: int, **info: Any) -> None:
        """Record what the runner reports when an attempt starts (paths, kernel, versions, hash)."""
        allowed = {"output_path", "log_path", "code_hash", "kernel", "versions", "host"}  # host: a Dask worker's
        info = {k: (json.dumps(v) if k == "versions" else v) for k, v in info.items() if k in allowed}
        if not info:
            return
        sets = ", ".join(f"{k} = ?" for k in info)
        with self._tx() as conn:
            conn.execute(f"UPDATE attempts SET {sets} WHERE job_id = ? AND number = ?",
                         (*info.values(), job_id, number))
            if "output_path" in info:
                conn.execute("UPDATE jobs SET output_path = ?, updated_at = ? WHERE id = ?",
                             (info["output_path"], time.time(), job_id))

    def finish_attempt(self, job_id: str, number: int, worker_id: str, outcome: str, *,
                       error: dict[str, Any] | None = None, outputs: Iterable[dict[str, Any]] = (),
                       output_path: str | None = None, actor: str | None = None) -> str | None:
        """Record the end of attempt ``number`` and move the job on by the retry policy.

        ``outcome`` is one of `policy.OUTCOME_STATE`.  Returns the job's new state, or None when
        the worker no longer holds the job (its lease expired and another worker took over):
        such a late result is ignored, so a job is never recorded twice.
        """
        now = time.time()
        with self._tx() as conn:
            job = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if job is None or job["state"] != "running" or job["worker_id"] != worker_id \
                    or job["attempts"] != number:
                conn.execute("UPDATE attempts SET outcome = 'stale', finished_at = ? "
                             "WHERE job_id = ? AND number = ? AND outcome = 'running'", (now, job_id, number))
                return None
            for out in outputs:
                conn.execute(
                    "INSERT OR REPLACE INTO outputs (job_id, name, kind, type_name, value, path, size, attempt, "
                    "recorded_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    (job_id, out["name"], out["kind"], out.get("type_name"), out.get("value"), out.get("path"),
                     out.get("size"), number, now))
            return self._end_attempt(conn, job, outcome, error, output_path, actor or f"worker:{worker_id}", now)

    def _end_attempt(self, conn: sqlite3.Connection, job: sqlite3.Row, outcome: str,
                     error: dict[str, Any] | None, output_path: str | None, actor: str, now: float) -> str:
        if job["cancel_requested"] and outcome != "succeeded":
            outcome = "cancelled"
        failures = job["failures"] + (1 if outcome in _FAILURES else 0)
        options = json.loads(job["options"] or "{}")
        decision = policy.decide(outcome, failures, job["retries"], options.get("retry_on"),
                                 **options.get("backoff", {}))
        check_transition(job["state"], decision.state)
        err = error or {}
        conn.execute(
            "UPDATE attempts SET finished_at = ?, outcome = ?, error_type = ?, error_message = ?, error_cell = ?, "
            "error_traceback = ?, output_path = COALESCE(?, output_path) WHERE job_id = ? AND number = ?",
            (now, outcome, err.get("type"), err.get("message"), err.get("cell"), err.get("traceback"),
             output_path, job["id"], job["attempts"]))
        terminal = State(decision.state).terminal
        ok = outcome == "succeeded"
        conn.execute(
            "UPDATE jobs SET state = ?, reason = ?, failures = ?, worker_id = NULL, lease_until = NULL, "
            "run_at = ?, finished_at = ?, updated_at = ?, output_path = COALESCE(?, output_path), "
            "error_type = ?, error_message = ?, error_cell = ?, error_traceback = ? WHERE id = ?",
            (decision.state, None if ok else decision.reason, failures, now + decision.delay,
             now if terminal else None, now, output_path,
             None if ok else err.get("type"), None if ok else err.get("message"),
             None if ok else err.get("cell"), None if ok else err.get("traceback"), job["id"]))
        why = f"attempt {job['attempts']}: {outcome}"
        if decision.state == State.RETRYING.value:
            why += f"; retry in {decision.delay:.1f} s"
        self._event(conn, job["id"], job["state"], decision.state, why, actor, now)
        return decision.state

    def release(self, job_id: str, number: int, worker_id: str, why: str = "worker stopping") -> bool:
        """Give a running job back to the queue (a stopping worker); the attempt is recorded as
        ``released`` and does not count against the job's retries."""
        now = time.time()
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'queued', worker_id = NULL, lease_until = NULL, run_at = ?, updated_at = ?, "
                "reason = 'released' WHERE id = ? AND worker_id = ? AND state = 'running' AND attempts = ?",
                (now, now, job_id, worker_id, number))
            if cur.rowcount == 0:
                return False
            conn.execute("UPDATE attempts SET finished_at = ?, outcome = 'released' WHERE job_id = ? AND number = ?",
                         (now, job_id, number))
            self._event(conn, job_id, "running", "queued", why, f"worker:{worker_id}", now)
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
            conn.execute("UPDATE jobs SET state = 'cancelled', reason = 'cancelled', cancel_requested = 1, "
                         "finished_at = ?, updated_at = ? WHERE id = ?", (now, now, job_id))
            self._event(conn, job_id, state.value, "cancelled", "cancelled before it ran", actor, now)
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
            conn.execute(
                "UPDATE jobs SET state = 'queued', reason = 'retried', cancel_requested = 0, failures = 0, "
                "run_at = ?, finished_at = NULL, acked_at = NULL, updated_at = ? WHERE id = ?", (now, now, job_id))
            self._event(conn, job_id, state.value, "queued", "retried", actor, now)

    # --- workers ------------------------------------------------------------------------------
    def register_worker(self, worker_id: str, *, concurrency: int, executor: str = "local",
                        autostarted: bool = False) -> None:
        now = time.time()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO workers (id, host, pid, executor, concurrency, autostarted, state, started_at, "
                "heartbeat_at) VALUES (?,?,?,?,?,?, 'running', ?, ?)",
                (worker_id, _host(), os.getpid(), executor, concurrency, int(autostarted), now, now))

    def worker_stopped(self, worker_id: str) -> None:
        now = time.time()
        with self._tx() as conn:
            conn.execute("UPDATE workers SET state = 'stopped', stopped_at = ?, heartbeat_at = ? WHERE id = ?",
                         (now, now, worker_id))

    def live_workers(self, lease: float = config.LEASE_SECONDS) -> list[dict[str, Any]]:
        """Workers that heartbeated within one lease period and have not stopped."""
        rows = self._q("SELECT * FROM workers WHERE state = 'running' AND heartbeat_at > ? ORDER BY started_at",
                       (time.time() - lease,))
        return [dict(r) for r in rows]

    # --- history and metrics reads (nbjobs.metrics) -------------------------------------------
    #: what `history_rows` returns, in order: one row per job ...
    HISTORY_COLUMNS = ("id", "name", "kind", "state", "reason", "attempts", "priority", "tags", "submitted_at",
                       "started_at", "finished_at", "error_type", "error_message", "code_hash", "worker",
                       "output_path")
    #: ... or, with ``attempts=True``, one row per attempt
    ATTEMPT_COLUMNS = ("id", "attempt", "name", "kind", "state", "outcome", "reason", "attempts", "priority", "tags",
                       "submitted_at", "started_at", "finished_at", "error_type", "error_message", "code_hash",
                       "worker", "output_path")
    #: the fields of each `outcome_rows` tuple, in order (``packed`` is explained there)
    OUTCOME_COLUMNS = ("group", "packed", "submitted_at", "started_at", "finished_at")
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

        >>> import tempfile, pathlib
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
                   "j.tags, j.submitted_at, a.started_at, a.finished_at, a.error_type, a.error_message, "
                   "a.code_hash, a.worker_id, a.output_path FROM jobs j JOIN attempts a ON a.job_id = j.id"
                   f"{cond} ORDER BY j.submitted_at, j.rowid, a.number")
            return self._columns(sql, params, len(self.ATTEMPT_COLUMNS))
        sql = ("SELECT j.id, j.name, j.kind, j.state, j.reason, j.attempts, j.priority, j.tags, j.submitted_at, "
               "j.started_at, j.finished_at, j.error_type, j.error_message, j.code_hash, a.worker_id, j.output_path "
               "FROM jobs j LEFT JOIN attempts a ON a.job_id = j.id AND a.number = j.attempts"
               f"{cond} ORDER BY j.submitted_at, j.rowid")
        return self._columns(sql, params, len(self.HISTORY_COLUMNS))

    def outcome_rows(self, since: float, group: str | None = "name") -> Iterator[tuple]:
        """What the SLI, SLO and Prometheus numbers are computed from, streamed as tuples
        (`OUTCOME_COLUMNS`, for ``numpy.fromiter``): every job that finished at or after
        ``since`` (epoch seconds) and every job not finished (``finished_at IS NULL``: waiting,
        queued, running, retrying).

        Few columns, because reading rows is what costs (about 0.3 µs a value): ``group`` is the
        value of the ``group`` column (one of `OUTCOME_GROUPS`, or ``""`` for None); ``packed`` is
        one small integer ``state + 8 * acknowledged + 16 * attempts``, where ``state`` is the
        index in `State` order (0 waiting ... 7 cancelled) and ``acknowledged`` is 1 for an
        acknowledged dead letter.  Two indexed reads (``jobs_finished``, ``jobs_state``).

        >>> import tempfile, pathlib
        >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
        >>> rec, _ = s.insert_job({"name": "a", "kind": "cell", "source": "1"}, actor="doctest")
        >>> [row[:2] for row in s.outcome_rows(since=0.0)]   # queued (1), not acknowledged, 0 attempts
        [('a', 1)]
        """
        if group is not None and group not in self.OUTCOME_GROUPS:
            raise ValueError(f"cannot group by {group!r}; use one of {', '.join(self.OUTCOME_GROUPS)} or None")
        cols = (f"{group or repr('')}, {self._STATE_CODE} + 8 * (acked_at IS NOT NULL) + 16 * attempts, "
                "submitted_at, started_at, finished_at")
        active = ", ".join(sorted(f"'{s.value}'" for s in ACTIVE))
        sql = (f"SELECT {cols} FROM jobs WHERE finished_at >= ? "
               f"UNION ALL SELECT {cols} FROM jobs WHERE state IN ({active}) AND finished_at IS NULL")
        return self._rows(sql, (float(since),))

    # --- helpers for benchmarks and tests (never used by nbjobs itself) --------------------------
    def bulk_insert(self, table: str, columns: Iterable[str], rows: Iterable[Iterable[Any]], *,
                    defer_indexes: bool = False) -> int:
        """Load many rows into ``table`` (``jobs``, ``attempts`` or ``events``) in one transaction
        with ``executemany``: for benchmarks and test fixtures, not for submitting (no events,
        no checks; use `insert_job`).  ``defer_indexes=True`` drops the table's secondary
        indexes first and rebuilds them after (about 3x faster for a million rows; only on a
        database no other process is using).  Returns the number of rows written.

        >>> import tempfile, pathlib
        >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
        >>> s.bulk_insert("jobs", ["id", "name", "kind", "state", "submitted_at", "run_at", "updated_at"],
        ...               [("a" * 32, "old", "cell", "succeeded", 1.0, 1.0, 1.0)])
        1
        """
        if table not in ("jobs", "attempts", "events"):
            raise ValueError(f"bulk_insert loads jobs, attempts or events, not {table!r}")
        columns = list(columns)
        known = {r["name"] for r in self._q(f"PRAGMA table_info({table})")}
        unknown = [c for c in columns if c not in known]
        if unknown:
            raise ValueError(f"{table} has no column(s) {', '.join(unknown)}")
        indexes = self._q("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? "
                          "AND sql IS NOT NULL", (table,)) if defer_indexes else []
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        cache = self._q("PRAGMA cache_size")[0][0]
        self.conn.execute("PRAGMA cache_size = -262144")  # 256 MiB while loading: fewer page writes
        try:
            with self._tx() as conn:
                for ix in indexes:
                    conn.execute(f"DROP INDEX {ix['name']}")
                n = conn.executemany(sql, rows).rowcount
                for ix in indexes:
                    conn.execute(ix["sql"])
        finally:
            self.conn.execute(f"PRAGMA cache_size = {int(cache)}")
        return n

    def retime_for_tests(self, job_id: str, submitted_at: float,
                         attempts: Iterable[tuple[float, float | None]] = (),
                         finished_at: float | None = None) -> None:
        """TESTS ONLY: move a job's timestamps to chosen values after it went through the real
        state machine (`insert_job`, `claim`, `finish_attempt`), so tests can build histories
        with known timings.  ``attempts`` gives ``(started_at, finished_at)`` of attempts 1, 2,
        ...; the job's ``started_at`` becomes the first attempt's start and, if the job has
        finished, its ``finished_at`` becomes ``finished_at`` if given, else the last attempt's
        end (or ``submitted_at`` when it never started).  Events keep their times; nothing else
        changes.

        >>> import tempfile, pathlib
        >>> s = Store(pathlib.Path(tempfile.mkdtemp()) / "nbjobs.db")
        >>> rec, _ = s.insert_job({"name": "a", "kind": "cell", "source": "1"}, actor="doctest")
        >>> _, number = s.claim("w1")
        >>> s.finish_attempt(rec.id, number, "w1", "succeeded")
        'succeeded'
        >>> s.retime_for_tests(rec.id, 100.0, [(105.0, 135.0)])
        >>> r = s.get(rec.id); (r.submitted_at, r.started_at, r.finished_at)
        (100.0, 105.0, 135.0)
        """
        spans = list(attempts)
        with self._tx() as conn:
            job = conn.execute("SELECT finished_at FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if job is None:
                raise self._unknown(job_id)
            for number, (start, end) in enumerate(spans, 1):
                conn.execute("UPDATE attempts SET started_at = ?, finished_at = ? WHERE job_id = ? AND number = ?",
                             (start, end, job_id, number))
            finished = None
            if job["finished_at"] is not None:
                finished = finished_at if finished_at is not None else spans[-1][1] if spans else submitted_at
            conn.execute("UPDATE jobs SET submitted_at = ?, run_at = ?, started_at = ?, finished_at = ?, "
                         "updated_at = ? WHERE id = ?",
                         (submitted_at, submitted_at, spans[0][0] if spans else None, finished,
                          submitted_at if finished is None else finished, job_id))


# one Store per (thread, path): sqlite3 connections must not be shared between threads
_local = threading.local()


def open_store(path: Path | str | None = None) -> Store:
    """The calling thread's Store for ``path`` (default: the current home's database)."""
    path = Path(path) if path else config.db_path()
    cache = _local.__dict__.setdefault("stores", {})
    store = cache.get(path)
    if store is None:
        store = cache[path] = Store(path)
    return store


__all__ = ["Store", "open_store", "actor_name", "SCHEMA_VERSION", "MIGRATIONS", "ACTIVE", "TERMINAL",
           "CLAIMABLE", "sources_of"]
