"""The SQL of every schema version, and `MIGRATIONS`, which moves a database from one to the next.

``PRAGMA user_version`` holds a database's version; `ConnMixin.migrate` applies ``MIGRATIONS[n]``
to move it from ``n`` to ``n + 1``.  Append only: a released step is never edited, so a newer
nbjobs opens an older database without losing rows.

>>> SCHEMA_VERSION == len(MIGRATIONS)
True

A step is SQL text (statements separated by ``;``) or a function of the connection, called inside
the migration's transaction (v8 builds the search index with sqlite-utils).
"""
from __future__ import annotations

import sqlite3
import sys
import threading
from typing import Callable, Union

from ..job import State

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

# v8: full-text search of the job history.  Each attempt keeps the tail of its log (the last
# `LOG_TAIL_BYTES`, redacted like the log), and so does the job (its latest attempt's); ``jobs_fts``
# (FTS5, external content: the jobs table) indexes `SEARCH_COLUMNS`.
SCHEMA_V8_LOG_TAIL = """
ALTER TABLE attempts ADD COLUMN log_tail TEXT;
ALTER TABLE jobs ADD COLUMN log_tail TEXT;
"""

#: the jobs columns `nbjobs.search` looks in (``jobs_fts``), in order
SEARCH_COLUMNS = ("name", "tags", "parameters", "error_type", "error_message", "log_tail")
#: at most this many bytes of the end of an attempt's log are kept for search
LOG_TAIL_BYTES = 4096

_import_lock = threading.Lock()



def run_script(conn: sqlite3.Connection, script: str) -> None:
    """Execute the statements of ``script`` (separated by ``;``) one by one, in ``conn``'s transaction
    (``executescript`` would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)

def import_sqlite_utils():
    """Import sqlite-utils; if pandas and numpy are not loaded yet, without them (0.4 s saved).

    sqlite-utils imports pandas and numpy when it is imported, only to map their scalar types
    when inserting rows.  The migration that builds the search index needs neither, and a fresh
    home must not cost a kernel half a second and a pandas import.
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


def migrate_v8_search(conn: sqlite3.Connection) -> None:
    """v8: the log tail columns, and the search index built by sqlite-utils' FTS5 support.

    ``enable_fts`` creates ``jobs_fts`` and fills it from every existing job (the back-fill of an
    older home) and its insert/delete/update triggers.  Its update trigger fires on any UPDATE
    of jobs; it is replaced by one that fires only when an indexed column is set, so the frequent
    writes (claim, heartbeat, progress, lease) never touch the index.
    """
    run_script(conn, SCHEMA_V8_LOG_TAIL)
    db = import_sqlite_utils().Database(conn, recursive_triggers=False, execute_plugins=False)
    db["jobs"].enable_fts(SEARCH_COLUMNS, create_triggers=True)
    cols = ", ".join(SEARCH_COLUMNS)
    old = ", ".join(f"old.{c}" for c in SEARCH_COLUMNS)
    new = ", ".join(f"new.{c}" for c in SEARCH_COLUMNS)
    conn.execute('DROP TRIGGER "jobs_au"')
    conn.execute(f"""CREATE TRIGGER "jobs_au" AFTER UPDATE OF {cols} ON "jobs" BEGIN
  INSERT INTO "jobs_fts" ("jobs_fts", rowid, {cols}) VALUES ('delete', old.rowid, {old});
  INSERT INTO "jobs_fts" (rowid, {cols}) VALUES (new.rowid, {new});
END""")


# v9: when an attempt's start phase ended (a worker and a kernel ready, the first cell of the
# user's code started): a job's runtime counts from there, not from its claim.  Attempts that
# ended before this version never said; their claim is the best estimate there is.  And the
# attempt count at the last manual retry, where the retry budget started afresh (`JobRecord.max_attempts`).
SCHEMA_V9_BEGAN = """
ALTER TABLE attempts ADD COLUMN began_at REAL;
ALTER TABLE jobs ADD COLUMN began_at REAL;
ALTER TABLE jobs ADD COLUMN budget_from INTEGER NOT NULL DEFAULT 0;
UPDATE attempts SET began_at = started_at WHERE finished_at IS NOT NULL;
UPDATE jobs SET began_at = (SELECT a.began_at FROM attempts a WHERE a.job_id = jobs.id AND a.number = jobs.attempts)
 WHERE finished_at IS NOT NULL;
"""

# v10: groups (a parameter sweep is one group of ordinary jobs: ``jobs.group_id``) and per-name limits
# (``jobs.concurrency_key``: at most ``jobs.max_running`` running jobs share a key; the claim counts
# them through ``jobs_key_running``, a partial index over the few running rows that have a key).
SCHEMA_V10_GROUPS = """
CREATE TABLE groups (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    kind         TEXT NOT NULL DEFAULT 'sweep',
    params       TEXT NOT NULL DEFAULT '[]',
    size         INTEGER NOT NULL DEFAULT 0,
    idem_key     TEXT,
    created_at   REAL NOT NULL,
    created_by   TEXT,
    options      TEXT NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX groups_idem_key ON groups (idem_key) WHERE idem_key IS NOT NULL;
ALTER TABLE jobs ADD COLUMN group_id TEXT;
ALTER TABLE jobs ADD COLUMN concurrency_key TEXT;
ALTER TABLE jobs ADD COLUMN max_running INTEGER;
CREATE INDEX jobs_group ON jobs (group_id) WHERE group_id IS NOT NULL;
CREATE INDEX jobs_key_running ON jobs (concurrency_key) WHERE state = 'running' AND concurrency_key IS NOT NULL;
"""

# v11: slow runs and reports.  A running attempt past its name's usual runtime (`policy.slow_threshold`)
# is flagged: ``slow_at`` (when) and ``slow_after`` (the threshold, seconds) on the job for its current
# attempt (cleared when a new attempt is claimed), ``slow_at`` on the attempt.  ``report_path`` is the
# standalone HTML page rendered from an attempt's output notebook (``--report html``, `nbjobs report`).
SCHEMA_V11_SLOW_REPORTS = """
ALTER TABLE jobs ADD COLUMN slow_at REAL;
ALTER TABLE jobs ADD COLUMN slow_after REAL;
ALTER TABLE jobs ADD COLUMN report_path TEXT;
ALTER TABLE attempts ADD COLUMN slow_at REAL;
ALTER TABLE attempts ADD COLUMN report_path TEXT;
"""

# v12: the path a job's kernel took: ``forked`` (from a runner host's zygote), ``warm`` (from its
# pool) or ``cold`` (started with the job).  It replaces the v5 ``kernel_warm`` flag (1: warm, 0: cold).
SCHEMA_V12_KERNEL_PATH = """
ALTER TABLE attempts ADD COLUMN kernel_path TEXT;
UPDATE attempts SET kernel_path = CASE kernel_warm WHEN 1 THEN 'warm' WHEN 0 THEN 'cold' END
    WHERE kernel_warm IS NOT NULL;
ALTER TABLE attempts DROP COLUMN kernel_warm
"""


def migrate_v12_kernel_path(conn: sqlite3.Connection) -> None:
    """v12: `SCHEMA_V12_KERNEL_PATH`, and a leaner search trigger: the update trigger of ``jobs_fts``
    fires only when an indexed value really changes (``WHEN old.c IS NOT new.c ...``), not whenever
    an UPDATE names an indexed column (the end of every attempt names the error columns, mostly to
    leave them NULL): one FTS delete and insert fewer per job."""
    run_script(conn, SCHEMA_V12_KERNEL_PATH)
    cols = ", ".join(SEARCH_COLUMNS)
    old = ", ".join(f"old.{c}" for c in SEARCH_COLUMNS)
    new = ", ".join(f"new.{c}" for c in SEARCH_COLUMNS)
    changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in SEARCH_COLUMNS)
    conn.execute('DROP TRIGGER "jobs_au"')
    conn.execute(f"""CREATE TRIGGER "jobs_au" AFTER UPDATE OF {cols} ON "jobs" WHEN {changed} BEGIN
  INSERT INTO "jobs_fts" ("jobs_fts", rowid, {cols}) VALUES ('delete', old.rowid, {old});
  INSERT INTO "jobs_fts" (rowid, {cols}) VALUES (new.rowid, {new});
END""")


# v13: placement by resources.  A job may need Dask resources (``{"GPU": 1}``, JSON; NULL: none), and
# only a worker whose executor offers them claims it; a worker records what its executor offers
# (JSON: one ``{name: amount}`` per place it runs attempts, e.g. per Dask worker; NULL: none).
SCHEMA_V13_RESOURCES = """
ALTER TABLE jobs ADD COLUMN resources TEXT;
ALTER TABLE workers ADD COLUMN resources TEXT;
"""

# v14: a lean queue: fewer b-tree pages written per submit, claim and end of a job (each page a
# commit touches is a WAL frame written; they were most of the queue's time).
# - The search index is off the hot path: no trigger indexes a new job.  `SearchMixin.index_pending`
#   indexes the jobs whose rowid is above the largest indexed one (``jobs_fts_docsize``), before every
#   search and when a worker is idle.  A job already indexed whose indexed text changes keeps the
#   values its index row holds in ``jobs_fts_stale`` (an external-content FTS5 delete needs them)
#   until it is re-indexed; deleting a job removes its index row at once.
# - ``events`` and ``attempts`` are clustered by job (WITHOUT ROWID, keys ``(job_id, id)`` and
#   ``(job_id, number)``): one b-tree each instead of a table and its index.  An event's ``id``
#   counts up within its job.
# - ``jobs_submitted`` becomes ``(submitted_at, state, name)``: it serves the newest-first lists with
#   or without a state or name filter (read in the index, the rows that match only are read), the
#   counts per state and a name's recent runtimes, and a state change moves its entry within one
#   page (``jobs_state_submitted``, keyed by state first, moved it between two; it and ``jobs_name``
#   are gone).  The few active
#   rows are found by partial indexes a job enters and leaves once: ``jobs_ready`` (queued,
#   retrying), ``jobs_running`` (by worker) and ``jobs_waiting``.
# - ``jobs_updated`` (the panel's "what changed since T") holds only the rows no other index finds
#   by that time (`CHANGED_LATE`); `JobsMixin.changed_since` finds the others through
#   ``jobs_submitted`` (new), ``jobs_running`` and ``jobs_finished`` (changed by their end).  A
#   job's submit, claim and end no longer touch it.

#: the rows ``jobs_updated`` holds (v14): updated since their submit, not running, and changed after
#: their end if they ended; `JobsMixin.changed_since` repeats this text (SQLite then uses the index)
CHANGED_LATE = ("updated_at > submitted_at AND (finished_at IS NULL OR updated_at > finished_at) "
                "AND state <> 'running'")

SCHEMA_V14_INDEXES = f"""
DROP INDEX jobs_submitted;
DROP INDEX jobs_state_submitted;
DROP INDEX jobs_name;
CREATE INDEX jobs_submitted ON jobs (submitted_at, state, name);
CREATE INDEX jobs_running ON jobs (worker_id) WHERE state = 'running';
CREATE INDEX jobs_waiting ON jobs (submitted_at) WHERE state = 'waiting';
DROP INDEX jobs_updated;
CREATE INDEX jobs_updated ON jobs (updated_at, id) WHERE {CHANGED_LATE};
CREATE TABLE jobs_fts_stale (
    rowid INTEGER PRIMARY KEY, name, tags, parameters, error_type, error_message, log_tail
)
"""


def _cluster_by_job(conn: sqlite3.Connection, table: str, key: str) -> None:
    """Rebuild ``table`` as a WITHOUT ROWID table whose primary key is ``key`` (``job_id, ...``),
    with every column it has (names, types, NOT NULL, defaults; ``job_id`` keeps its reference
    to ``jobs``), its rows, and no other index."""
    cols = conn.execute(f"PRAGMA table_info({table})").fetchall()
    keys = {k.strip() for k in key.split(",")}
    defs = []
    for _cid, name, ctype, notnull, default, _pk in cols:
        d = f"{name} {ctype}".strip()
        if notnull or name in keys:
            d += " NOT NULL"
        if default is not None:
            d += f" DEFAULT {default}"
        if name == "job_id":
            d += " REFERENCES jobs (id) ON DELETE CASCADE"
        defs.append(d)
    names = ", ".join(c[1] for c in cols)
    for (index,) in conn.execute(f"SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}' "
                                 "AND sql IS NOT NULL").fetchall():
        conn.execute(f"DROP INDEX {index}")
    conn.execute(f"CREATE TABLE {table}_v14 ({', '.join(defs)}, PRIMARY KEY ({key})) WITHOUT ROWID")
    conn.execute(f"INSERT INTO {table}_v14 ({names}) SELECT {names} FROM {table}")
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"ALTER TABLE {table}_v14 RENAME TO {table}")


def migrate_v14_lean_queue(conn: sqlite3.Connection) -> None:
    """v14: ``events`` and ``attempts`` clustered by job, `SCHEMA_V14_INDEXES`, and the search
    index's triggers: none on insert; on update, the indexed values a changed job's index row holds
    are kept in ``jobs_fts_stale`` (once, until it is re-indexed); on delete, its index row goes
    (with those kept values, if any)."""
    _cluster_by_job(conn, "events", "job_id, id")
    _cluster_by_job(conn, "attempts", "job_id, number")
    run_script(conn, SCHEMA_V14_INDEXES)
    cols = ", ".join(SEARCH_COLUMNS)
    old = ", ".join(f"old.{c}" for c in SEARCH_COLUMNS)
    kept = ", ".join(f"s.{c}" for c in SEARCH_COLUMNS)
    changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in SEARCH_COLUMNS)
    indexed = "EXISTS (SELECT 1 FROM jobs_fts_docsize WHERE id = old.rowid)"
    for trigger in ("jobs_ai", "jobs_au", "jobs_ad"):
        conn.execute(f'DROP TRIGGER IF EXISTS "{trigger}"')
    conn.execute(f"""CREATE TRIGGER "jobs_au" AFTER UPDATE OF {cols} ON "jobs" WHEN ({changed}) AND {indexed} BEGIN
  INSERT OR IGNORE INTO jobs_fts_stale (rowid, {cols}) VALUES (old.rowid, {old});
END""")
    conn.execute(f"""CREATE TRIGGER "jobs_ad" AFTER DELETE ON "jobs" WHEN {indexed} BEGIN
  INSERT INTO "jobs_fts" ("jobs_fts", rowid, {cols})
    SELECT 'delete', old.rowid, {kept} FROM jobs_fts_stale s WHERE s.rowid = old.rowid
    UNION ALL SELECT 'delete', old.rowid, {old} WHERE NOT EXISTS (SELECT 1 FROM jobs_fts_stale WHERE rowid = old.rowid);
  DELETE FROM jobs_fts_stale WHERE rowid = old.rowid;
END""")


# v15: a job's history is clustered by its number in the order of submits, not by its random ID.
# - ``jobs.seq`` (INTEGER PRIMARY KEY: the rowid, made explicit, so a VACUUM never renumbers it) is
#   the key of ``event_log (job, id)`` and ``attempt_log (job, number)``.  A new job's rows go to the
#   right edge of each b-tree, and the job a worker ends and the next one it claims (submitted one
#   after the other) share leaves: a claim+finish commit writes about 8.4 pages, not 10.1, and a
#   submit's event no longer lands on a random leaf (which split leaves half full).
# - ``events`` and ``attempts`` are views over them with the columns they had, in their order:
#   every reader, and a user's own SQL, reads them as before.  The store writes the logs.  The views
#   also take writes (INSTEAD OF triggers: insert into both, update attempts), so a worker still
#   running the code of v14 when a newer nbjobs migrates its home goes on recording its jobs.
# - The logs reference ``jobs (seq) ON DELETE CASCADE``: deleting a job still deletes its history.

#: `migrate_v15_history_by_seq`: each log, the view with its old table's name, and the column that
#: numbers a job's rows
_LOGS = {"event_log": ("events", "id"), "attempt_log": ("attempts", "number")}


def migrate_v15_history_by_seq(conn: sqlite3.Connection) -> None:
    """v15: ``jobs`` rebuilt with ``seq INTEGER PRIMARY KEY`` (equal to each row's rowid, which the
    search index follows), ``events`` and ``attempts`` moved to ``event_log`` and ``attempt_log``
    keyed by ``seq``, and writable views with their old names and columns.  Needs ``PRAGMA
    foreign_keys=OFF`` (`ConnMixin.migrate`): dropping the old ``jobs`` must not cascade to the
    tables that reference it."""
    sql = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").fetchone()[0]
    table = sql.replace("CREATE TABLE jobs (", "CREATE TABLE jobs_v15 (\n    seq              INTEGER PRIMARY KEY,", 1)
    table = table.replace("id               TEXT PRIMARY KEY", "id               TEXT NOT NULL UNIQUE", 1)
    assert table.count("seq") == 1 and "UNIQUE" in table, "unexpected jobs table"
    kept = conn.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'jobs' AND type IN ('index', 'trigger') "
                        "AND sql IS NOT NULL ORDER BY type, name").fetchall()
    cols = ", ".join(c[1] for c in conn.execute("PRAGMA table_info(jobs)").fetchall())
    conn.execute(table)
    conn.execute(f"INSERT INTO jobs_v15 (seq, {cols}) SELECT rowid, {cols} FROM jobs")
    views = []
    for log, (old, number) in _LOGS.items():
        info = conn.execute(f"PRAGMA table_info({old})").fetchall()
        rest = [c for c in info if c[1] != "job_id"]
        defs = ["job INTEGER NOT NULL REFERENCES jobs (seq) ON DELETE CASCADE"]
        for _cid, name, ctype, notnull, default, pk in rest:
            d = f"{name} {ctype}".strip() + (" NOT NULL" if notnull or pk else "")
            defs.append(d + (f" DEFAULT {default}" if default is not None else ""))
        names = ", ".join(c[1] for c in rest)
        conn.execute(f"CREATE TABLE {log} ({', '.join(defs)}, PRIMARY KEY (job, {number})) WITHOUT ROWID")
        conn.execute(f"INSERT INTO {log} (job, {names}) SELECT j.seq, {', '.join('o.' + c[1] for c in rest)} "
                     f"FROM {old} o JOIN jobs_v15 j ON j.id = o.job_id ORDER BY j.seq, o.{number}")
        conn.execute(f"DROP TABLE {old}")
        views += _history_view(log, old, number, info)
    conn.execute("DROP TABLE jobs")
    conn.execute("ALTER TABLE jobs_v15 RENAME TO jobs")
    for (statement,) in kept:
        conn.execute(statement)
    for statement in views:
        conn.execute(statement)


def _history_view(log: str, view: str, number: str, info: list) -> list[str]:
    """The statements of v15's view ``view`` over ``log`` (the columns ``info`` of the table it
    replaces, in their order) and its INSTEAD OF triggers: an inserted row goes to the log under its
    job's ``seq`` (its number, if left out, after the job's last; the log's defaults for what else
    is left out); an update of ``attempts`` changes the log's row."""
    shown = ", ".join("j.id AS job_id" if c[1] == "job_id" else f"l.{c[1]} AS {c[1]}" for c in info)
    rest = [c for c in info if c[1] != "job_id"]
    seq_of = "(SELECT seq FROM jobs WHERE id = {}.job_id)"  # the seq of the view's NEW or OLD row
    seq = seq_of.format("NEW")
    values = []
    for _cid, name, _type, _notnull, default, _pk in rest:
        if name == number:
            values.append(f"COALESCE(NEW.{name}, (SELECT COALESCE(MAX({number}), 0) + 1 FROM {log} WHERE job = {seq}))")
        else:
            values.append(f"COALESCE(NEW.{name}, {default})" if default is not None else f"NEW.{name}")
    names = ", ".join(c[1] for c in rest)
    out = [f"CREATE VIEW {view} AS SELECT {shown} FROM {log} l JOIN jobs j ON j.seq = l.job",
           f"CREATE TRIGGER {view}_insert INSTEAD OF INSERT ON {view} BEGIN "
           f"INSERT INTO {log} (job, {names}) VALUES ({seq}, {', '.join(values)}); END"]
    if view == "attempts":
        sets = ", ".join(f"{c[1]} = NEW.{c[1]}" for c in rest if c[1] != number)
        out.append(f"CREATE TRIGGER {view}_update INSTEAD OF UPDATE ON {view} BEGIN UPDATE {log} SET {sets} "
                   f"WHERE job = {seq_of.format('OLD')} AND {number} = OLD.{number}; END")
    return out


#: MIGRATIONS[n] moves a database from user_version n to n + 1.  Append only; never edit.
MIGRATIONS: list[Union[str, Callable[[sqlite3.Connection], None]]] = [
    SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4_PANEL, SCHEMA_V5_QUEUE, SCHEMA_V6_FLOW, SCHEMA_V7_TRUST,
    migrate_v8_search, SCHEMA_V9_BEGAN, SCHEMA_V10_GROUPS, SCHEMA_V11_SLOW_REPORTS, migrate_v12_kernel_path,
    SCHEMA_V13_RESOURCES, migrate_v14_lean_queue, migrate_v15_history_by_seq]
SCHEMA_VERSION = len(MIGRATIONS)
