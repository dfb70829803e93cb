"""Cron schedules through the API: add, list, show, pause, resume, remove, run now, backfill.  The
cron rules, slots and firing are `nbjobs.schedule`'s; this module checks arguments and reads.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from .. import wake
from ..errors import BadInput
from ..job import code_hash
from ..store import actor_name
from .checks import _check_int
from .handle import Job, _store
from .specs import _common, _flow, _notebook_spec, _options, _report_option
from .submitting import ensure_worker


def schedule_add(name: str, cron: str, notebook: str | os.PathLike | None = None,
                 parameters: dict[str, Any] | None = None, *, code: str | None = None, tz: str = "UTC",
                 misfire: str = "once", misfire_cap: int = 10, overlap: str = "skip", job_name: str | None = None,
                 kernel: str | None = None, cwd: str | os.PathLike | None = None, retries: int = 0,
                 timeout: float | None = None, priority: int = 0, tags: Sequence[str] | str | None = None,
                 cell_timeout: float | None = None, secrets: Sequence[str] | str | None = None,
                 retry_on: Sequence[str] | str | None = None, backoff: dict[str, Any] | None = None,
                 notify: str | None = None, notify_on: str | None = None, home: Path | str | None = None,
                 start_worker: bool = True, now: float | None = None, report: str | None = None) -> dict[str, Any]:
    """Add a cron schedule that submits ``notebook`` (or ``code``, a cell job) at each slot.

    ``cron``: 5 fields or an alias (``@daily``...), in the IANA zone ``tz`` (DST rules in
    `nbjobs.schedule`).  ``misfire`` (after downtime): ``skip``, ``once`` (default) or ``all`` (at
    most ``misfire_cap`` missed slots).  ``overlap`` (previous fire still active): ``skip``
    (default), ``queue`` or ``allow``.  Each fire is an ordinary job named ``job_name`` (default:
    the schedule's name) linked to the schedule.  Schedules fire while a worker of the home runs;
    a background worker is started (``start_worker=False`` to skip) and stays while schedules
    exist.  Invalid input raises `BadInput` and nothing is written.  Returns the schedule with its
    next three fire times (``next``).

    A fired job whose notebook has a ``parameters`` cell (a cell job always has one) gets the
    parameter ``nbjobs_scheduled_for``: its slot in ISO 8601 with the zone's offset
    (``2025-03-09T06:30:00+01:00``), so a nightly report knows which day it reports; past slots
    run with `schedule_backfill`.  ``report="html"`` renders each fired job's output notebook
    (see `submit`).

    >>> nbjobs.schedule_add("daily-report", "30 6 * * 1-5", "report.ipynb", {"n": 7},
    ...                     tz="Europe/Berlin")["next"]                       # doctest: +SKIP
    """
    from .. import schedule as sch

    name = sch.check_name(name)
    cron = sch.check_cron(cron)
    tz = sch.check_tz(tz)
    misfire = sch.check_policy("misfire", misfire, sch.MISFIRE_POLICIES)
    overlap = sch.check_policy("overlap", overlap, sch.OVERLAP_POLICIES)
    misfire_cap = _check_int("misfire_cap", misfire_cap, 1, 1000)
    if (notebook is None) == (code is None):
        raise BadInput("give a notebook or code= for the schedule's job (one of them)")
    if notebook is not None:
        spec = _notebook_spec(notebook, parameters, job_name or name, kernel, cwd, retries, timeout, priority, tags,
                              None, cell_timeout, secrets, retry_on, backoff)
    else:
        if not isinstance(code, str) or not code.strip():
            raise BadInput("code must be a non-empty string of Python source")
        spec = _common(job_name or name, retries, timeout, priority, tags, None, kernel, cwd, parameters)
        spec.update(kind="cell", source=code, code_hash=code_hash("cell", source=code),
                    options=_options(cell_timeout, secrets, retry_on, backoff))
        spec["kernel"] = spec["kernel"] or "python3"
    _flow(spec, home, None, False, notify, notify_on)
    _report_option(spec, report)
    try:
        sch.next_fire(cron, tz, time.time() if now is None else now)
    except Exception:  # noqa: croniter gives up on dates that never come (Feb 30)
        raise BadInput(f"cron expression {cron!r} never fires; check the day and month fields") from None
    store = _store(home)
    store.add_schedule(name, cron, tz, spec, misfire=misfire, misfire_cap=misfire_cap, overlap=overlap, now=now,
                       actor=actor_name("api"))
    if start_worker:
        ensure_worker(home)
    return schedule_show(name, home=home, now=now)


def _with_next(d: dict[str, Any], now: float | None, n: int = 3) -> dict[str, Any]:
    from .. import schedule as sch

    now = time.time() if now is None else now
    d["next"] = [] if d["paused"] else sch.next_fires(d["cron"], d["tz"], max(now, d["last_slot"]), n)
    d["next_local"] = [sch.fmt_slot(t, d["tz"]) for t in d["next"]]
    return d


def schedules(home: Path | str | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """Every schedule of the home with its next three fire times (``next``, ``next_local``).

    >>> [(s["name"], s["next_local"][0]) for s in nbjobs.schedules()]   # doctest: +SKIP
    [('daily-report', '2026-11-25 06:30 CET')]
    """
    return [_with_next(d, now) for d in _store(home).list_schedules()]


def schedule_show(name: str, home: Path | str | None = None, now: float | None = None) -> dict[str, Any]:
    """One schedule: its settings, next fire times, recent decisions (``events``: fired,
    misfire_*, overlap_skipped, paused...) and the jobs it fired most recently (``jobs``)."""
    store = _store(home)
    d = _with_next(store.get_schedule(name), now)
    d["events"] = store.schedule_events(name, 20)
    d["jobs"] = [e["job_id"] for e in d["events"] if e["job_id"]]
    return d


def schedule_pause(name: str, home: Path | str | None = None) -> dict[str, Any]:
    """Stop firing until `schedule_resume`; slots of the pause never fire (no misfire catch-up)."""
    _store(home).set_schedule_paused(name, True, actor=actor_name("api"))
    return schedule_show(name, home)


def schedule_resume(name: str, home: Path | str | None = None) -> dict[str, Any]:
    """Fire again from now on."""
    _store(home).set_schedule_paused(name, False, actor=actor_name("api"))
    return schedule_show(name, home)


def schedule_rm(name: str, home: Path | str | None = None) -> None:
    """Remove a schedule (the jobs it fired stay)."""
    _store(home).remove_schedule(name)


def schedule_run_now(name: str, home: Path | str | None = None, start_worker: bool = True) -> Job:
    """Submit one job of the schedule now, outside its slots; returns its handle.

    >>> nbjobs.schedule_run_now("daily-report").wait(600).result()   # doctest: +SKIP
    """
    from .. import schedule as sch

    job_id = sch.run_now(_store(home), name, actor_name("api"))
    if start_worker:
        ensure_worker(home)
    return Job(job_id, home)


def schedule_backfill(name: str, start: Any, end: Any, *, limit: int = 100, home: Path | str | None = None,
                      start_worker: bool = True, now: float | None = None) -> list[dict[str, Any]]:
    """Run the past slots of schedule ``name`` from ``start`` to ``end`` (both included), each as a
    job of its own with its slot time (``nbjobs_scheduled_for``, see `schedule_add`).  ``start`` and
    ``end``: ``"2025-03-01"`` (a whole day in the schedule's zone), an ISO 8601 time
    (``"2025-03-01T06:30"``, in the schedule's zone unless it has an offset) or epoch seconds.
    Idempotent: a slot that fired or was backfilled before keeps its job (``created`` False), so
    running the same backfill twice submits nothing new.  At most ``limit`` slots; an ``end`` in
    the future is refused.  Returns one dict per slot, oldest first: ``slot`` (epoch),
    ``scheduled_for`` (ISO 8601), ``job`` (its `Job`) and ``created``.

    >>> [(b["scheduled_for"], b["created"]) for b in
    ...  nbjobs.schedule_backfill("nightly", "2025-03-01", "2025-03-03")]        # doctest: +SKIP
    [('2025-03-01T02:30:00+01:00', True), ('2025-03-02T02:30:00+01:00', True), ('2025-03-03T02:30:00+01:00', True)]
    """
    from .. import schedule as sch

    store = _store(home)
    d = store.get_schedule(name)
    limit = _check_int("limit", limit, 1, 10_000)
    lo = sch.parse_when(start, d["tz"], "--from")
    hi = sch.parse_when(end, d["tz"], "--to", end=True)
    done = sch.backfill(store, name, lo, hi, actor_name("api"), now=now, limit=limit)
    if done:
        wake.poke(store.path)
        if start_worker:
            ensure_worker(home)
    return [{"slot": slot, "scheduled_for": sch.slot_iso(slot, d["tz"]), "job": Job(job_id, home),
             "created": created} for slot, job_id, created in done]

