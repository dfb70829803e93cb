"""Text for people, the same in a terminal and a notebook: times, durations, aligned tables, the
one-line receipt, the detail view of one job (``nbjobs show`` and ``%job show``/``status``) and
of a schedule.

Imports only `nbjobs.job` at load; what a detail view reads (the job's attempts, events and
outputs) comes through the public methods of `nbjobs.Job`.

>>> fmt_duration(7.4), fmt_duration(7.4, precise=True), fmt_duration(184), fmt_duration(None)
('7s', '7.4s', '3m04s', '-')
>>> print(table(("ID", "NAME"), [("8f3a2c1d", "train"), ("91bc04aa", "etl")]))
ID        NAME
8f3a2c1d  train
91bc04aa  etl
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from .job import JobRecord, State


# --- times and durations ------------------------------------------------------------------------------
def fmt_time(ts: float | None, now: float | None = None) -> str:
    """``14:03:07`` today, ``2024-05-01 14:03`` on another day, ``-`` for None.

    >>> fmt_time(None)
    '-'
    """
    if not ts:
        return "-"
    t = time.localtime(ts)
    today = time.localtime(time.time() if now is None else now)
    return time.strftime("%H:%M:%S" if t[:3] == today[:3] else "%Y-%m-%d %H:%M", t)


def fmt_duration(seconds: float | None, precise: bool = False) -> str:
    """``12s`` (``12.3s`` when ``precise``), ``3m04s``, ``2h05m``; ``-`` for None.

    >>> fmt_duration(7500), fmt_duration(-3)
    ('2h05m', '0s')
    """
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if precise else f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def elapsed(r: JobRecord, now: float | None = None) -> float | None:
    """Seconds since the job started (to its end once it ended); None before it starts."""
    if r.started_at is None:
        return None
    return (r.finished_at or (time.time() if now is None else now)) - r.started_at


def retry_in(r: JobRecord, now: float | None = None) -> str:
    """How long until a retrying job's next attempt (``in 4.2s``)."""
    return f"in {fmt_duration(max(0.0, r.run_at - (time.time() if now is None else now)), precise=True)}"


# --- tables -----------------------------------------------------------------------------------------------
def table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Rows under a heading, columns aligned by two spaces, no trailing blanks."""
    rows = [tuple(head), *(tuple(r) for r in rows)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def first_line(text: str | None, limit: int = 70) -> str:
    """The first line of ``text``, at most ``limit`` characters; ``""`` for none (the guard every
    view needs: a job's source or message may be empty)."""
    return ((text or "").strip().splitlines() or [""])[0][:limit]


def error_line(r: JobRecord) -> str | None:
    """``ValueError: bad rate`` for a job that did not succeed and has an error; else None."""
    if not r.error_type or r.state == State.SUCCEEDED:
        return None
    message = first_line(r.error_message, 10**6)
    text = f"{r.error_type}: {message}" if message else r.error_type
    return text if len(text) <= 300 else text[:297] + "..."


def state_text(r: JobRecord) -> str:
    """The STATE cell of ``nbjobs ls``: the state, why it ended, progress or when it retries."""
    out = r.state.value
    if r.reason and r.state.terminal and r.reason != r.state.value and r.state != State.SUCCEEDED:
        out += f" ({r.reason})"
    if r.state == State.RUNNING and r.progress_total:
        out += f" {r.progress_done}/{r.progress_total}"
    if r.state == State.RETRYING and r.run_at:
        out += f" ({retry_in(r)})"
    return out


def jobs_table(records: Sequence[JobRecord]) -> str:
    """The ``nbjobs ls`` table."""
    return table(("ID", "NAME", "STATE", "ATTEMPTS", "QUEUED", "STARTED", "DURATION"),
                 ((r.short_id, r.name[:30], state_text(r), f"{r.attempts}/{r.max_attempts}", fmt_time(r.submitted_at),
                   fmt_time(r.started_at), fmt_duration(elapsed(r), precise=True)) for r in records))


DEAD_LETTER_HEAD = ("ID", "NAME", "STATE", "REASON", "ATTEMPTS", "FINISHED", "LAST ERROR")


def dead_letter_rows(records: Sequence[JobRecord]) -> list[tuple[str, ...]]:
    """The cells of the dead-letter table (``nbjobs dlq``, ``%job dlq``), under `DEAD_LETTER_HEAD`."""
    out = []
    for r in records:
        err = f"{r.error_type}: {r.error_message}" if r.error_type else "-"
        out.append((r.short_id, r.name[:30], r.state.value, r.reason or "-", str(r.attempts),
                    fmt_time(r.finished_at), first_line(err) or "-"))
    return out


def dead_letters_table(records: Sequence[JobRecord]) -> str:
    """Dead letters as text; ``no dead letters`` when there are none."""
    return table(DEAD_LETTER_HEAD, dead_letter_rows(records)) if records else "no dead letters"


# --- one job ---------------------------------------------------------------------------------------------
def receipt_text(r: JobRecord, now: float | None = None) -> str:
    """The receipt as one line: ``8f3a2c1d train: running, 2/4 cells, 12s``.

    >>> receipt_text(JobRecord(id="8f3a2c1d" + "0" * 24, name="train", kind="cell", state=State.QUEUED))
    '8f3a2c1d train: queued'
    """
    parts = [r.state.value]
    if r.progress_total and (r.state == State.RUNNING or r.progress_done):
        parts.append(f"{r.progress_done}/{r.progress_total} cells")
    if r.started_at is not None:
        parts.append(fmt_duration(elapsed(r, now)))
    if r.retries:
        parts.append(f"attempt {r.attempts} of {r.max_attempts}")
    if r.cancel_requested and r.state == State.RUNNING:
        parts.append("cancel requested")
    if r.resources and r.state in (State.QUEUED, State.RETRYING, State.WAITING):
        parts.append(f"needs {fmt_resources(r.resources)}")
    elif r.state == State.RUNNING and r.reason == "placing":
        parts.append(f"waiting for a Dask worker with {fmt_resources(r.resources)}")
    err = error_line(r)
    return f"{r.short_id} {r.name}: " + ", ".join(parts) + (f" - {err}" if err else "")


def fmt_resources(resources: dict[str, float]) -> str:
    """``GPU=1, MEM=6.4e+10``: what a job needs, or what a Dask worker offers ("none").

    >>> fmt_resources({"GPU": 1.0, "MEM": 64e9})
    'GPU=1, MEM=6.4e+10'
    """
    return ", ".join(f"{k}={v:g}" for k, v in resources.items()) or "none"


def placement_text(r: JobRecord, workers: Sequence[dict[str, Any]]) -> str | None:
    """For a job that needs resources and is not running yet: whether a live worker offers them
    (``workers``: rows of `nbjobs.workers`, whose ``resources`` are their executors' offers), and
    if none does, what each offers; None otherwise.

    >>> r = JobRecord(id="8f3a2c1d" + "0" * 24, name="train", kind="cell", state=State.QUEUED, resources={"GPU": 1})
    >>> print(placement_text(r, [{"id": "w1", "executor": "local", "resources": None}]).split(";")[0])
    no live worker offers GPU=1 (worker w1, local executor: none)
    """
    from .policy import fits

    if not r.resources or r.state not in (State.QUEUED, State.RETRYING, State.WAITING):
        return None
    offers = {w["id"]: json.loads(w.get("resources") or "null") or [] for w in workers}
    if any(fits(r.resources, o) for o in offers.values()):
        return "a live worker offers them; the job runs when one of its places is free"
    needs = ",".join(f"{k}={v:g}" for k, v in r.resources.items())
    who = "; ".join(f"worker {w['id']}, {str(w.get('executor') or 'local').split('@')[0]} executor: "
                    + (" | ".join(sorted({fmt_resources(o) for o in offers[w['id']]})) or "none") for w in workers)
    return (f"no live worker offers {fmt_resources(r.resources)} ({who or 'no live worker'}); start a Dask worker "
            f'with them (dask worker ADDRESS --resources "{needs}") for an `nbjobs worker --executor dask`')


def names_and_types(values: dict[str, Any]) -> str:
    """``model (LinearRegression), score (float)``."""
    return ", ".join(f"{k} ({type(v).__name__})" for k, v in values.items())


def job_detail(job: Any) -> str:
    """Everything about one job, several lines: the receipt line, then what it runs, its state,
    parameters, inputs, attempts (infrastructure ones marked), error and traceback, outputs,
    dependencies, schedule, webhook deliveries and events.  ``nbjobs show`` and ``%job show``
    (``status``) print this."""
    from .policy import INFRA

    r = job.record
    state = f"state:      {r.state.value}" + (f" ({r.reason})" if r.reason else "")
    if r.cancel_requested and r.state == State.RUNNING:
        state += " - cancel requested"
    what = r.notebook if r.kind == "notebook" else first_line(r.source) + " ..."
    lines = [receipt_text(r), f"id:         {r.id}", f"name:       {r.name}", state,
             f"kind:       {r.kind}: {what}", f"kernel:     {r.kernel}", f"cwd:        {r.cwd}"]
    if r.parameters:
        lines.append(f"parameters: {json.dumps(r.parameters)}")
    ins = r.options.get("inputs") or []
    if ins:
        lines.append("inputs:     " + ", ".join(f"{i['name']} ({i.get('type_name')})" for i in ins))
    if r.options.get("outputs"):
        lines.append("--out:      " + ", ".join(r.options["outputs"]))
    if r.tags:
        lines.append(f"tags:       {', '.join(r.tags)}")
    if r.resources:
        from . import api

        lines.append(f"resources:  {fmt_resources(r.resources)} (Dask resources; runs only where a worker declared them)")
        placement = placement_text(r, api.workers(home=job.home))
        if placement:
            lines.append(f"placement:  {placement}")
    infra = f" ({r.infra_failures} lost to infrastructure, not charged to the job)" if r.infra_failures else ""
    lines += [f"priority:   {r.priority}", f"attempts:   {r.attempts} of {r.max_attempts}{infra}",
              f"submitted:  {fmt_time(r.submitted_at)} by {r.submitted_by}",
              f"started:    {fmt_time(r.started_at)}", f"finished:   {fmt_time(r.finished_at)}",
              f"duration:   {fmt_duration(elapsed(r), precise=True)}"]
    if r.progress_total:
        lines.append(f"progress:   {r.progress_done}/{r.progress_total} cells")
    if r.idem_key:
        lines.append(f"key:        {r.idem_key}")
    if r.output_path:
        lines.append(f"notebook:   {r.output_path}")
    if r.state == State.RETRYING and r.run_at:
        lines.append(f"next try:   {fmt_time(r.run_at)} ({retry_in(r)})")
    if r.options.get("secrets"):
        lines.append(f"secrets:    {', '.join(r.options['secrets'])} (names only; values are never stored)")
    if r.error_type:
        cell = f" (cell {r.error_cell})" if r.error_cell is not None else ""
        lines.append(f"error:      {r.error_type}: {r.error_message}{cell}")
    if r.error_traceback and r.state != State.SUCCEEDED:
        tb = r.error_traceback.rstrip().splitlines()
        lines += ["traceback:" + (" (last 40 lines)" if len(tb) > 40 else "")] + ["    " + t for t in tb[-40:]]
    if r.dead_letter:
        lines.append("dead letter: yes (`nbjobs retry` re-drives it, `nbjobs dlq ack` files it away)")
    elif r.acked_at and r.state in (State.FAILED, State.TIMED_OUT):
        lines.append(f"dead letter: acknowledged {fmt_time(r.acked_at)} (kept; `nbjobs retry` re-drives it)")
    attempts = job.attempts()
    if attempts:
        lines.append("attempt history:")
        for a in attempts:
            dur = fmt_duration(a["finished_at"] - a["started_at"], precise=True) if a["finished_at"] else "-"
            kernel = (f", kernel pid {a['kernel_pid']} ({'warm' if a.get('kernel_warm') else 'cold'})"
                      if a.get("kernel_pid") else "")
            lost = a["outcome"] in INFRA
            why = f"\n        {a['error_type']}: {a['error_message']}" if lost else ""
            lines.append(f"  #{a['number']}  {a['outcome']:<12} {fmt_time(a['started_at'])}  {dur:>7}  "
                         f"worker {a['worker_id']}{kernel}"
                         f"{' [infrastructure: re-queued, not charged]' if lost else ''}{why}")
    outs = job.recorded()
    if outs:
        lines.append("outputs:    " + ", ".join(f"{o['name']} ({o['type_name'] or o['kind']})" for o in outs))
    lines += _flow_lines(job, r)
    lines.append("events:")
    for e in job.events():
        lines.append(f"  {fmt_time(e['at'])}  {(e['from_state'] or '-'):>9} -> {e['to_state']:<9}  "
                     f"{e['reason'] or ''}  [{e['actor']}]")
    return "\n".join(lines)


def _flow_lines(job: Any, r: JobRecord) -> list[str]:
    """Dependencies, schedule and webhook deliveries of a job, for `job_detail`."""
    lines = []
    up, down = job.upstream(), job.downstream()
    if up:
        any_ending = " (any ending)" if r.options.get("after_any") else ""
        lines.append(f"after:      {', '.join(u[:8] for u in up)}{any_ending}")
    if down:
        lines.append(f"before:     {', '.join(d[:8] for d in down)}")
    if r.options.get("schedule"):
        lines.append(f"schedule:   {r.options['schedule']}" + (f" (slot {fmt_time(r.options['slot'])})"
                                                               if r.options.get("slot") else " (run-now)"))
    deliveries = job.deliveries()
    if deliveries:
        from .notify import display_url

        lines.append("deliveries:")
        for d in deliveries:
            last = f"HTTP {d['last_status']}" if d["last_status"] else ""
            err = f"  last error: {d['last_error']}" if d["last_error"] and d["state"] != "delivered" else ""
            lines.append(f"  {d['id'][:8]}  job.{d['event']:<10} {d['state']:<9} {d['attempts']} attempt(s) "
                         f"{last}  {display_url(d['url'])}{err}")
    return lines


def summary_text(home: Path | str | None = None) -> str:
    """One line of counts per state and the live workers of a home (and what a worker notes)."""
    from . import api, config

    counts = {k: v for k, v in api.summary(home=home)["counts"].items() if v}
    workers = api.workers(home=home)
    jobs = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no jobs"
    who = (f"{len(workers)} live worker(s) (pid {', '.join(str(w['pid']) for w in workers)})" if workers
           else "no live worker (a submit starts one)")
    notes = "".join(f"\n  {w['id']}: {w['note']}" for w in workers if w.get("note"))
    return f"{Path(home) if home else config.home()}: {jobs}; {who}{notes}"


# --- schedules ---------------------------------------------------------------------------------------------
def _fmt_local(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def schedule_text(d: dict[str, Any]) -> str:
    """One schedule (as `nbjobs.schedule_show` returns it): settings, next runs, recent decisions."""
    spec = d["spec"]
    what = spec.get("notebook") or first_line(spec.get("source"), 60)
    lines = [f"name:       {d['name']}" + ("  (paused)" if d["paused"] else ""),
             f"cron:       {d['cron']}  ({d['tz']})",
             f"runs:       {spec['kind']}: {what}"]
    if spec.get("parameters"):
        lines.append(f"parameters: {json.dumps(spec['parameters'])}")
    lines += [f"misfire:    {d['misfire']} (cap {d['misfire_cap']})    overlap: {d['overlap']}",
              f"fired:      {d['fires']} job(s); last job {(d['last_job_id'] or '-')[:8]}",
              "next:       " + (", ".join(d["next_local"]) or "- (paused)")]
    if d.get("events"):
        lines.append("recent decisions:")
        for e in d["events"][:10]:
            slot = f" slot {_fmt_local(e['slot'])}" if e["slot"] else ""
            job = f" job {e['job_id'][:8]}" if e["job_id"] else ""
            lines.append(f"  {_fmt_local(e['at'])}  {e['action']:<17}{slot}{job}  {e['detail'] or ''}".rstrip())
    return "\n".join(lines)


def schedules_table(rows: list[dict[str, Any]]) -> str:
    """The ``nbjobs schedule ls`` table (schedules as `nbjobs.schedules` returns them)."""
    return table(("NAME", "CRON", "TZ", "STATE", "FIRED", "NEXT RUNS"),
                 ((d["name"], d["cron"], d["tz"], "paused" if d["paused"] else "active", str(d["fires"]),
                   ", ".join(d.get("next_local") or []) or "-") for d in rows))


__all__ = ["fmt_time", "fmt_duration", "elapsed", "table", "first_line", "error_line", "state_text", "jobs_table",
           "dead_letter_rows", "dead_letters_table", "receipt_text", "job_detail", "summary_text", "names_and_types",
           "schedule_text", "schedules_table"]
