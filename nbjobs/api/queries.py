"""Reading: look jobs up (`get`, `lookup`, `jobs`, `records`, `search`), wait for them, read their
results and logs, and the home's state (`summary`, `workers`, `db`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

from .. import config
from ..errors import BadInput, WaitTimeout
from ..job import TERMINAL, JobRecord, State, short_id
from .checks import _check_state, check_wait_timeout
from .handle import Job, _store


def get(job_id: str, home: Path | str | None = None) -> Job:
    """The job with this ID or unique ID prefix (as in git); a clear error if none or several match."""
    return Job(_store(home).resolve(job_id), home)


def jobs(state: str | Iterable[str] | None = None, name: str | None = None, tag: str | None = None,
         limit: int | None = 20, home: Path | str | None = None) -> list[Job]:
    """Recent jobs, newest first, optionally filtered by state(s), name (glob) and tag."""
    if state is not None:
        for s in [state] if isinstance(state, str) else state:
            _check_state(s)
    return [Job(r.id, home) for r in _store(home).list_jobs(state=state, name=name, tag=tag, limit=limit)]


def records(state: str | Iterable[str] | None = None, name: str | None = None, tag: str | None = None,
            limit: int | None = 20, home: Path | str | None = None, group: str | None = None) -> list[JobRecord]:
    """Like `jobs` but returns row snapshots (one query, for tables); ``group``: only that group's
    jobs (an ID or unique prefix)."""
    if state is not None:
        for s in [state] if isinstance(state, str) else state:
            _check_state(s)
    store = _store(home)
    return store.list_jobs(state=state, name=name, tag=tag, limit=limit,
                           group=store.check_group_prefix(group) if group else None)


def lookup(id_or_prefix: str, home: Path | str | None = None) -> "Job | Group":
    """The job or the group (a sweep) with this ID or unique prefix: job and group IDs share one
    form and one lookup (a prefix matching both is ambiguous).

    >>> nbjobs.lookup("8f3a2c")   # doctest: +SKIP
    <Group 8f3a2c1d 'train' 3/4 done: running>
    """
    kind, full = _store(home).resolve_any(id_or_prefix)
    if kind == "group":
        from ..sweeps import Group

        return Group(full, home)
    return Job(full, home)


def waiting_reasons(recs: Iterable[JobRecord], home: Path | str | None = None) -> dict[str, str]:
    """Why these queued jobs wait, for those whose concurrency key is at its limit: ``{id: text}``,
    e.g. ``queued: 1 of max 1 running for key nightly``.  One read for all their keys."""
    from ..job import limit_reason

    queued = [r for r in recs if r.state == State.QUEUED and r.concurrency_key]
    if not queued:
        return {}
    running = _store(home).running_per_key(r.concurrency_key for r in queued)
    out = {}
    for r in queued:
        n, limit = running.get(r.concurrency_key, 0), r.max_running or 1
        if n >= limit:
            out[r.id] = limit_reason(r.concurrency_key, n, limit)
    return out


def search(query: str, limit: int = 50, home: Path | str | None = None) -> list[JobRecord]:
    """Jobs whose name, tags, parameters, error or log tail match ``query``, best match first.

    ``query`` is an SQLite FTS5 query: words (all must match), ``"a phrase"``, ``prefix*``,
    ``OR``/``NOT``, or a column filter such as ``error_message: KeyError``.  The log tail is the
    last 4 KB of the latest attempt's log.  A query FTS5 cannot parse raises `BadInput`.

    >>> [r.name for r in nbjobs.search("KeyError")]  # doctest: +SKIP
    ['nightly-etl']
    """
    return _store(home).search(query, limit=limit)


def db(home: Path | str | None = None):
    """A `sqlite_utils.Database` on the home's database file, for ad-hoc analysis (its own
    connection; the schema is brought up to date first).  It loads sqlite-utils (and pandas, if
    this process has not loaded sqlite-utils yet).  Jobs submitted until now are in its search
    index (``db["jobs"].search(...)``); `nbjobs.search` also finds the ones submitted later.

    >>> db = nbjobs.db()                                           # doctest: +SKIP
    >>> db.query("SELECT state, count(*) AS n FROM jobs GROUP BY state")  # doctest: +SKIP
    """
    import sqlite_utils

    store = _store(home)
    store.index_pending()  # the index is brought up to date lazily (see `Store.index_pending`)
    database = sqlite_utils.Database(store.path)
    database.execute(f"PRAGMA busy_timeout={int(config.BUSY_TIMEOUT * 1000)}")
    return database


def own_kernel() -> str:
    """The kernelspec that runs this very Python (``python3`` when none does): where ``%%job`` runs
    cells by default, so a cell job sees the caller's own packages."""
    from ..kernels import kernel_for_python

    return kernel_for_python()


def workers(home: Path | str | None = None) -> list[dict[str, Any]]:
    """The live workers of a home (heartbeat within one lease): id, pid, host, executor, note, ..."""
    return _store(home).live_workers()


def summary(home: Path | str | None = None) -> dict[str, Any]:
    """Counts for a status header: ``counts`` (jobs per state), ``queue_depth``, ``running``,
    ``workers`` (alive) and ``dead_letters``.

    >>> nbjobs.summary()["queue_depth"]  # doctest: +SKIP
    3
    """
    return _store(home).summary()


def wait(id_or_ids: str | Job | Iterable[str | Job], timeout: float | None = None,
         home: Path | str | None = None, poll: float = 0.05) -> Job | list[Job]:
    """Block until the job(s) reach a final state; returns the Job (or the list of Jobs).  A group's
    ID (or `Group`) stands for its jobs; given alone, the `Group` is returned.

    Raises `WaitTimeout` after ``timeout`` seconds, naming what is still running.
    """
    timeout = check_wait_timeout(timeout)
    from ..sweeps import Group

    single = isinstance(id_or_ids, (str, Job, Group))
    items = [id_or_ids] if single else list(id_or_ids)
    found = [i if isinstance(i, (Job, Group)) else lookup(i, home) for i in items]
    if single and isinstance(found[0], Group):
        wait(found[0].jobs(), timeout=timeout, poll=poll)
        return found[0]
    handles = [j for f in found for j in (f.jobs() if isinstance(f, Group) else [f])]
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    pending = list(handles)
    while pending:
        pending = [j for j in pending if j.state not in TERMINAL]
        if not pending:
            break
        if deadline is not None and time.monotonic() >= deadline:
            names = ", ".join(f"{j.short_id} ({j.state.value})" for j in pending[:5])
            raise WaitTimeout(f"still not finished after {timeout:g} s: {names}; wait longer or check `nbjobs ls`")
        time.sleep(poll)
    return handles[0] if single else handles


def result(job_id: str, home: Path | str | None = None) -> dict[str, Any]:
    """Recorded outputs of a job as ``{name: value}``, each value the same kind of object it was
    recorded as (DataFrames, arrays and other objects are read from the run folder)."""
    from ..outputs import load

    store = _store(home)
    full = store.resolve(job_id)
    folder = config.run_dir(full, store.path.parent)
    return {row["name"]: load(row, folder) for row in store.outputs(full)}


def logs(job_id: str, attempt: int | None = None, home: Path | str | None = None) -> str:
    """Captured output (stdout/stderr) of the latest attempt, or of attempt number ``attempt``."""
    path = log_path(job_id, attempt, home)
    if path is None or not path.exists():
        return ""
    return path.read_text(errors="replace")


def log_path(job_id: str, attempt: int | None = None, home: Path | str | None = None) -> Path | None:
    store = _store(home)
    full = store.resolve(job_id)
    rows = store.attempts(full)
    if not rows:
        return None
    if attempt is None:
        row = rows[-1]
    else:
        match = [r for r in rows if r["number"] == attempt]
        if not match:
            raise BadInput(f"job {short_id(full)} has no attempt {attempt} (it has {len(rows)})")
        row = match[0]
    return Path(row["log_path"]) if row["log_path"] else config.run_dir(full, store.path.parent) / str(
        row["number"]) / "log.txt"

