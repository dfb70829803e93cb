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
from .errors import AmbiguousJob, BadInput, ExpiredJob, IllegalTransition, StoreError, UnknownJob
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

# v5: a lean hot path.  The claim's ORDER BY ends in ``id``, which the old ready index lacked, so
# every claim sorted all queued rows; ``jobs_state`` repeats the head of ``jobs_state_submitted``;
# ``jobs_running`` only ever narrowed the few running rows.  Fewer indexes = fewer pages per commit.
# Each attempt also records its kernel's pid and whether it came warm from a pool.
SCHEMA_V5_QUEUE = """
ALTER TABLE attempts ADD COLUMN kernel_pid INTEGER;
ALTER TABLE attempts ADD COLUMN kernel_warm INTEGER;
DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs (priority DESC, submitted_at, id) WHERE state IN ('queued', 'retrying');
DROP INDEX jobs_state;
DROP INDEX jobs_running;
"""

# v6: dependencies between jobs, cron schedules (and what each fire decided), the webhook outbox
# (one row per delivery, written in the transaction that ends the job) and named leases (the
# schedule firer: one worker of a home at a time).
SCHEMA_V6_FLOW = """
CREATE TABLE deps (
    job_id      TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    upstream_id TEXT NOT NULL,
    PRIMARY KEY (job_id, upstream_id)
);
CREATE INDEX deps_upstream ON deps (upstream_id);
CREATE TABLE schedules (
    name        TEXT PRIMARY KEY,
    cron        TEXT NOT NULL,
    tz          TEXT NOT NULL,
    spec        TEXT NOT NULL,
    misfire     TEXT NOT NULL,
    misfire_cap INTEGER NOT NULL,
    overlap     TEXT NOT NULL,
    paused      INTEGER NOT NULL DEFAULT 0,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    last_slot   REAL NOT NULL,
    last_job_id TEXT,
    fires       INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE schedule_events (
    id       INTEGER PRIMARY KEY,
    schedule TEXT NOT NULL,
    at       REAL NOT NULL,
    slot     REAL,
    action   TEXT NOT NULL,
    job_id   TEXT,
    detail   TEXT
);
CREATE INDEX schedule_events_name ON schedule_events (schedule, id);
CREATE TABLE outbox (
    id           TEXT PRIMARY KEY,
    job_id       TEXT NOT NULL,
    url          TEXT NOT NULL,
    event        TEXT NOT NULL,
    body         TEXT NOT NULL,
    state        TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      REAL NOT NULL,
    created_at   REAL NOT NULL,
    delivered_at REAL,
    last_status  INTEGER,
    last_error   TEXT
);
CREATE INDEX outbox_due ON outbox (next_at) WHERE state = 'pending';
CREATE INDEX outbox_job ON outbox (job_id, created_at);
CREATE TABLE leases (
    name   TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until  REAL NOT NULL
);
"""

# v7: trust under load.  Infrastructure failures (worker lost, runner died, kernel lost before the
# job's code ran) are counted apart from the job's own failures, on a budget of their own; a
# worker says why it does not claim (e.g. its kernels keep failing to start).
SCHEMA_V7_TRUST = """
ALTER TABLE jobs ADD COLUMN infra_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN note TEXT;
"""

#: MIGRATIONS[n] moves a database from user_version n to n + 1.  Append only; never edit.
MIGRATIONS: list[str] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4_PANEL, SCHEMA_V5_QUEUE, SCHEMA_V6_FLOW,
                         SCHEMA_V7_TRUST]
SCHEMA_VERSION = len(MIGRATIONS)

#: WAL pages between automatic checkpoints (32 MiB of WAL at most, then truncated to 64 MiB)
CHECKPOINT_PAGES = 8192

_JSON_FIELDS = ("tags", "parameters", "options")
_JOB_FIELDS = tuple(JobRecord.__dataclass_fields__)


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
            conn.execute("PRAGMA synchronous=NORMAL")  # in WAL mode: fsync only at checkpoints
            # a checkpoint costs two fsyncs (2-10 ms here); every 1,000 pages (SQLite's default) that
            # was every ~30 jobs, a third of the queue's time.  Workers also checkpoint when idle.
            conn.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")
            conn.execute(f"PRAGMA journal_size_limit={CHECKPOINT_PAGES * 4096 * 2}")
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

    def checkpoint(self) -> None:
        """Copy the WAL into the database now (PASSIVE: never waits for readers); workers call it
        when idle, so the fsyncs happen off the submit and claim paths."""
        try:
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

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
        """Record a new job as ``queued`` (``waiting`` with upstream jobs in ``spec["after"]``,
        full IDs that must exist) and return ``(record, created)``.

        With an idempotency key (``spec["idem_key"]``) that is already used, nothing is written
        and the existing job is returned with ``created=False``; the UNIQUE index decides, so
        two racing processes cannot both create one.
        """
        now = time.time()
        row = self._job_row(spec, actor, now)
        with self._tx() as conn:
            created = self._insert(conn, row, list(spec.get("after") or ()), actor, now)
            if not created:
                existing = conn.execute("SELECT * FROM jobs WHERE idem_key = ?", (row["idem_key"],)).fetchone()
                return self._record(existing), False
        return self.get(row["id"]), True

    @staticmethod
    def _job_row(spec: dict[str, Any], actor: str, now: float) -> dict[str, Any]:
        return {
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

    def _insert(self, conn: sqlite3.Connection, row: dict[str, Any], after: list[str], actor: str,
                now: float) -> bool:
        """Insert one job row inside a transaction (False: its idempotency key is taken).  With
        upstream jobs (``after``: full IDs) it starts ``waiting`` and is resolved at once, so an
        upstream that already ended moves it on in the same transaction."""
        after = list(dict.fromkeys(after))
        if row["id"] in after:
            raise BadInput(f"job {short_id(row['id'])} cannot run after itself; remove it from --after")
        for up in after:
            if conn.execute("SELECT 1 FROM jobs WHERE id = ?", (up,)).fetchone() is None:
                raise self._unknown(up)
        if after:
            row = dict(row, state=State.WAITING.value)
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        cur = conn.execute(
            f"INSERT INTO jobs ({cols}) VALUES ({marks}) ON CONFLICT (idem_key) WHERE idem_key IS NOT NULL "
            "DO NOTHING", tuple(row.values()))
        if cur.rowcount == 0:
            return False
        why = "submitted" + (f" after {', '.join(short_id(u) for u in after)}" if after else "")
        self._event(conn, row["id"], None, row["state"], why, actor, now)
        if after:
            conn.executemany("INSERT INTO deps (job_id, upstream_id) VALUES (?, ?)", [(row["id"], u) for u in after])
            self._resolve(conn, [row["id"]], actor, now)
        return True

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
        workers = self._q("SELECT executor, note FROM workers WHERE state IN ('starting', 'running') "
                          "AND heartbeat_at > ?", (time.time() - lease,))
        return {
            "counts": counts,
            "queue_depth": counts["queued"] + counts["retrying"] + counts["waiting"],
            "running": counts["running"],
            "workers": len(workers),
            # what the live workers run on: 'local', or 'dask@<dashboard link>' (see executors.dask)
            "executors": sorted({w["executor"] or "local" for w in workers}),
            # why a live worker does not claim (e.g. its kernels keep failing to start), if one says so
            "worker_notes": [w["note"] for w in workers if w["note"]],
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
                "SELECT id, state FROM jobs INDEXED BY jobs_ready WHERE state IN ('queued', 'retrying') "
                "AND run_at <= ? ORDER BY priority DESC, submitted_at, id LIMIT 1", (now,)).fetchone()
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
            self._enqueue_notification(conn, job["id"], State.RUNNING.value, now, job["options"])
        return self._record(job), number

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
        try:
            self.conn.execute(
                "UPDATE jobs SET progress_done = ?, progress_total = ?, updated_at = ? "
                "WHERE id = ? AND worker_id = ? AND state = 'running'", (done, total, time.time(), job_id, worker_id))
        except sqlite3.DatabaseError as exc:
            raise self._error(exc) from None

    def set_attempt_info(self, job_id: str, number: int, **info: Any) -> None:
        """Record what the runner reports when an attempt starts (paths, kernel, versions, hash; the
        kernel's pid and whether it was warm; the host, for a Dask worker's)."""
        allowed = {"output_path", "log_path", "code_hash", "kernel", "versions", "host", "kernel_pid", "kernel_warm"}
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
        options = json.loads(job["options"] or "{}")
        infra_retries = options.get("infra_retries")
        if infra_retries is None and outcome in policy.INFRA:
            infra_retries = self._infra_setting(conn)
        decision = policy.decide(outcome, job["failures"], job["retries"], options.get("retry_on"),
                                 infra_failures=job["infra_failures"],
                                 infra_retries=policy.INFRA_RETRIES if infra_retries is None else infra_retries,
                                 **options.get("backoff", {}))
        failures = decision.failures
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
            "UPDATE jobs SET state = ?, reason = ?, failures = ?, infra_failures = ?, worker_id = NULL, "
            "lease_until = NULL, run_at = ?, finished_at = ?, updated_at = ?, output_path = COALESCE(?, output_path), "
            "error_type = ?, error_message = ?, error_cell = ?, error_traceback = ? WHERE id = ?",
            (decision.state, None if ok else decision.reason, failures, decision.infra_failures, now + decision.delay,
             now if terminal else None, now, output_path,
             None if ok else err.get("type"), None if ok else err.get("message"),
             None if ok else err.get("cell"), None if ok else err.get("traceback"), job["id"]))
        why = f"attempt {job['attempts']}: {outcome}"
        if outcome in policy.INFRA:
            why += f" (infrastructure failure {decision.infra_failures}, not charged to the job)" if decision.infra \
                else f" (infrastructure budget of {decision.infra_failures - 1} spent)"
        if decision.state == State.RETRYING.value:
            why += f"; retry in {decision.delay:.1f} s"
        self._event(conn, job["id"], job["state"], decision.state, why, actor, now)
        self._changed(conn, job["id"], decision.state, actor, now, job["options"])
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
            conn.execute(
                "UPDATE jobs SET state = ?, reason = 'retried', cancel_requested = 0, failures = 0, infra_failures = 0, "
                "run_at = ?, finished_at = NULL, acked_at = NULL, updated_at = ?, error_type = CASE WHEN reason = "
                "'dependency_failed' THEN NULL ELSE error_type END, error_message = CASE WHEN reason = "
                "'dependency_failed' THEN NULL ELSE error_message END WHERE id = ?", (new, now, now, job_id))
            self._event(conn, job_id, state.value, new, "retried", actor, now)
            if waits:  # upstream jobs again: queued at once if they all succeeded by now
                self._resolve(conn, [job_id], actor, now)

    # --- workers ------------------------------------------------------------------------------
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
                (worker_id, _host(), os.getpid(), executor, concurrency, int(autostarted), state, now, now))

    def set_worker_note(self, worker_id: str, note: str | None) -> None:
        """Why this worker does not claim right now (None: it does)."""
        with self._tx() as conn:
            conn.execute("UPDATE workers SET note = ? WHERE id = ?", (note, worker_id))

    def worker_stopped(self, worker_id: str) -> None:
        now = time.time()
        with self._tx() as conn:
            conn.execute("UPDATE workers SET state = 'stopped', stopped_at = ?, heartbeat_at = ?, note = NULL WHERE id = ?",
                         (now, now, worker_id))

    def live_workers(self, lease: float = config.LEASE_SECONDS) -> list[dict[str, Any]]:
        """Workers (starting or running) that heartbeated within one lease period and have not stopped."""
        rows = self._q("SELECT * FROM workers WHERE state IN ('starting', 'running') AND heartbeat_at > ? "
                       "ORDER BY started_at", (time.time() - lease,))
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
        acknowledged dead letter.  Two indexed reads (``jobs_finished``, ``jobs_state_submitted``).

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

    # --- dependencies, notifications, schedules, leases (schema v5) ---------------------------
    _ENDED_BADLY = ("failed", "timed_out", "cancelled")

    def _changed(self, conn: sqlite3.Connection, job_id: str, state: str, actor: str, now: float,
                 options: str | None = None) -> None:
        """Called inside the transaction that moved ``job_id`` to ``state``: queue its webhook
        (transactional outbox) and, when it ended, move on the jobs waiting for it; a dependent
        cancelled for that reason cascades to its own dependents (a work list, no recursion).
        ``options``: the job's options JSON when the caller has it (saves a read)."""
        todo = [(job_id, state, options)]
        while todo:
            jid, st, opts = todo.pop()
            self._enqueue_notification(conn, jid, st, now, opts)
            if State(st).terminal:
                waiting = [r[0] for r in conn.execute(
                    "SELECT d.job_id FROM deps d JOIN jobs j ON j.id = d.job_id "
                    "WHERE d.upstream_id = ? AND j.state = 'waiting'", (jid,))]
                for dep in waiting:
                    new = self._resolve_one(conn, dep, actor, now)
                    if new:
                        todo.append((dep, new, None))

    def _resolve(self, conn: sqlite3.Connection, ids: Iterable[str], actor: str, now: float) -> None:
        for jid in ids:
            new = self._resolve_one(conn, jid, actor, now)
            if new:
                self._changed(conn, jid, new, actor, now)

    def _resolve_one(self, conn: sqlite3.Connection, job_id: str, actor: str, now: float) -> str | None:
        """Queue a waiting job whose upstream jobs all succeeded (with ``after_any``: all ended),
        or cancel it (reason ``dependency_failed``) when one ended failed, timed out or cancelled.
        Returns the new state, or None when it keeps waiting."""
        job = conn.execute("SELECT state, options FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if job is None or job["state"] != State.WAITING.value:
            return None
        after_any = bool(json.loads(job["options"] or "{}").get("after_any"))
        ups = conn.execute(
            "SELECT d.upstream_id AS id, COALESCE(j.state, x.state, 'cancelled') AS state, "
            "COALESCE(j.name, x.name) AS name FROM deps d LEFT JOIN jobs j ON j.id = d.upstream_id "
            "LEFT JOIN expired x ON x.id = d.upstream_id WHERE d.job_id = ? ORDER BY d.upstream_id",
            (job_id,)).fetchall()
        bad = [u for u in ups if u["state"] in self._ENDED_BADLY]
        if bad and not after_any:
            u = bad[0]
            msg = f"upstream job {short_id(u['id'])} ({u['name']}) ended {u['state']}"
            conn.execute("UPDATE jobs SET state = 'cancelled', reason = 'dependency_failed', finished_at = ?, "
                         "updated_at = ?, error_type = 'DependencyFailed', error_message = ? "
                         "WHERE id = ? AND state = 'waiting'", (now, now, msg, job_id))
            self._event(conn, job_id, "waiting", "cancelled", f"dependency_failed: {msg}", actor, now)
            return State.CANCELLED.value
        done = [u for u in ups if u["state"] == State.SUCCEEDED.value or (after_any and State(u["state"]).terminal)]
        if len(done) == len(ups):
            conn.execute("UPDATE jobs SET state = 'queued', reason = NULL, run_at = ?, updated_at = ? "
                         "WHERE id = ? AND state = 'waiting'", (now, now, job_id))
            self._event(conn, job_id, "waiting", "queued",
                        f"upstream {', '.join(short_id(u['id']) for u in ups)} ended", actor, now)
            return State.QUEUED.value
        return None

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

    #: job fields a webhook carries (never parameters, inputs, sources or tracebacks)
    NOTIFY_FIELDS = ("id", "name", "kind", "state", "reason", "attempts", "retries", "submitted_at", "started_at",
                     "finished_at", "error_type", "error_message", "tags", "options")

    def _enqueue_notification(self, conn: sqlite3.Connection, job_id: str, state: str, now: float,
                              options_json: str | None = None) -> None:
        if options_json is None:
            got = conn.execute("SELECT options FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if got is None:
                return
            options_json = got[0]
        options = json.loads(options_json or "{}")
        url = options.get("notify")
        on = options.get("notify_on")
        if url is None:
            for r in conn.execute("SELECT name, value FROM settings WHERE name IN ('notify_url', 'notify_on')"):
                if r["name"] == "notify_url":
                    url = r["value"]
                elif on is None:
                    on = r["value"]
        if not url or (not State(state).terminal and on != "all"):
            return
        row = conn.execute(f"SELECT {', '.join(self.NOTIFY_FIELDS)} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        snapshot = {k: row[k] for k in self.NOTIFY_FIELDS if k not in ("options", "tags", "retries")}
        snapshot.update(state=state, max_attempts=row["retries"] + 1, tags=json.loads(row["tags"] or "[]"),
                        schedule=options.get("schedule"), at=now)
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

    def take_lease(self, name: str, holder: str, ttl: float, now: float | None = None) -> bool:
        """Hold the named lease for ``ttl`` seconds (or renew it).  False while someone else
        holds it; it passes to the next taker once it expired (its holder died)."""
        now = time.time() if now is None else now
        rows = self._q("SELECT holder, until FROM leases WHERE name = ?", (name,))
        if rows and rows[0]["until"] > now and (rows[0]["holder"] != holder or rows[0]["until"] - now > ttl * 2 / 3):
            return rows[0]["holder"] == holder  # held by another, or ours and fresh: no write
        with self._tx() as conn:
            row = conn.execute("SELECT holder, until FROM leases WHERE name = ?", (name,)).fetchone()
            if row is not None and row["holder"] != holder and row["until"] > now:
                return False
            conn.execute("INSERT OR REPLACE INTO leases (name, holder, until) VALUES (?, ?, ?)",
                         (name, holder, now + ttl))
        return True

    def drop_lease(self, name: str, holder: str) -> None:
        """Give the lease up (a stopping holder), so the next taker need not wait for it to expire."""
        if not self._q("SELECT 1 FROM leases WHERE name = ? AND holder = ?", (name, holder)):
            return
        with self._tx() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    def lease_holder(self, name: str, now: float | None = None) -> str | None:
        now = time.time() if now is None else now
        rows = self._q("SELECT holder FROM leases WHERE name = ? AND until > ?", (name, now))
        return rows[0][0] if rows else None

    @staticmethod
    def _schedule(row: sqlite3.Row) -> dict[str, Any]:
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
        conn.execute("INSERT INTO schedule_events (schedule, at, slot, action, job_id, detail) VALUES (?,?,?,?,?,?)",
                     (name, at, slot, action, job_id, detail))

    def get_schedule(self, name: str) -> dict[str, Any]:
        rows = self._q("SELECT * FROM schedules WHERE name = ?", (name,))
        if not rows:
            raise BadInput(f"no schedule named {name!r}; list them with `nbjobs schedule ls`")
        return self._schedule(rows[0])

    def list_schedules(self) -> list[dict[str, Any]]:
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
