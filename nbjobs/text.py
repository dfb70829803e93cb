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
    """Seconds the job's current (or last) attempt has run the job's code: from its first cell of
    the job's own code to its end, or to ``now`` while it runs.  None before that: queued, in
    backoff, or starting (a worker and a kernel getting ready are not the job's time).

    >>> r = JobRecord(id="a" * 32, name="x", kind="cell", state=State.RUNNING, started_at=5.0, began_at=8.0)
    >>> elapsed(r, now=10.0), elapsed(JobRecord(id="a" * 32, name="x", kind="cell", state=State.RUNNING), now=10.0)
    (2.0, None)
    """
    if r.began_at is None:
        return None
    if r.state == State.RUNNING:
        return (time.time() if now is None else now) - r.began_at
    return None if r.finished_at is None else r.finished_at - r.began_at


def wait_reason(r: JobRecord, summary: dict[str, Any] | None = None, now: float | None = None,
                upstream: Sequence[tuple[str, str]] = (), limit: str = "") -> str:
    """Why a job is not running its code yet, in a few words; ``""`` when it is, or has ended.

    ``summary`` is the home's `nbjobs.summary` (live workers, their free slots, running jobs);
    ``upstream``: ``(id, state)`` of the jobs a waiting job runs after; ``limit``: a queued job's
    concurrency key at its limit (`nbjobs.job.limit_reason`).  One place for every reason, so
    the receipt, the panel and ``nbjobs show`` say the same.

    >>> q = JobRecord(id="a" * 32, name="x", kind="cell", state=State.QUEUED, run_at=0.0)
    >>> wait_reason(q, {"workers": 0, "starting": 0, "slots": 0, "running": 0})
    'no worker alive yet: a submit from Python starts one in a second or two; else run `nbjobs worker`'
    >>> wait_reason(q, {"workers": 1, "starting": 0, "slots": 1, "running": 1})
    'queued behind 1 running (concurrency 1)'
    >>> wait_reason(JobRecord(id="a" * 32, name="x", kind="cell", state=State.RUNNING))
    'starting: a kernel is getting ready'
    """
    now = time.time() if now is None else now
    if r.state == State.RUNNING:
        if r.began_at is not None:
            return ""
        if r.reason == "placing":  # Dask holds the claimed attempt until a worker with its resources is free
            return f"waiting for a Dask worker with {fmt_resources(r.resources)}"
        return "starting: a kernel is getting ready"
    if r.state == State.RETRYING:
        return f"backoff until {fmt_time(r.run_at, now)} ({retry_in(r, now)})" if r.run_at else "retrying"
    if r.state == State.WAITING:
        pending = [f"{i[:8]} ({st})" for i, st in upstream if st != State.SUCCEEDED.value]
        return "waiting on " + (", ".join(pending) if pending else "the jobs it runs after")
    if r.state != State.QUEUED:
        return ""
    if r.run_at and r.run_at > now + 0.5:
        return f"not before {fmt_time(r.run_at, now)}"
    if limit:
        return limit
    if summary is None:
        return ""
    if not summary.get("workers"):
        return "no worker alive yet: a submit from Python starts one in a second or two; else run `nbjobs worker`"
    slots = summary.get("slots", 0)
    if not slots:
        if summary.get("starting"):
            return "starting a worker"
        notes = summary.get("worker_notes") or []
        return f"no worker is claiming: {notes[0]}" if notes else "no worker is claiming"
    running = summary.get("running", 0)
    if running >= slots:
        return f"queued behind {running} running (concurrency {slots})"
    return ""


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
    if r.state == State.RUNNING and r.slow:
        out += " (slow)"
    if r.state == State.RETRYING and r.run_at:
        out += f" ({retry_in(r)})"
    return out


def jobs_table(records: Sequence[JobRecord]) -> str:
    """The ``nbjobs ls`` table."""
    return table(("ID", "NAME", "STATE", "ATTEMPTS", "QUEUED", "STARTED", "DURATION"),
                 ((r.short_id, r.name[:30], state_text(r), r.attempt_text, fmt_time(r.submitted_at),
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
    took = elapsed(r, now)
    if took is not None:
        parts.append(fmt_duration(took))
    if r.attempts > 1 or r.retries:
        parts.append(f"attempt {r.attempt_text}")
    if r.cancel_requested and r.state == State.RUNNING:
        parts.append("cancel requested")
    if r.resources and r.state in (State.QUEUED, State.RETRYING, State.WAITING):
        parts.append(f"needs {fmt_resources(r.resources)}")
    elif r.state == State.RUNNING and r.reason == "placing":
        parts.append(f"waiting for a Dask worker with {fmt_resources(r.resources)}")
    err = error_line(r)
    return f"{r.short_id} {r.name}: " + ", ".join(parts) + (f" - {err}" if err else "")


def slow_text(r: JobRecord) -> str:
    """Why a run is flagged slow: ``running past 6.0s (2x the p95 of its last successes), flagged 14:03:07``."""
    from .policy import SLOW_FACTOR, SLOW_QUANTILE

    when = "running" if r.state == State.RUNNING else "ran"
    return (f"{when} past {fmt_duration(r.slow_after, precise=True)} ({SLOW_FACTOR:g}x the p{SLOW_QUANTILE * 100:g} "
            f"of its last successes), flagged {fmt_time(r.slow_at)}")


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
    why = job.wait_reason(r)
    if why:
        state += f" - {why}"
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
    lines += [f"priority:   {r.priority}", f"attempt:    {r.attempt_text}{infra}",
              f"submitted:  {fmt_time(r.submitted_at)} by {r.submitted_by}",
              f"started:    {fmt_time(r.started_at)}", f"finished:   {fmt_time(r.finished_at)}",
              f"runtime:    {fmt_duration(elapsed(r), precise=True)} (the last attempt, from its first cell)"]
    if r.finished_at:
        lines.append(f"total:      {fmt_duration(r.finished_at - r.submitted_at, precise=True)} (submit to end)")
    if r.progress_total:
        lines.append(f"progress:   {r.progress_done}/{r.progress_total} cells")
    if r.group_id:
        lines.append(f"group:      {r.group_id[:8]} (`nbjobs show {r.group_id[:8]}`)")
    if r.concurrency_key and not r.concurrency_key.startswith("group:"):
        lines.append(f"limit:      at most {r.max_running or 1} running with key {r.concurrency_key}")
    elif r.concurrency_key:
        lines.append(f"limit:      at most {r.max_running or 1} running in its group (--max-parallel)")
    if r.idem_key:
        lines.append(f"key:        {r.idem_key}")
    if r.output_path:
        lines.append(f"output:     {r.output_path}")
    if r.report_path:
        lines.append(f"report:     {r.report_path}")
    elif r.options.get("report") and r.state == State.SUCCEEDED:
        lines.append(f"report:     not rendered yet (its worker renders it; `nbjobs report {r.short_id}` does it now)")
    if r.slow:
        lines.append(f"slow:       {slow_text(r)}")
    if r.state == State.RETRYING and r.run_at:
        lines.append(f"next try:   {fmt_time(r.run_at)} ({retry_in(r)})")
    if r.options.get("secrets"):
        lines.append(f"secrets:    {', '.join(r.options['secrets'])} (names only; values are never stored)")
    if r.error_type:
        number = user_cell_number(r.output_path, r.error_cell) if r.kind == "notebook" else None
        cell = f" (cell {number} of the notebook)" if number else ""
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
            kernel = f", kernel pid {a['kernel_pid']} ({a.get('kernel_path') or 'cold'})" if a.get("kernel_pid") else ""
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


def user_cell_number(output_path: str | None, index: int | None) -> int | None:
    """The number (from 1, markdown cells included, as a user counts them in their notebook) of
    the cell at ``index`` of the executed notebook, whose cells papermill shifted by its injected
    parameters cell (and marked after a failure).  None when the output notebook is gone."""
    if output_path is None or index is None:
        return None
    try:
        cells = json.loads(Path(output_path).read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError):
        return None
    tags = [set(c.get("metadata", {}).get("tags", [])) for c in cells]
    ran = [t for t in tags if "papermill-error-cell-tag" not in t]  # the notebook as it was executed
    if not 0 <= index < len(ran):
        return None
    return 1 + sum("injected-parameters" not in t for t in ran[:index])


def worker_banner(w: Any) -> str:
    """The first line an explicit worker prints: who it is, where it runs jobs, and how their kernels
    come (decided at its start).

    >>> class W: id, home, concurrency = "w1", "/h", 2
    >>> class E: name, mode, preload, pool = "local", "fork", ["pandas"], 2
    >>> W.executor = E
    >>> worker_banner(W)
    'nbjobs worker w1: home /h, executor local, concurrency 2, kernels fork (preload pandas; 2 warm for other kernelspecs); Ctrl-C stops it'
    """
    ex = w.executor
    where = ex.name + (f" (dashboard {ex.dashboard_link})" if getattr(ex, "dashboard_link", None) else "")
    mode, warm, preload = getattr(ex, "mode", None), getattr(ex, "pool", None), getattr(ex, "preload", None) or []
    how = []
    if preload:
        how.append("preload " + ",".join(preload))
    if mode == "fork" and warm is not None:
        how.append(f"{warm} warm for other kernelspecs")
    elif mode == "pool" and warm is not None:
        how.append(f"{warm} warm kernel(s)")
    kernels = f", kernels {mode}" + (f" ({'; '.join(how)})" if how else "") if mode else ""
    return f"nbjobs worker {w.id}: home {w.home}, executor {where}, concurrency {w.concurrency}{kernels}; Ctrl-C stops it"


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


# --- groups (sweeps) ---------------------------------------------------------------------------------------
def cancel_line(item: Any) -> str:
    """What ``nbjobs cancel`` prints for a job, or for a group after its jobs were asked to stop."""
    if hasattr(item, "records"):  # a group
        recs = item.records()
        stopping = sum(1 for r in recs if r.state == State.RUNNING and r.cancel_requested)
        cancelled = sum(1 for r in recs if r.state == State.CANCELLED)
        ended = len(recs) - stopping - cancelled
        return (f"group {item.short_id}: {cancelled} cancelled, {stopping} stopping (cancel requested)"
                + (f", {ended} ended otherwise" if ended else ""))
    state = item.state
    return f"{item.short_id}: {'cancelled' if state == State.CANCELLED else 'cancel requested (stopping)'}"


def value_text(value: Any, limit: int = 24) -> str:
    """A parameter value in a table cell (JSON for lists and mappings), at most ``limit`` characters."""
    out = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return out if len(out) <= limit else out[:limit - 3] + "..."


def group_counts_text(states: dict[str, int]) -> str:
    """``2 succeeded, 1 running, 1 queued`` (the active states first)."""
    order = [s.value for s in (State.RUNNING, State.RETRYING, State.QUEUED, State.WAITING, State.SUCCEEDED,
                               State.FAILED, State.TIMED_OUT, State.CANCELLED)]
    return ", ".join(f"{states[s]} {s}" for s in order if states.get(s)) or "no jobs"


def group_detail(group: Any) -> str:
    """A group (a sweep) in detail: name, what it sweeps, state and progress, and one line per job
    with its parameters, state, attempts, duration and note (error, or why it waits).  ``nbjobs show
    GROUP`` and ``%job show GROUP`` print this."""
    from .api import waiting_reasons

    g = group.record
    recs = group.records()
    counts = group.counts()
    done = sum(n for st, n in counts["states"].items() if State(st).terminal)
    names = g["params"]
    ended = counts["started_at"] and counts["finished_at"] and done == counts["total"]
    span = counts["finished_at"] - counts["started_at"] if ended else None
    lines = [f"{group.short_id} {g['name']}: {group.state.value}, {done}/{counts['total']} jobs ended",
             f"id:         {group.id}", f"name:       {g['name']}",
             f"kind:       {g['kind']} of {g['size']} job(s) over {', '.join(names) or '-'}"
             + (" (zipped)" if g["options"].get("zip") else " (every combination)"),
             f"state:      {group.state.value} ({group_counts_text(counts['states'])})",
             f"created:    {fmt_time(g['created_at'])} by {g['created_by']}",
             f"started:    {fmt_time(counts['started_at'])}", f"duration:   {fmt_duration(span, precise=True)}"]
    if g["options"].get("max_parallel"):
        lines.append(f"parallel:   at most {g['options']['max_parallel']} running at once (--max-parallel)")
    notes = waiting_reasons(recs, home=group.home)
    head = ("ID", *(n.upper() for n in names), "STATE", "ATTEMPTS", "DURATION", "NOTE")
    rows = [(r.short_id, *(value_text(r.parameters.get(n)) for n in names), state_text(r),
             r.attempt_text, fmt_duration(elapsed(r), precise=True),
             notes.get(r.id) or first_line(error_line(r) or "", 60)) for r in recs]
    lines += ["jobs:"] + ["  " + line for line in table(head, rows).splitlines()]
    lines.append(f"results:    nbjobs result {group.short_id} (in Python: nbjobs.group('{group.short_id}').results())")
    return "\n".join(lines)


def group_logs(group: Any, attempt: int | None = None) -> str:
    """Each job's log (latest attempt, or ``attempt``), under a header naming the job and its parameters."""
    from .api import logs

    out = []
    for r in group.records():
        params = ", ".join(f"{k}={value_text(v)}" for k, v in r.parameters.items())
        try:
            body = logs(r.id, attempt=attempt, home=group.home)
        except Exception as exc:  # noqa: a job without that attempt: say so, go on
            body = f"({exc})\n"
        out.append(f"--- job {r.short_id} ({params}): {r.state.value} ---\n" + (body or "(no output)\n"))
    return "".join(s if s.endswith("\n") else s + "\n" for s in out)


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


# --- two runs compared (nbjobs.compare) ---------------------------------------------------------------------
def fmt_value(v: Any, limit: int = 40) -> str:
    """A recorded value in one short cell (``{"$type", "repr"}`` stand-ins as their repr).

    >>> fmt_value(0.123456789), fmt_value({"$type": "DataFrame", "repr": "   x\\n0  1"})
    ('0.123457', 'DataFrame: x 0 1')
    """
    if isinstance(v, dict) and set(v) == {"$type", "repr"}:
        text = f"{v['$type']}: {' '.join(v['repr'].split())}"
    elif isinstance(v, float):
        text = f"{v:.6g}"
    else:
        text = json.dumps(v) if not isinstance(v, str) else v
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def fmt_delta(d: float | None, a: Any = None) -> str:
    """``+29`` or ``-0.1 (-20%)``: a difference, relative to ``a`` when that is a non-zero number.

    >>> fmt_delta(29, 91), fmt_delta(-0.1, 0.5), fmt_delta(None)
    ('+29 (+31.9%)', '-0.1 (-20%)', '')
    """
    if d is None:
        return ""
    text = f"{d:+.6g}"
    if isinstance(a, (int, float)) and not isinstance(a, bool) and a:
        text += f" ({d / abs(a) * 100:+.3g}%)"
    return text


def _side_line(label: str, s: dict[str, Any]) -> str:
    return (f"{label}: {s['short_id']}  {s['name']}  {s['state']}  attempt {s['attempt']}  "
            f"{fmt_duration(s['runtime_s'], precise=True)}")


def comparison_text(d: dict[str, Any]) -> str:
    """Two runs compared (`nbjobs.comparison.Comparison.to_dict`) as text: ``nbjobs compare A B``."""
    lines = [_side_line("a", d["a"]), _side_line("b", d["b"])]
    differ = d["parameters"]["differ"]
    same = d["parameters"]["same"]
    if differ:
        lines.append("parameters that differ:")
        lines += ["  " + line for line in table(("NAME", "A", "B"), (
            (k, fmt_value(v["a"]) if "a" in v["in"] else "-", fmt_value(v["b"]) if "b" in v["in"] else "-")
            for k, v in differ.items())).splitlines()]
        if same:
            lines.append(f"  (the same: {', '.join(same)})")
    else:
        lines.append(f"parameters: the same ({', '.join(same) or 'none'})")
    outs = d["outputs"]
    if outs:
        lines.append("outputs:")
        lines += ["  " + line for line in table(("NAME", "A", "B", "DELTA", ""), (
            (k, fmt_value(v["a"]) if "a" in v["in"] else "-", fmt_value(v["b"]) if "b" in v["in"] else "-",
             fmt_delta(v["delta"], v["a"]), "same" if v["same"] else "differs" if len(v["in"]) == 2 else "")
            for k, v in outs.items())).splitlines()]
    else:
        lines.append("outputs: none recorded")
    c = d["code"]
    lines.append(f"code:       the same ({c['a']})" if c["same"] else f"code:       differs: {c['a']} | {c['b']}")
    vers = d["versions"]
    diff_v = {k: v for k, v in vers.items() if not v["same"]}
    same_v = ", ".join(f"{k} {v['a']}" for k, v in vers.items() if v["same"] and v["a"] is not None)
    if diff_v:
        lines.append("versions:   differ: " + ", ".join(f"{k} {v['a']} | {v['b']}" for k, v in diff_v.items()))
        if same_v:
            lines.append(f"            the same: {same_v}")
    else:
        lines.append(f"versions:   the same ({same_v})")
    if d["cells"]:
        lines.append("cells (seconds):")
        lines += ["  " + line for line in table(("CELL", "A", "B", "DELTA", "SOURCE"), (
            (str(x["cell"]), "-" if x["a_s"] is None else f"{x['a_s']:.3f}", "-" if x["b_s"] is None else f"{x['b_s']:.3f}",
             "" if x["delta_s"] is None else f"{x['delta_s']:+.3f}", x["source"]) for x in d["cells"])).splitlines()]
    else:
        lines.append("cells:      (an output notebook is missing)")
    first = d["first_difference"]
    if first:
        lines.append(f"first text difference: cell {first['cell']}  {first['source']}")
        for label in ("a", "b"):
            text = first[label]
            body = "(no such cell)" if text is None else (text or "(no text output)")
            shown = body.splitlines() or [""]
            lines.append(f"  {label}: {shown[0]}")
            lines += [f"     {t}" for t in shown[1:8]]
    elif d["cells"]:
        lines.append("first text difference: none (every cell printed the same)")
    for label in ("a", "b"):
        f = d["failed"].get(label)
        if f:
            where = f" at cell {f['cell']} ({f['source']})" if f["cell"] is not None and f["source"] else (
                f" at cell {f['cell']}" if f["cell"] is not None else "")
            err = f": {f['error_type']}: {first_line(f['error_message'], 200)}" if f["error_type"] else ""
            lines.append(f"{label} {f['state']}{where}{err}")
    if not any(d["failed"].values()):
        lines.append("failed:     neither")
    return "\n".join(lines)


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



def backfill_table(rows: list[dict[str, Any]]) -> str:
    """The ``nbjobs schedule backfill`` table (rows as `nbjobs.schedule_backfill` returns them)."""
    if not rows:
        return "no slot of the schedule lies in that range"
    return table(("SLOT", "JOB", ""), ((b["scheduled_for"], b["job"].short_id, "submitted" if b["created"] else
                                       "exists (ran or runs already)") for b in rows))


__all__ = ["fmt_time", "fmt_duration", "elapsed", "table", "first_line", "error_line", "state_text", "jobs_table",
           "dead_letter_rows", "dead_letters_table", "receipt_text", "job_detail", "summary_text", "names_and_types",
           "schedule_text", "schedules_table", "group_detail", "group_logs", "cancel_line", "value_text",
           "group_counts_text", "slow_text", "comparison_text", "fmt_value", "fmt_delta", "backfill_table"]
