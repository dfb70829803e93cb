"""Views of jobs in a notebook: the live **panel**, the **receipt** of one job, and job tables.

``nbjobs.panel()`` (or ``%job panel``) shows the recent jobs of a home - submitted from this
notebook, another notebook, the CLI, anywhere - as a table that keeps itself current with no cell
re-run: a header (counts by state, queue depth, running, live workers, dead letters), one row per
job (short ID, name, kind, state badge, progress bar, attempt n of m, queued and started times,
elapsed or duration, the last log line or the error) with actions (cancel, retry, logs, pull,
open the output notebook), and filters (state, name, tag, limit).  A ``%%job`` cell's value shows
as a **receipt**: the same row component for one job.

>>> import nbjobs
>>> nbjobs.panel(state="failed", limit=50)   # doctest: +SKIP

How the module is layered, so most of it is testable without a browser:

1. **View model** (pure): `row_view` turns a `JobRecord` into a `RowView` of display strings,
   `row_render` into the cells and action flags of a row, `diff_rows` compares two renders, and
   `PanelModel` keeps the filtered, newest-first list of records current from changed rows.
2. **Widget layer**: `RowWidgets` (one row's ipywidgets) applies a diff, touching only the widgets
   whose value changed; `PanelView` (grid + header + filters) and `ReceiptView` (one row) hold
   them.  ipywidgets is imported only when a live view is first built.
3. **The updater thread**: ONE daemon thread per process polls each home's SQLite about twice a
   second: ``PRAGMA data_version`` first (free; changes only when another connection committed),
   then the IDs of rows updated since the last poll (``Store.changed_since``: an index-only read),
   then only those rows (``Store.get_many``).  Views get the changed records and touch only the
   widgets whose text changed.  The thread only assigns widget traits (ipykernel >= 7.1 publishes
   them in order, also while a cell blocks the kernel); it never prints or displays.  It stops when
   no live view is left: a view leaves when it is closed (``widget.close()``, the panel's own close
   button), or when the front end removed every view of it (the cell's output was cleared or the
   notebook closed: ipywidgets' ``_view_count`` drops back to 0); a view that no front end ever
   rendered (papermill, a console) stays live until its jobs have ended plus `DISPLAY_GRACE`.

Static forms (``text/plain``, ``text/html``) of `Job`, `JobList` and `Panel` come from the same
view model, for terminals, nbconvert and GitHub.

>>> from nbjobs.job import JobRecord, State
>>> receipt_text(JobRecord(id="8f3a2c1d" + "0" * 24, name="train", kind="cell", state=State.QUEUED))
'8f3a2c1d train: queued'
"""
from __future__ import annotations

import fnmatch
import html
import json
import os
import re
import sys
import threading
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import quote

from .errors import BadInput, NbjobsError
from .job import ACTIVE, RETRYABLE, TERMINAL, JobRecord, State

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: seconds between two ticks of the updater thread
INTERVAL = 0.5
#: a row's ``updated_at`` is stamped before its transaction commits: rows updated this many seconds
#: before the newest change seen are checked again, so a slow commit is not missed
SLACK = 5.0
#: views re-read their rows in full at most this often (only if something changed): catches rows
#: removed by retention and anything the change check could not see
RESYNC = 10.0
#: the header's counts are re-read at most once a second after a change, and every 5 s regardless
#: (a worker that dies commits nothing; its heartbeat just gets old)
SUMMARY_MIN, SUMMARY_EVERY = 1.0, 5.0
#: a view no front end has rendered stays live this long after its jobs ended
DISPLAY_GRACE = 600.0
#: more changed rows than this in one tick: views re-read in full instead
MAX_FRESH = 500
#: lines of log shown by the "logs" action
LOG_LINES = 40
DEFAULT_LIMIT = 20
MAX_LIMIT = 500

_COLORS = {
    State.WAITING: "#6e7781", State.QUEUED: "#6e7781", State.RUNNING: "#0969da", State.RETRYING: "#bf8700",
    State.SUCCEEDED: "#1a7f37", State.FAILED: "#cf222e", State.TIMED_OUT: "#cf222e", State.CANCELLED: "#6e7781",
}
_TICKING = (State.RUNNING, State.RETRYING)


# --- formatting -------------------------------------------------------------------------------------
def fmt_duration(seconds: float | None) -> str:
    """``12s``, ``3m04s``, ``2h05m``; ``-`` for None.

    >>> fmt_duration(7.4), fmt_duration(184), fmt_duration(7500), fmt_duration(None)
    ('7s', '3m04s', '2h05m', '-')
    """
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


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


def elapsed(r: JobRecord, now: float | None = None) -> float | None:
    """Seconds since the job started (to its end once it ended); None before it starts."""
    if r.started_at is None:
        return None
    return (r.finished_at or (time.time() if now is None else now)) - r.started_at


def _record(job_or_record: Any) -> JobRecord:
    return job_or_record if isinstance(job_or_record, JobRecord) else job_or_record.record


def _error(r: JobRecord) -> str | None:
    if not r.error_type or r.state == State.SUCCEEDED:
        return None
    message = (r.error_message or "").strip().splitlines()
    text = f"{r.error_type}: {message[0]}" if message else r.error_type
    return text if len(text) <= 300 else text[:297] + "..."


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: lines the job's kernel process logs itself (e.g. ipykernel's TCP warning), not the job's output
_KERNEL_LOG = re.compile(r"^\[(IPKernelApp|KernelApp|ZMQTerminalIPythonApp)\] ")


# --- view model: one row --------------------------------------------------------------------------
@dataclass(frozen=True)
class RowView:
    """What a row (or a receipt) shows of one job, as display strings.  Pure data: `row_view`
    makes it from a record, the clock and the last log line.

    >>> from nbjobs.job import JobRecord, State
    >>> v = row_view(JobRecord(id="ab" * 16, name="train", kind="cell", state=State.RUNNING, started_at=100.0,
    ...                        progress_done=2, progress_total=4, retries=2, attempts=1), now=112.0)
    >>> v.progress, v.attempt, v.elapsed, v.ticking
    ('2/4', '1 of 3', '12s', True)
    """

    id: str
    name: str
    kind: str
    state: str
    done: int
    total: int
    attempt: str
    queued: str
    started: str
    elapsed: str
    ticking: bool
    note: str
    note_is_error: bool
    cancel_requested: bool
    output_path: str | None

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def progress(self) -> str:
        return f"{self.done}/{self.total}" if self.total else "-"

    @property
    def actions(self) -> dict[str, bool]:
        """Which actions make sense now (the others are shown disabled)."""
        state = State(self.state)
        return {"cancel": state in ACTIVE and not self.cancel_requested, "retry": state in RETRYABLE,
                "logs": self.started != "-", "pull": state == State.SUCCEEDED}


def row_view(r: JobRecord, now: float | None = None, last_line: str = "") -> RowView:
    """The `RowView` of record ``r`` at time ``now``; ``last_line`` is the log's last line.

    The note is the error of a job that did not succeed, else "cancel requested" while a cancel is
    pending, else the last log line, else the reason of its last transition (e.g. "retried").
    """
    now = time.time() if now is None else now
    err = _error(r)
    if err:
        note = err
    elif r.cancel_requested and r.state == State.RUNNING:
        note = "cancel requested"
    else:
        note = last_line or (r.reason if r.reason and r.reason != r.state.value else "")
    ticking = r.state in _TICKING and r.started_at is not None
    return RowView(
        id=r.id, name=r.name, kind=r.kind, state=r.state.value, done=r.progress_done, total=r.progress_total,
        attempt=f"{r.attempts} of {r.max_attempts}", queued=fmt_time(r.submitted_at, now),
        started=fmt_time(r.started_at, now), elapsed=fmt_duration(elapsed(r, now)), ticking=ticking,
        note=note, note_is_error=bool(err), cancel_requested=bool(r.cancel_requested),
        output_path=r.output_path)


#: the panel's columns, in order, with their headings
COLUMNS: dict[str, str] = {
    "id": "ID", "name": "name", "kind": "kind", "state": "state", "progress": "cells", "attempt": "attempt",
    "queued": "queued", "started": "started", "elapsed": "elapsed", "note": "last line / error"}
#: the receipt's columns (the same cells, fewer of them)
RECEIPT_COLUMNS = ("state", "name", "id", "kind", "progress", "attempt", "elapsed", "note")
ACTIONS = ("cancel", "retry", "logs", "pull")


def badge_html(state: str) -> str:
    """The coloured state badge.

    >>> badge_html("failed")[:40]
    '<span class="nbjobs-badge" data-state="f'
    """
    color = _COLORS.get(State(state), "#6e7781")
    return (f'<span class="nbjobs-badge" data-state="{state}" style="background:{color};color:#fff;'
            f'border-radius:3px;padding:1px 6px;font-weight:600;font-size:11px">{html.escape(state)}</span>')


def _ellipsis(text: str, style: str = "") -> str:
    t = html.escape(text)
    return (f'<span title="{t}" style="display:block;overflow:hidden;text-overflow:ellipsis;'
            f'white-space:nowrap;{style}">{t}</span>')


def cell_html(v: RowView, column: str) -> str:
    """The HTML of one cell of a row (the widget layer puts each in its own widget).

    >>> v = row_view(JobRecord(id="ab" * 16, name="a<b", kind="cell", state=State.QUEUED))
    >>> cell_html(v, "name")
    '<span title="a&lt;b" style="display:block;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;">a&lt;b</span>'
    """
    if column == "id":
        return (f'<code class="nbjobs-id" title="{v.id} (click to select, then copy)" '
                f'style="user-select:all;cursor:text">{v.short_id}</code>')
    if column == "name":
        return _ellipsis(v.name)
    if column == "state":
        return badge_html(v.state)
    if column == "progress":
        if not v.total:
            return '<span style="color:#6e7781">-</span>'
        return (f'<progress class="nbjobs-progress" max="{v.total}" value="{min(v.done, v.total)}" '
                f'style="width:48px;height:10px;vertical-align:middle"></progress> '
                f'<span class="nbjobs-progress-text">{v.done}/{v.total}</span>')
    if column == "note":
        color = "#cf222e" if v.note_is_error else "#57606a"
        return _ellipsis(v.note, f"color:{color}")
    return html.escape(str(getattr(v, column)))


def open_html(path: str | None, href: str | None, copied: bool = False, copyable: bool = False) -> str:
    """The "open the output notebook" cell: a link that opens in JupyterLab when the notebook is
    under the server's root; nothing when the row's copy action can place a copy under the root
    (``copyable``); else the path as selectable text.

    >>> open_html("/r/out.ipynb", "/lab/tree/out.ipynb")[:65]
    '<a class="nbjobs-open" href="/lab/tree/out.ipynb" target="_blank"'
    >>> open_html("/r/out.ipynb", None), open_html("/r/out.ipynb", None, copyable=True)[:5]
    ('<code class="nbjobs-path" title="/r/out.ipynb (not under a Jupyter server root)" style="user-select:all;font-size:10px">/r/out.ipynb</code>', '')
    """
    if not path:
        return ""
    p = html.escape(path)
    if href:
        label = "notebook (copy)" if copied else "notebook"
        return (f'<a class="nbjobs-open" href="{html.escape(href)}" target="_blank" rel="noopener" '
                f'title="{p}" style="color:var(--jp-content-link-color,#0969da);text-decoration:underline">'
                f'{label}</a>')
    if copyable:
        return ""  # the copy button (its tooltip names the path) stands in for the link
    return (f'<code class="nbjobs-path" title="{p} (not under a Jupyter server root)" style="user-select:all;'
            f'font-size:10px">{html.escape(path)}</code>')


def row_render(v: RowView, columns: Sequence[str] = tuple(COLUMNS),
               link: Callable[[str], tuple[str | None, bool, bool]] | None = None) -> dict[str, Any]:
    """Everything the widget layer sets for one row: each cell's HTML, each action's enabled flag,
    the open-notebook cell, and whether the copy action applies.  Two renders are compared by
    `diff_rows`; a widget is touched only when its entry changed.

    ``link(path)`` returns ``(href or None, href_is_a_copy, can_copy)`` (see `lab_href`); without
    it no link is made.

    >>> v = row_view(JobRecord(id="ab" * 16, name="x", kind="cell", state=State.FAILED, attempts=1,
    ...                        started_at=1.0, finished_at=2.0))
    >>> r = row_render(v); r["retry"], r["cancel"], r["pull"], r["copy"]
    (True, False, False, False)
    """
    out: dict[str, Any] = {c: cell_html(v, c) for c in columns}
    out.update(v.actions)
    href, copied, copyable = link(v.output_path) if (link and v.output_path) else (None, False, False)
    out["copy"] = bool(v.output_path and not href and copyable)
    out["open"] = open_html(v.output_path, href, copied, out["copy"])
    return out


@dataclass
class RowsDiff:
    """What changed between two renders of a list of rows (see `diff_rows`)."""

    added: list[str]
    removed: list[str]
    changed: dict[str, dict[str, Any]]
    order: list[str] | None  # the new order of IDs, if membership or order changed

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.order is not None)


def diff_rows(old: dict[str, dict[str, Any]], old_order: Sequence[str], new: dict[str, dict[str, Any]],
              new_order: Sequence[str]) -> RowsDiff:
    """Compare two renders: rows added and removed, the entries that changed in kept rows, and
    the new order when it differs.

    >>> diff_rows({"a": {"state": "q"}}, ["a"], {"a": {"state": "r"}, "b": {"state": "q"}}, ["b", "a"])
    RowsDiff(added=['b'], removed=[], changed={'a': {'state': 'r'}}, order=['b', 'a'])
    """
    added = [i for i in new_order if i not in old]
    removed = [i for i in old_order if i not in new]
    changed: dict[str, dict[str, Any]] = {}
    for i in new_order:
        before = old.get(i)
        if before is not None and before is not new[i]:
            delta = {k: val for k, val in new[i].items() if before.get(k) != val}
            if delta:
                changed[i] = delta
    order = list(new_order) if list(new_order) != list(old_order) else None
    return RowsDiff(added, removed, changed, order)


# --- view model: the panel's list -------------------------------------------------------------------
def parse_states(state: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """A state filter: None or ``"all"`` for every state, ``"active"`` for the unfinished ones,
    one state, or several (a list or ``"failed,timed_out"``).

    >>> parse_states("active")
    ('waiting', 'queued', 'running', 'retrying')
    >>> parse_states("failed,timed_out"), parse_states("all")
    (('failed', 'timed_out'), None)
    """
    if state is None:
        return None
    items = state.split(",") if isinstance(state, str) else list(state)
    out: list[str] = []
    for s in items:
        s = str(s).strip()
        if s in ("", "all"):
            return None
        group = [x.value for x in State if x in ACTIVE] if s == "active" else [s]
        for g in group:
            try:
                value = State(g).value
            except ValueError:
                raise BadInput(f"unknown state {g!r}; use all, active or one of: "
                               f"{', '.join(x.value for x in State)}") from None
            if value not in out:
                out.append(value)
    return tuple(out) or None


def _key(r: JobRecord) -> tuple[float, str]:
    return (-(r.submitted_at or 0.0), r.id)


class PanelModel:
    """The panel's rows: jobs matching the filters, newest first, at most ``limit``.  Pure: it is
    kept current from changed records (`apply`) and says when it must be re-read (`query`).

    >>> from nbjobs.job import JobRecord, State
    >>> m = PanelModel(state="running", limit=2)
    >>> a = JobRecord(id="a" * 32, name="a", kind="cell", state=State.RUNNING, submitted_at=1.0)
    >>> m.reset([a]); [r.name for r in m.records]
    ['a']
    >>> b = JobRecord(id="b" * 32, name="b", kind="cell", state=State.RUNNING, submitted_at=2.0)
    >>> m.apply([b]), [r.name for r in m.records]          # a new job: on top, no re-read needed
    (False, ['b', 'a'])
    >>> done = JobRecord(id="a" * 32, name="a", kind="cell", state=State.SUCCEEDED, submitted_at=1.0)
    >>> m.apply([done]), [r.name for r in m.records]       # left the filter: re-read to backfill
    (True, ['b'])
    """

    def __init__(self, state: str | Iterable[str] | None = None, name: str | None = None,
                 tag: str | None = None, limit: int = DEFAULT_LIMIT):
        self.set_filters(state, name, tag, limit)
        self.records: list[JobRecord] = []

    def set_filters(self, state: str | Iterable[str] | None = None, name: str | None = None,
                    tag: str | None = None, limit: int = DEFAULT_LIMIT) -> None:
        self.states = parse_states(state)
        self.name = (name or "").strip() or None
        self.tag = (tag or "").strip() or None
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise BadInput(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
        self.limit = limit

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def matches(self, r: JobRecord) -> bool:
        """The store's filter, in Python: state in the set, name equal or matching a glob
        (case-sensitive, like SQLite's GLOB), tag among the job's tags."""
        if self.states is not None and r.state.value not in self.states:
            return False
        if self.name is not None:
            if any(c in self.name for c in "*?["):
                if not fnmatch.fnmatchcase(r.name, self.name):
                    return False
            elif r.name != self.name:
                return False
        if self.tag is not None and self.tag not in (r.tags or []):
            return False
        return True

    def reset(self, records: Iterable[JobRecord]) -> None:
        self.records = sorted((r for r in records if self.matches(r)), key=_key)[: self.limit]

    def apply(self, changed: Iterable[JobRecord]) -> bool:
        """Fold changed records in: update rows shown, add new matching rows that belong in the
        first ``limit``, drop rows that no longer match.  Returns True when the list must be
        re-read (a row left it, so one below the cut may now belong in it)."""
        rows = {r.id: r for r in self.records}
        last = _key(self.records[-1]) if self.records else None
        full = len(self.records) >= self.limit
        requery = False
        for r in changed:
            if self.matches(r):
                if r.id in rows or not full or last is None or _key(r) < last:
                    rows[r.id] = r
            elif r.id in rows:
                del rows[r.id]
                requery = True
        self.records = sorted(rows.values(), key=_key)[: self.limit]
        return requery

    def query(self, records: Callable[..., list[JobRecord]]) -> list[JobRecord]:
        """Read the rows afresh with ``records`` (`nbjobs.api.records` for a home).  Several states
        are read one state at a time (each an indexed newest-first read) and merged."""
        if self.states is not None and len(self.states) > 1:
            got = [r for s in self.states for r in records(state=s, name=self.name, tag=self.tag, limit=self.limit)]
        else:
            got = records(state=list(self.states) if self.states else None, name=self.name, tag=self.tag,
                          limit=self.limit)
        return sorted(got, key=_key)[: self.limit]

    def describe(self) -> str:
        parts = [f"state {', '.join(self.states)}" if self.states else "all states"]
        if self.name:
            parts.append(f"name {self.name}")
        if self.tag:
            parts.append(f"tag {self.tag}")
        return ", ".join(parts) + f", newest {self.limit}"


def header_html(summary: dict[str, Any] | None) -> str:
    """The panel's header: counts by state, queue depth, running, workers alive, dead letters.

    >>> s = {"counts": {"running": 1, "failed": 2}, "queue_depth": 3, "running": 1, "workers": 1,
    ...      "dead_letters": 2}
    >>> 'data-k="dead_letters" style="color:#cf222e">2<' in header_html(s)
    True
    """
    if summary is None:
        return '<div class="nbjobs-header">nbjobs: reading...</div>'
    counts = " ".join(f'{badge_html(s)}&nbsp;<span data-count="{s}">{n}</span>'
                      for s, n in summary.get("counts", {}).items() if n)
    def item(key: str, label: str, warn: bool = False) -> str:
        n = summary.get(key, 0)
        color = "#cf222e" if warn and n else "inherit"
        return f'{label} <b data-k="{key}" style="color:{color}">{n}</b>'
    stats = " &middot; ".join([item("queue_depth", "queue"), item("running", "running"),
                               item("workers", "workers alive", warn=False),
                               item("dead_letters", "dead letters", warn=True)])
    execs = executors_html(summary.get("executors") or [])
    notes = "".join(f'<div data-k="worker_note" style="color:#9a6700">{html.escape(n)}</div>'
                    for n in summary.get("worker_notes") or [])
    return (f'<div class="nbjobs-header" style="font-size:12px;line-height:22px">{stats}{execs}'
            f'<span style="margin-left:12px">{counts or "no jobs yet"}</span>{notes}</div>')


def _executors(values: list[str]) -> list[tuple[str, str | None]]:
    """(name, dashboard link or None) of each live worker's executor (``dask@http://...``)."""
    out = []
    for v in values:
        name, _, link = v.partition("@")
        out.append((name, link if link.startswith(("http://", "https://")) else None))
    return out


def executors_html(values: list[str]) -> str:
    """The header's executor part: ``executor local`` or ``executor dask (dashboard)`` with a link.

    >>> executors_html(["dask@http://127.0.0.1:8787/status"])
    ' &middot; executor <b data-k="executor">dask</b> (<a href="http://127.0.0.1:8787/status" target="_blank">dashboard</a>)'
    """
    if not values:
        return ""
    parts = []
    for name, link in _executors(values):
        part = f'<b data-k="executor">{html.escape(name)}</b>'
        if link:
            part += f' (<a href="{html.escape(link)}" target="_blank">dashboard</a>)'
        parts.append(part)
    return " &middot; executor " + ", ".join(parts)


def header_text(summary: dict[str, Any]) -> str:
    """The header as one line of text.

    >>> header_text({"counts": {"queued": 3}, "queue_depth": 3, "running": 0, "workers": 0, "dead_letters": 0})
    'queue 3, running 0, workers alive 0, dead letters 0 | 3 queued'
    """
    counts = ", ".join(f"{n} {s}" for s, n in summary.get("counts", {}).items() if n) or "no jobs yet"
    execs = ", ".join(f"{n} ({link})" if link else n for n, link in _executors(summary.get("executors") or []))
    return (f"queue {summary.get('queue_depth', 0)}, running {summary.get('running', 0)}, "
            f"workers alive {summary.get('workers', 0)}, dead letters {summary.get('dead_letters', 0)}"
            f"{', executor ' + execs if execs else ''} | {counts}"
            + "".join(f"\n{note}" for note in summary.get("worker_notes") or []))


# --- static forms: receipt, tables ---------------------------------------------------------------------
def receipt_text(job_or_record: Any) -> str:
    """The receipt as one line of text: ``8f3a2c1d train: running, 2/4 cells, 12s``."""
    r = _record(job_or_record)
    v = row_view(r)
    parts = [r.state.value]
    if r.progress_total and (r.state == State.RUNNING or r.progress_done):
        parts.append(f"{v.progress} cells")
    if r.started_at is not None:
        parts.append(v.elapsed)
    if r.retries:
        parts.append(f"attempt {v.attempt}")
    if r.cancel_requested and r.state == State.RUNNING:
        parts.append("cancel requested")
    line = f"{r.short_id} {r.name}: " + ", ".join(parts)
    return line + (f" - {v.note}" if v.note_is_error else "")


def receipt_html(job_or_record: Any) -> str:
    """The receipt as a small HTML block: a static snapshot (the live one is a `ReceiptView`)."""
    try:
        r = _record(job_or_record)
    except NbjobsError as exc:
        return f'<div class="nbjobs-receipt"><code>{html.escape(str(exc))}</code></div>'
    v = row_view(r)
    parts = [cell_html(v, "progress")] if v.total else []
    if v.started != "-":
        parts.append(html.escape(v.elapsed))
    if r.retries:
        parts.append(f"attempt {html.escape(v.attempt)}")
    out = (f'<div class="nbjobs-receipt" data-job-id="{r.id}" data-state="{r.state.value}" '
           f'style="font-family:var(--jp-code-font-family,monospace);font-size:12px;line-height:1.7">'
           f'{badge_html(v.state)} <b>{html.escape(r.name)}</b> {cell_html(v, "id")} '
           f'<span style="color:#6e7781">{v.kind}</span>'
           + "".join(f" &middot; {p}" for p in parts))
    if v.note:
        color = "#cf222e" if v.note_is_error else "#57606a"
        out += f'<div style="color:{color}">{html.escape(v.note)}</div>'
    return out + "</div>"


_TEXT_HEAD = ("ID", "NAME", "KIND", "STATE", "CELLS", "ATTEMPT", "QUEUED", "STARTED", "ELAPSED")


def table_text(records: Sequence[JobRecord], now: float | None = None) -> str:
    """Records as an aligned text table (what a terminal shows for a `JobList` or `Panel`).

    >>> print(table_text([JobRecord(id="ab" * 16, name="etl", kind="notebook", state=State.QUEUED)]))
    ID        NAME  KIND      STATE   CELLS  ATTEMPT  QUEUED  STARTED  ELAPSED
    abababab  etl   notebook  queued  -      0 of 1   -       -        -
    """
    if not records:
        return "no jobs yet; submit one with %%job or %job run NOTEBOOK"
    rows = [_TEXT_HEAD]
    for r in records:
        v = row_view(r, now)
        rows.append((v.short_id, v.name[:30], v.kind, v.state, v.progress, v.attempt, v.queued, v.started,
                     v.elapsed))
    widths = [max(len(row[i]) for row in rows) for i in range(len(_TEXT_HEAD))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def table_html(records: Sequence[JobRecord], now: float | None = None) -> str:
    """Records as a static HTML table with the panel's cells (no actions).

    >>> table_html([JobRecord(id="ab" * 16, name="etl", kind="cell", state=State.FAILED)])[:30]
    "<table class='nbjobs-jobs' sty"
    """
    if not records:
        return f"<p>{html.escape(table_text([]))}</p>"
    head = "".join(f"<th style='text-align:left'>{h}</th>" for h in COLUMNS.values())
    body = []
    for r in records:
        v = row_view(r, now)
        cells = "".join(f"<td style='max-width:320px'>{cell_html(v, c)}</td>" for c in COLUMNS)
        body.append(f"<tr data-job-id='{r.id}'>{cells}</tr>")
    return (f"<table class='nbjobs-jobs' style='font-size:12px'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


class JobList(list):
    """Jobs as `%job ls` returns them: a list of `Job` handles that shows itself as a table
    (text in a terminal, HTML in a notebook).  ``jobs = _`` keeps the handles.

    >>> JobList([]).records
    []
    """

    def __init__(self, records: Sequence[JobRecord] = (), home: Path | str | None = None):
        from .api import Job

        super().__init__(Job(r.id, home) for r in records)
        self.records = list(records)

    def __repr__(self) -> str:
        return table_text(self.records)

    def _repr_html_(self) -> str:
        return table_html(self.records)


# --- links to output notebooks -----------------------------------------------------------------------
def lab_href(path: str | os.PathLike, root_dir: str | os.PathLike, base_url: str = "/") -> str | None:
    """The JupyterLab URL path that opens ``path``, or None when JupyterLab cannot open it: the
    file is outside the server's root, or under a hidden folder (JupyterLab refuses those unless
    ``ContentsManager.allow_hidden``; the default home ``~/.nbjobs`` is one).

    >>> lab_href("/srv/nb/runs/a b.ipynb", "/srv/nb", "/user/ann/")
    '/user/ann/lab/tree/runs/a%20b.ipynb'
    >>> lab_href("/home/ann/.nbjobs/runs/x/1/output.ipynb", "/home/ann") is None
    True
    """
    try:
        rel = Path(os.path.realpath(path)).relative_to(os.path.realpath(root_dir))
    except ValueError:
        return None
    if not rel.parts or any(p.startswith(".") for p in rel.parts):
        return None
    return "/" + base_url.strip("/") + ("/" if base_url.strip("/") else "") + "lab/tree/" + quote(rel.as_posix())


_server_info: dict[str, Any] | None | bool = False


def lab_server() -> dict[str, Any] | None:
    """``{"root_dir", "base_url"}`` of the Jupyter server that started this kernel, from its
    ``jpserver-<pid>.json`` runtime file (the kernel's ``JPY_PARENT_PID`` is the server's pid);
    None outside a Jupyter server (a console, papermill, VS Code)."""
    global _server_info
    if _server_info is False:
        _server_info = None
        pid = os.environ.get("JPY_PARENT_PID")
        if pid and pid.isdigit():
            try:
                from jupyter_core.paths import jupyter_runtime_dir

                info = json.loads((Path(jupyter_runtime_dir()) / f"jpserver-{pid}.json").read_text())
                _server_info = {"root_dir": info["root_dir"], "base_url": info.get("base_url") or "/"}
            except (OSError, ValueError, KeyError, ImportError):  # no Jupyter server: rows show paths, not links
                _server_info = None
    return _server_info  # type: ignore[return-value]


# --- log tails -------------------------------------------------------------------------------------------
def read_tail(path: Path, lines: int = LOG_LINES, max_bytes: int = 16384) -> list[str]:
    """The last ``lines`` lines of a text file (ANSI colours removed); [] if it does not exist.

    >>> read_tail(Path("/nonexistent/log.txt"))
    []
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    text = _ANSI.sub("", data.decode("utf-8", errors="replace")).replace("\r\n", "\n").replace("\r", "\n")
    out = text.split("\n")
    if size > max_bytes:
        out = out[1:]  # the first line is probably cut
    while out and not out[-1].strip():
        out.pop()
    return out[-lines:]


class LogTail:
    """Last lines of log files, re-read only when a file's size or mtime changed (one ``stat``)."""

    def __init__(self):
        self._cache: dict[Path, tuple[tuple[int, int], list[str]]] = {}

    def lines(self, path: Path) -> list[str]:
        try:
            st = path.stat()
        except OSError:
            return []
        sig = (st.st_size, st.st_mtime_ns)
        hit = self._cache.get(path)
        if hit and hit[0] == sig:
            return hit[1]
        got = read_tail(path)
        self._cache[path] = (sig, got)
        return got

    def last_line(self, path: Path) -> str:
        """The last line of the job's own output (the kernel's log lines are skipped)."""
        for line in reversed(self.lines(path)):
            if line.strip() and not _KERNEL_LOG.match(line):
                return line.strip()[:300]
        return ""


def log_file(r: JobRecord, home: Path) -> Path | None:
    """Where the runner writes the log of the job's latest attempt (``runs/<id>/<n>/log.txt``)."""
    if not r.attempts:
        return None
    from . import config

    return config.run_dir(r.id, home) / str(r.attempts) / "log.txt"


# --- live or not ----------------------------------------------------------------------------------------------
def live_possible() -> bool:
    """True in a Jupyter kernel (comms) with ipywidgets installed: a receipt can update live.

    False in plain Python, terminal IPython, and under ipykernel 7.0.0/7.0.1, whose comm messages
    from threads are broken (ipykernel#1450)."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    kernel_version = getattr(sys.modules.get("ipykernel"), "__version__", "")
    if kernel_version.startswith("7.0."):
        return False
    try:
        import ipywidgets  # noqa: F401  (imported here, on the first live display, not at load)
    except ImportError:
        return False
    return True


def _wanted(include, exclude) -> bool:
    return (not include or WIDGET_MIME in include) and not (exclude and WIDGET_MIME in exclude)


# --- widget layer ---------------------------------------------------------------------------------------------
class _Styles:
    """Layouts and styles shared by every widget of one view: one widget model each, instead of
    a Layout and a Style per widget (a row would otherwise open ~45 comms)."""

    def __init__(self, grid: bool):
        import ipywidgets as w
        from ipywidgets.widgets.widget_string import HTMLStyle

        self.cell = w.Layout(margin="0 6px 0 0", min_width="0", overflow="hidden", align_self="center")
        self.html = HTMLStyle(font_size="12px")
        self.button = w.Layout(width="auto", height="22px", padding="0 4px", margin="0 2px 0 0")
        self.button_style = w.ButtonStyle(font_size="11px")
        self.actions = w.Layout(margin="0", flex_flow="row nowrap", align_items="center", overflow="hidden")
        self.all = [self.cell, self.html, self.button, self.button_style, self.actions]

    def close(self) -> None:
        for x in self.all:
            x.close()


class RowWidgets:
    """The widgets of one row: one HTML per cell, the action buttons and the open-notebook link;
    a copy button and an expandable area (logs, messages) are made on first use.  `apply` sets
    only the entries of a render that changed."""

    def __init__(self, view: "_RowsView", job_id: str, render: dict[str, Any]):
        import ipywidgets as w

        self.view, self.id = view, job_id
        st = view.styles
        tag = f"nbjobs-row-{job_id[:8]}"
        self.cells = {c: w.HTML(value=render[c], layout=st.cell, style=st.html,
                                _dom_classes=("nbjobs-cell", f"nbjobs-col-{c}", tag)) for c in view.columns}
        self.buttons = {}
        for a in ACTIONS:
            b = w.Button(description=a, disabled=not render[a], layout=st.button, style=st.button_style,
                         tooltip=_TOOLTIPS[a], _dom_classes=("nbjobs-action", f"nbjobs-{a}", tag))
            b.on_click(lambda _b, a=a: view.act(job_id, a))
            self.buttons[a] = b
        self.open = w.HTML(value=render["open"], layout=st.cell, style=st.html,
                           _dom_classes=("nbjobs-cell", "nbjobs-col-open", tag))
        self.copy = None
        self.actions = w.HBox(list(self.buttons.values()) + [self.open], layout=st.actions,
                              _dom_classes=("nbjobs-actions", tag))
        if render["copy"]:
            self._add_copy()
        self.area = None  # the expandable area, made on first use
        self.expanded = False
        self.message = ""

    def _add_copy(self) -> None:
        import ipywidgets as w

        st = self.view.styles
        self.copy = w.Button(description="copy nb", layout=st.button, style=st.button_style,
                             tooltip="the output notebook is outside the Jupyter root: copy it into "
                                     "./nbjobs-outputs/ and link the copy",
                             _dom_classes=("nbjobs-action", "nbjobs-copy", f"nbjobs-row-{self.id[:8]}"))
        self.copy.on_click(lambda _b: self.view.act(self.id, "copy"))
        self.actions.children = (*self.actions.children[:-1], self.copy, self.open)

    def ensure_area(self) -> bool:
        """Make the expandable area; True if it is new (the container must place it)."""
        if self.area is not None:
            return False
        import ipywidgets as w

        layout = w.Layout(display="none", margin="2px 0 6px 0", overflow="auto", max_height="320px",
                          # spans the grid's row (ipywidgets' front end does not apply grid_column)
                          **({"grid_area": "auto / 1 / auto / -1"} if self.view.grid else {}))
        self.area = w.HTML(value="", layout=layout, _dom_classes=("nbjobs-area", f"nbjobs-row-{self.id[:8]}"))
        return True

    def apply(self, changes: dict[str, Any]) -> int:
        """Set the changed entries; returns how many traits were assigned."""
        n = 0
        for k, val in changes.items():
            if k in self.cells:
                self.cells[k].value = val
            elif k in self.buttons:
                self.buttons[k].disabled = not val
            elif k == "open":
                self.open.value = val
            elif k == "copy":
                if val and self.copy is None:
                    self._add_copy()
                elif self.copy is not None:
                    self.copy.disabled = not val
            else:
                continue
            n += 1
        return n

    def show_area(self, body: str) -> int:
        """Fill and show (or hide, for "") the expandable area; returns traits assigned."""
        n = 0
        if self.area is None:
            return 0
        if self.area.value != body:
            self.area.value = body
            n += 1
        display = "" if body else "none"
        if self.area.layout.display != display:
            self.area.layout.display = display
            n += 1
        return n

    def widgets(self) -> list[Any]:
        out = [self.cells[c] for c in self.view.columns] + [self.actions]
        return out + ([self.area] if self.area is not None else [])

    def close(self) -> None:
        for x in [*self.cells.values(), *self.buttons.values(), self.open, self.copy, self.actions, self.area]:
            if x is not None:
                x.close()


_TOOLTIPS = {"cancel": "cancel the job (a running job's kernel is stopped)",
             "retry": "run this failed, timed-out or cancelled job again (same ID)",
             "logs": "show or hide the tail of the job's log", "pull": "put the job's recorded outputs into "
                                                                       "this notebook's namespace"}


class _LiveView:
    """Something the updater thread keeps current.  Subclasses implement `refresh` (thread) and
    keep their widgets under ``self.lock`` (button handlers run on the kernel's shell thread)."""

    grace_needed = True

    def __init__(self, home: Path):
        self.home = Path(home)
        self.lock = threading.RLock()
        self.root: Any = None
        self.created = time.monotonic()
        self.shown = False       # a front end reported a view of it
        self.closed = False
        self.failures = 0
        self.idle_since: float | None = None  # when its jobs had all ended (for DISPLAY_GRACE)

    def status(self) -> str:
        """``live``, ``dormant`` (no front end shows it now) or ``closed``."""
        root = self.root
        if self.closed or root is None or getattr(root, "comm", None) is None:
            return "closed"
        count = getattr(root, "_view_count", None)
        if count:
            self.shown = True
            return "live"
        if self.shown:
            return "dormant"  # it was shown, and every view of it has been removed since
        if self.idle_since is not None and time.monotonic() - self.idle_since > DISPLAY_GRACE:
            return "dormant"  # never rendered (papermill, a console) and nothing left to follow
        return "live"

    def _watch_views(self) -> None:
        self.root._view_count = 0  # ask the front end to count the views it shows
        self.root.observe(self._on_view_count, "_view_count")

    def _on_view_count(self, change: dict) -> None:
        if change["new"]:
            self.shown = True
            if not self.closed:
                _activate(self, resync=True)  # shown again (e.g. a notebook reopened): catch up

    def refresh(self, tick: "_Tick") -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def job_ids(self) -> list[str]:
        return []

    def close(self) -> None:
        self.closed = True
        _deactivate(self)


class _RowsView(_LiveView):
    """Rows of jobs as widgets, kept current by diffing renders (shared by panel and receipt)."""

    grid = False
    columns: tuple[str, ...] = tuple(COLUMNS)

    def __init__(self, home: Path):
        super().__init__(home)
        self.styles: _Styles | None = None
        self.rows: dict[str, RowWidgets] = {}
        self.renders: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self._cache: dict[str, tuple[JobRecord, str, dict[str, Any]]] = {}
        self._tail = LogTail()
        self._copies: dict[str, str] = {}  # output path -> path of its copy under the root
        self.writes = 0                    # traits assigned so far (tests: only changes are sent)
        self.needs_resync = True
        self.resync_at = 0.0
        self.resync_version: int | None = None

    # the records to show, newest first
    def records(self) -> list[JobRecord]:  # pragma: no cover - abstract
        raise NotImplementedError

    def job_ids(self) -> list[str]:
        return list(self.order)

    def _place(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _link(self, path: str) -> tuple[str | None, bool, bool]:
        server = lab_server()
        if server is None:
            return None, False, False
        href = lab_href(path, server["root_dir"], server["base_url"])
        if href:
            return href, False, False
        copy = self._copies.get(path)
        if copy:
            href = lab_href(copy, server["root_dir"], server["base_url"])
            return href, bool(href), not href
        return None, False, True

    def _note(self, r: JobRecord, ticking: bool) -> str:
        path = log_file(r, self.home)
        if path is None:
            return ""
        cached = self._cache.get(r.id)
        if cached is not None and not ticking and cached[0].updated_at == r.updated_at \
                and cached[0].attempts == r.attempts:
            return cached[1]
        return self._tail.last_line(path)

    def render(self, now: float | None = None) -> int:
        """Bring the widgets in line with `records` at time ``now``; returns traits assigned.
        Rows whose record, note and clock did not change reuse their last render."""
        now = time.time() if now is None else now
        renders: dict[str, dict[str, Any]] = {}
        order = []
        active = False
        for r in self.records():
            ticking = r.state in _TICKING
            active = active or r.state in ACTIVE
            cached = self._cache.get(r.id)
            if cached is not None and not ticking and (cached[0] is r or cached[0] == r):
                rd = cached[2]  # same record, no clock: same render (the note moves only with the record)
            else:
                note = self._note(r, ticking)
                rd = row_render(row_view(r, now, note), self.columns, self._link)
                self._cache[r.id] = (r, note, rd)
            renders[r.id] = rd
            order.append(r.id)
        self.idle_since = None if active else (self.idle_since or time.monotonic())
        d = diff_rows(self.renders, self.order, renders, order)
        n = 0
        for i in d.removed:
            self.rows.pop(i).close()
            self._cache.pop(i, None)
        for i in d.added:
            self.rows[i] = RowWidgets(self, i, renders[i])
        for i, changes in d.changed.items():
            n += self.rows[i].apply(changes)
        self.renders, self.order = renders, order
        if d.order is not None:
            self._place()
            n += 1
        n += self._refresh_areas()
        self.writes += n
        return n

    def _refresh_areas(self) -> int:
        n = 0
        for i, row in self.rows.items():
            if row.area is None:
                continue
            body = ""
            if row.message:
                body += f'<div class="nbjobs-message" style="font-size:12px">{html.escape(row.message)}</div>'
            if row.expanded:
                r = self._cache[i][0] if i in self._cache else None
                path = log_file(r, self.home) if r else None
                lines = self._tail.lines(path) if path else []
                text = "\n".join(lines) if lines else "(no output yet)"
                body += (f'<pre class="nbjobs-log" style="font-size:11px;margin:2px 0;max-height:300px;'
                         f'overflow:auto;background:var(--jp-layout-color2,#f6f8fa);padding:4px">'
                         f'{html.escape(text)}</pre>')
            n += row.show_area(body)
        return n

    # --- actions (run on the kernel's shell thread, when a button is clicked) -------------------
    def act(self, job_id: str, action: str) -> str:
        """Do a row's action; returns the message shown under the row."""
        from . import api

        message = ""
        try:
            if action == "cancel":
                state = api.cancel(job_id, home=self.home).state
                message = "cancelled" if state == State.CANCELLED else "cancel requested: stopping the kernel"
            elif action == "retry":
                api.retry(job_id, home=self.home)
                message = "queued again"
            elif action == "pull":
                message = _pull(job_id, self.home)
            elif action == "copy":
                message = self._copy(job_id)
            elif action != "logs":
                raise BadInput(f"unknown action {action!r}")
        except NbjobsError as exc:
            message = str(exc)
        with self.lock:
            row = self.rows.get(job_id)
            if row is None or self.closed:
                return message
            new_area = row.ensure_area()
            if action == "logs":
                row.expanded = not row.expanded
            row.message = message
            try:
                fresh = api.get(job_id, home=self.home).record
                self._updated([fresh])
            except NbjobsError:
                pass
            self.render()
            if new_area:
                self._place()
        return message

    def _updated(self, records: list[JobRecord]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _copy(self, job_id: str) -> str:
        import shutil

        from . import api

        r = api.get(job_id, home=self.home).record
        if not r.output_path or not Path(r.output_path).exists():
            return "no output notebook yet"
        if lab_server() is None:
            return f"the output notebook is {r.output_path}"
        dest_dir = Path.cwd() / "nbjobs-outputs"
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', r.name)[:40]}-{r.short_id}-{r.attempts}.ipynb"
        shutil.copyfile(r.output_path, dest)
        self._copies[r.output_path] = str(dest)
        self._cache.pop(job_id, None)
        href = self._link(r.output_path)[0]
        where = os.path.relpath(dest)
        return f"copied the output notebook to {where}" + ("" if href else " (still outside the Jupyter root)")

    def close(self) -> None:
        with self.lock:
            super().close()
            for row in self.rows.values():
                row.close()
            self.rows.clear()
            self._close_widgets()
            if self.styles is not None:
                self.styles.close()

    def _close_widgets(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _pull(job_id: str, home: Path) -> str:
    from . import api

    values = api.result(job_id, home=home)
    if not values:
        return "this job recorded no outputs"
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        return "no IPython here: read them with nbjobs.result(ID)"
    ok = {k: v for k, v in values.items() if k.isidentifier()}
    shell.push(ok)
    skipped = [k for k in values if k not in ok]
    return f"pulled {names_and_types(ok)} into the namespace" + (
        f" (skipped {', '.join(map(repr, skipped))}: not variable names)" if skipped else "")


class ReceiptView(_RowsView):
    """The live receipt of one job: one row of the panel's component in a card."""

    columns = RECEIPT_COLUMNS

    def __init__(self, job: Any):
        super().__init__(Path(job.home))
        self.job_id = job.id
        self.record = job.record

    def build(self) -> Any:
        import ipywidgets as w

        with self.lock:
            self.styles = _Styles(grid=False)
            self.line = w.HBox([], layout=w.Layout(flex_flow="row wrap", align_items="center"))
            self.root = w.VBox([self.line], _dom_classes=("nbjobs-receipt", f"nbjobs-job-{self.job_id[:8]}"))
            self.render()
            self.needs_resync = False
            self._watch_views()
        _activate(self)
        return self.root

    def records(self) -> list[JobRecord]:
        return [self.record]

    def _updated(self, records: list[JobRecord]) -> None:
        for r in records:
            if r.id == self.job_id:
                self.record = r

    def _place(self) -> None:
        row = self.rows.get(self.job_id)
        if row is None:
            return
        self.line.children = [row.cells[c] for c in self.columns] + [row.actions]
        self.root.children = [self.line] + ([row.area] if row.area is not None else [])

    def refresh(self, tick: "_Tick") -> None:
        with self.lock:
            if self.closed:
                return
            fresh = tick.changed.get(self.job_id)
            if fresh is None and (self.needs_resync or tick.flood or (
                    tick.version != self.resync_version and tick.now - self.resync_at >= RESYNC)):
                fresh = tick.get(self.job_id)
                self.needs_resync, self.resync_at, self.resync_version = False, tick.now, tick.version
            if fresh is not None:
                self.record = fresh
            self.render(tick.now)

    def _close_widgets(self) -> None:
        for x in (getattr(self, "line", None), self.root):
            if x is not None:
                x.close()


class PanelView(_RowsView):
    """The live panel: header, filters, a close button, and a grid with one row per job."""

    grid = True
    _TEMPLATE = ("68px minmax(56px,1fr) 64px 80px 88px 60px 62px 62px 58px minmax(90px,2fr) "
                 "max-content")

    def __init__(self, panel: "Panel"):
        super().__init__(panel.home)
        self.model = panel.model
        self.summary_gen = -1
        self.summary: dict[str, Any] | None = None

    def build(self, records: list[JobRecord], summary: dict[str, Any]) -> Any:
        import ipywidgets as w

        with self.lock:
            self.styles = _Styles(grid=True)
            m = self.model
            self.header = w.HTML(value=header_html(summary), _dom_classes=("nbjobs-summary",))
            self.summary = summary
            state_options = [("all states", "all"), ("active", "active")] + [(s.value, s.value) for s in State]
            current = ",".join(m.states) if m.states else "all"
            if current not in [v for _, v in state_options]:
                state_options.append((current, current))
            small = w.Layout(width="150px")
            self.f_state = w.Dropdown(options=state_options, value=current, description="state",
                                      layout=small, style={"description_width": "initial"},
                                      _dom_classes=("nbjobs-filter-state",))
            self.f_name = w.Text(value=m.name or "", placeholder="name or glob", description="name",
                                 continuous_update=False, layout=small, style={"description_width": "initial"},
                                 _dom_classes=("nbjobs-filter-name",))
            self.f_tag = w.Text(value=m.tag or "", placeholder="tag", description="tag", continuous_update=False,
                                layout=w.Layout(width="120px"), style={"description_width": "initial"},
                                _dom_classes=("nbjobs-filter-tag",))
            self.f_limit = w.BoundedIntText(value=m.limit, min=1, max=MAX_LIMIT, description="limit",
                                            layout=w.Layout(width="110px"), style={"description_width": "initial"},
                                            _dom_classes=("nbjobs-filter-limit",))
            self.note = w.HTML(value="", _dom_classes=("nbjobs-panel-note",))
            self.close_button = w.Button(description="close", tooltip="stop updating and remove this panel",
                                         layout=w.Layout(width="auto", height="24px"),
                                         _dom_classes=("nbjobs-close",))
            self.close_button.on_click(lambda _b: self.close())
            for f in (self.f_state, self.f_name, self.f_tag, self.f_limit):
                f.observe(self._on_filter, "value")
            bar = w.HBox([self.f_state, self.f_name, self.f_tag, self.f_limit, self.note, self.close_button],
                         layout=w.Layout(align_items="center", flex_flow="row wrap"))
            self.heads = [w.HTML(value=f'<b style="white-space:nowrap">{h}</b>', layout=self.styles.cell,
                                 style=self.styles.html,
                                 _dom_classes=("nbjobs-head",)) for h in [*COLUMNS.values(), "actions"]]
            self.table = w.GridBox([], layout=w.Layout(grid_template_columns=self._TEMPLATE, grid_gap="2px 0",
                                                       align_items="center", width="100%",
                                                       overflow="auto hidden"),
                                   _dom_classes=("nbjobs-grid",))
            self.root = w.VBox([self.header, bar, self.table], layout=w.Layout(width="100%"),
                               _dom_classes=("nbjobs-panel",))
            m.reset(records)
            self.render()
            self.needs_resync = False
            self._watch_views()
        _activate(self)
        return self.root

    def records(self) -> list[JobRecord]:
        return self.model.records

    def _updated(self, records: list[JobRecord]) -> None:
        if self.model.apply(records):
            self.needs_resync = True

    def _place(self) -> None:
        kids = list(self.heads)
        for i in self.order:
            kids += self.rows[i].widgets()
        self.table.children = kids
        self.note.value = (f'<span style="font-size:11px;color:#6e7781">{len(self.order)} shown '
                           f'({html.escape(self.model.describe())})</span>')

    def _on_filter(self, _change: dict) -> None:
        from . import api

        with self.lock:
            if self.closed:
                return
            try:
                self.model.set_filters(self.f_state.value, self.f_name.value, self.f_tag.value,
                                       int(self.f_limit.value))
                self.model.reset(self.model.query(lambda **kw: api.records(home=self.home, **kw)))
            except NbjobsError as exc:
                self.note.value = f'<span style="color:#cf222e">{html.escape(str(exc))}</span>'
                return
            self.render()
            self._place()

    def refresh(self, tick: "_Tick") -> None:
        with self.lock:
            if self.closed:
                return
            need = self.needs_resync or tick.flood or (
                tick.version != self.resync_version and tick.now - self.resync_at >= RESYNC)
            if tick.changed and self.model.apply(tick.changed.values()):
                need = True
            if need:
                self.model.reset(self.model.query(tick.records))
                self.needs_resync, self.resync_at, self.resync_version = False, tick.now, tick.version
            gen, summary = tick.summary()
            if gen != self.summary_gen:
                self.summary_gen = gen
                if summary != self.summary:
                    self.summary = summary
                    self.header.value = header_html(summary)
                    self.writes += 1
            self.render(tick.now)

    def _close_widgets(self) -> None:
        for name in ("header", "f_state", "f_name", "f_tag", "f_limit", "note", "close_button", "table", "root"):
            x = getattr(self, name, None)
            if x is not None:
                x.close()
        for h in getattr(self, "heads", []):
            h.close()


# --- public objects ------------------------------------------------------------------------------------
class Receipt:
    """The receipt of one job.  ``Receipt(job).widget()`` is the live component (the panel's row
    for this one job) kept current by the updater thread while it is displayed; displaying a
    `Receipt` shows it live when `live_possible`, else as a static snapshot (text and HTML).

    >>> r = Receipt(nbjobs.get("8f3a2c"))   # doctest: +SKIP
    >>> r                                   # doctest: +SKIP
    """

    def __init__(self, job: Any):
        self.job = job
        self.view: ReceiptView | None = None

    def html(self) -> str:
        return receipt_html(self.job)

    def widget(self) -> Any:
        """The live widget (built and registered with the updater on first use)."""
        if self.view is None:
            self.view = ReceiptView(self.job)
            self.view.build()
        return self.view.root

    def close(self) -> None:
        if self.view is not None:
            self.view.close()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        return job_bundle(self.job, include, exclude, receipt=self)


def job_bundle(job: Any, include=None, exclude=None, receipt: Receipt | None = None) -> dict[str, Any]:
    """The display bundle of a `Job`: text, a static HTML receipt and - while the job is active, in
    a kernel that can show widgets - the live receipt."""
    try:
        rec = job.record
    except NbjobsError:
        return {"text/plain": repr(job)}
    data = {"text/plain": repr(job), "text/html": receipt_html(rec)}
    if _wanted(include, exclude) and rec.state not in TERMINAL and live_possible():
        widget = (receipt or Receipt(job)).widget()
        data[WIDGET_MIME] = widget._repr_mimebundle_()[WIDGET_MIME]
    return data


class Panel:
    """The live table of a home's recent jobs (see `panel`).  Shown in a notebook it is a widget
    that keeps itself current; ``repr`` is a text table; ``_repr_html_`` a static HTML snapshot.

    >>> p = nbjobs.panel(state="active")   # doctest: +SKIP
    >>> p.records()[0].state               # doctest: +SKIP
    <State.RUNNING: 'running'>
    >>> p.close()                          # doctest: +SKIP
    """

    def __init__(self, state: str | Iterable[str] | None = None, name: str | None = None, tag: str | None = None,
                 limit: int = DEFAULT_LIMIT, home: Path | str | None = None):
        from . import config

        self.model = PanelModel(state, name, tag, limit)
        self.home = Path(home) if home else config.home()
        self.view: PanelView | None = None

    def records(self) -> list[JobRecord]:
        """The rows' records, read afresh."""
        from . import api

        return self.model.query(lambda **kw: api.records(home=self.home, **kw))

    def summary(self) -> dict[str, Any]:
        from . import api

        return api.summary(home=self.home)

    def rows(self, now: float | None = None) -> list[RowView]:
        """The rows as `RowView`s, read afresh (no log lines)."""
        return [row_view(r, now) for r in self.records()]

    def widget(self) -> Any:
        """The live widget (built and registered with the updater on first use)."""
        if self.view is None or self.view.closed:
            self.view = PanelView(self)
            self.view.build(self.records(), self.summary())
        return self.view.root

    def close(self) -> None:
        """Stop updating and remove the panel's widgets (its close button does the same)."""
        if self.view is not None:
            self.view.close()

    def __repr__(self) -> str:
        try:
            return f"nbjobs {self.home}: {header_text(self.summary())}\n{table_text(self.records())}"
        except NbjobsError as exc:
            return f"<nbjobs panel: {exc}>"

    def _repr_html_(self) -> str:
        return header_html(self.summary()) + table_html(self.records())

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        data = {"text/plain": repr(self)}
        if _wanted(include, exclude) and live_possible():
            data[WIDGET_MIME] = self.widget()._repr_mimebundle_()[WIDGET_MIME]
            data["text/html"] = self._repr_html_()
        else:
            data["text/html"] = self._repr_html_()
        return data


def panel(state: str | Iterable[str] | None = None, name: str | None = None, tag: str | None = None,
          limit: int = DEFAULT_LIMIT, home: Path | str | None = None) -> Panel:
    """A live table of recent jobs of ``home`` (default ``$NBJOBS_HOME``), newest first: the jobs of
    every notebook, the CLI, anything using that home.  In a notebook it updates itself about
    twice a second with no cell re-run, until it is closed (its close button, ``.close()``) or
    no longer shown; elsewhere it shows as a text table.

    ``state``: ``"all"`` (default), ``"active"``, one state or several (``"failed,timed_out"``);
    ``name``: a name or glob (``"train*"``); ``tag``: a tag; ``limit``: at most this many rows.
    The filters can also be changed in the panel.  Each row can cancel, retry, show its log,
    pull the job's outputs into this namespace and open its output notebook in JupyterLab (a
    notebook outside the server's root can first be copied into ``./nbjobs-outputs/``).

    >>> import nbjobs
    >>> nbjobs.panel()                                  # doctest: +SKIP
    >>> nbjobs.panel(state="failed", name="train*", limit=50)   # doctest: +SKIP
    """
    return Panel(state=state, name=name, tag=tag, limit=limit, home=home)


# --- the updater thread ---------------------------------------------------------------------------
class _Home:
    """The updater's state for one home: its connection (the thread's own), the last
    ``data_version`` and the change watermark, and the header's counts."""

    def __init__(self, home: Path):
        from . import api

        self.home = home
        self.store = api._store(home)  # the updater thread's own connection (one per thread)
        self.version: int | None = None
        self.watermark = time.time()
        self.seen: dict[str, float] = {}
        # last (state, acked_at) seen per changed job: the header's counts move only with these
        self.states: dict[str, tuple[State, Any]] = {}
        self.summary: dict[str, Any] | None = None
        self.summary_gen = 0
        self.summary_at = -1e9
        self.summary_stale = True

    def poll(self, now: float) -> "_Tick":
        """The change check: ``PRAGMA data_version``; if another connection committed, the IDs of
        rows updated since the watermark (index only); then only the rows not seen at that stamp."""
        version = self.store.data_version()
        changed: dict[str, JobRecord] = {}
        flood = False
        if version != self.version:
            self.version = version
            pairs = self.store.changed_since(self.watermark - SLACK)
            fresh = [i for i, u in pairs if self.seen.get(i) != u]
            self.seen = dict(pairs)
            if pairs:
                self.watermark = max(self.watermark, pairs[-1][1])
            if len(fresh) > MAX_FRESH:
                flood = self.summary_stale = True
            elif fresh:
                changed = {r.id: r for r in self.store.get_many(fresh)}
                if len(self.states) > 20_000:
                    self.states.clear()
                for r in changed.values():
                    key = (r.state, getattr(r, "acked_at", None))
                    if self.states.get(r.id) != key:  # new, moved, or acknowledged: counts changed
                        self.summary_stale = True
                    self.states[r.id] = key
        return _Tick(self, now, version, changed, flood)

    def get_summary(self, now: float) -> tuple[int, dict[str, Any]]:
        due = now - self.summary_at >= (SUMMARY_MIN if self.summary_stale else SUMMARY_EVERY)
        if self.summary is None or due:
            from . import api

            s = api.summary(home=self.home)
            self.summary_at, self.summary_stale = now, False
            if s != self.summary:
                self.summary, self.summary_gen = s, self.summary_gen + 1
        return self.summary_gen, self.summary  # type: ignore[return-value]

    def close(self) -> None:
        from . import store as store_module

        store_module._local.__dict__.get("stores", {}).pop(self.store.path, None)
        self.store.close()


class _Tick:
    """What one tick of the updater knows about one home."""

    __slots__ = ("home", "now", "version", "changed", "flood")

    def __init__(self, home: _Home, now: float, version: int, changed: dict[str, JobRecord], flood: bool):
        self.home, self.now, self.version, self.changed, self.flood = home, now, version, changed, flood

    def summary(self) -> tuple[int, dict[str, Any]]:
        return self.home.get_summary(self.now)

    def records(self, **kw: Any) -> list[JobRecord]:
        from . import api

        return api.records(home=self.home.home, **kw)

    def get(self, job_id: str) -> JobRecord | None:
        got = self.home.store.get_many([job_id])
        return got[0] if got else None


class _CallbackView(_LiveView):
    """`watch`: a callback per tick for one job, until it returns False or the job ends."""

    def __init__(self, job: Any, callback: Callable[[JobRecord], Any]):
        super().__init__(Path(job.home))
        self.job_id, self.callback = job.id, callback
        self.record: JobRecord | None = None
        self.done = False

    def status(self) -> str:
        return "closed" if (self.done or self.closed) else "live"

    def job_ids(self) -> list[str]:
        return [self.job_id]

    def refresh(self, tick: _Tick) -> None:
        fresh = tick.changed.get(self.job_id)
        if fresh is None and self.record is None:
            fresh = tick.get(self.job_id)
            if fresh is None:
                raise NbjobsError(f"job {self.job_id[:8]} vanished")
        if fresh is not None:
            self.record = fresh
        keep = self.callback(self.record)
        if keep is False or self.record.state in TERMINAL:
            self.done = True


_views: list[_LiveView] = []
_lock = threading.Lock()
_thread: threading.Thread | None = None
#: the updater's own accounting: ticks, CPU seconds (``time.thread_time``) and wall seconds run
_stats = {"ticks": 0, "cpu": 0.0, "wall": 0.0, "threads": 0}


def _activate(view: _LiveView, resync: bool = False) -> None:
    global _thread
    with _lock:
        if resync and isinstance(view, _RowsView):
            view.needs_resync = True
        if view not in _views:
            _views.append(view)
        if _thread is None:
            _thread = threading.Thread(target=_run, name="nbjobs-panel-updater", daemon=True)
            _stats["threads"] += 1
            _thread.start()


def _deactivate(view: _LiveView) -> None:
    with _lock:
        if view in _views:
            _views.remove(view)


def watch(job: Any, callback: Callable[[JobRecord], Any]) -> Callable[[], None]:
    """Call ``callback(record)`` from the updater thread on every tick while ``job`` is active, and
    once more when it ends; a callback that returns False stops its watch.  Returns a function that
    stops it.  The callback must only assign widget traits (no print, no display).

    >>> stop = watch(job, lambda rec: print(rec.state))  # doctest: +SKIP
    """
    view = _CallbackView(job, callback)
    _activate(view)
    return view.close


def unwatch_all() -> None:
    """Stop every live view and watch (the thread then exits); `%unload_ext nbjobs` calls this."""
    with _lock:
        views = list(_views)
        _views.clear()
    for v in views:
        v.closed = True


def watching() -> list[str]:
    """IDs of the jobs shown by live views now (for tests and debugging)."""
    with _lock:
        views = list(_views)
    return [i for v in views for i in v.job_ids()]


def updater_alive() -> bool:
    t = _thread
    return t is not None and t.is_alive()


def updater_stats() -> dict[str, float]:
    """The updater thread's ticks, CPU seconds and wall seconds so far (all runs of it)."""
    return dict(_stats)


def _run() -> None:
    global _thread
    homes: dict[Path, _Home] = {}
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    cpu_before, wall_before = _stats["cpu"], _stats["wall"]
    try:
        while True:
            started = time.perf_counter()
            with _lock:
                if not _views:
                    _thread = None
                    return
                current = list(_views)
            now = time.time()
            groups: dict[Path, list[_LiveView]] = {}
            for v in current:
                status = v.status()
                if status != "live":
                    _deactivate(v)
                    continue
                groups.setdefault(v.home, []).append(v)
            for home, group in groups.items():
                try:
                    h = homes.get(home)
                    if h is None:
                        h = homes[home] = _Home(home)
                    tick = h.poll(now)
                except Exception:  # noqa: the thread must live on; _failed counts it, a view failing 3 times stops
                    for v in group:
                        _failed(v)
                    continue
                for v in group:
                    try:
                        v.refresh(tick)
                        v.failures = 0
                    except Exception:  # noqa: counted by _failed; the other views go on
                        _failed(v)
            _stats["ticks"] += 1
            _stats["cpu"] = cpu_before + time.thread_time() - cpu0
            _stats["wall"] = wall_before + time.perf_counter() - wall0
            time.sleep(max(0.05, INTERVAL - (time.perf_counter() - started)))
    finally:
        for h in homes.values():
            h.close()
        _stats["cpu"] = cpu_before + time.thread_time() - cpu0
        _stats["wall"] = wall_before + time.perf_counter() - wall0


def _failed(v: _LiveView) -> None:
    v.failures += 1
    if v.failures >= 3:  # its home is gone, the job vanished, or its widgets keep failing
        _deactivate(v)


# --- details -------------------------------------------------------------------------------------------
def status_text(job: Any) -> str:
    """Several lines about one job: what it runs, its state, attempts, inputs, outputs and error."""
    r = job.record
    lines = [receipt_text(r), f"  id:        {r.id}"]
    what = r.notebook if r.kind == "notebook" else ((r.source or "").strip().splitlines() or [""])[0][:70]
    lines += [f"  {r.kind + ':':<10} {what}", f"  kernel:    {r.kernel}    cwd: {r.cwd}"]
    if r.parameters:
        lines.append(f"  params:    {json.dumps(r.parameters)[:200]}")
    ins = r.options.get("inputs") or []
    if ins:
        lines.append("  inputs:    " + ", ".join(f"{i['name']} ({i.get('type_name')})" for i in ins))
    if r.options.get("outputs"):
        lines.append("  --out:     " + ", ".join(r.options["outputs"]))
    if r.tags:
        lines.append(f"  tags:      {', '.join(r.tags)}")
    lines.append(f"  submitted: {fmt_time(r.submitted_at)}   started: {fmt_time(r.started_at)}   "
                 f"finished: {fmt_time(r.finished_at)}   attempts: {r.attempts}/{r.max_attempts}")
    from .policy import INFRA

    for a in (a for a in job.attempts() if a["outcome"] in INFRA):
        lines.append(f"  attempt {a['number']}: {a['outcome']} [infrastructure: re-queued, not charged] "
                     f"{a['error_message'] or ''}"[:300])
    outs = job._store.outputs(r.id)
    if outs:
        lines.append("  outputs:   " + ", ".join(f"{o['name']} ({o['type_name']})" for o in outs))
    if r.output_path:
        lines.append(f"  notebook:  {r.output_path}")
    if r.error_traceback and r.state != State.SUCCEEDED:
        tb = r.error_traceback.rstrip().splitlines()
        lines += ["  traceback:" + (" (last 40 lines)" if len(tb) > 40 else "")] + ["    " + t for t in tb[-40:]]
    return "\n".join(lines)


def summary_text(home: Path | str | None = None) -> str:
    """One line of counts per state and the live workers of a home."""
    from .api import _store

    store = _store(home)
    counts = {k: v for k, v in store.counts().items() if v}
    workers = store.live_workers()
    jobs = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no jobs"
    who = (f"{len(workers)} live worker(s) (pid {', '.join(str(w['pid']) for w in workers)})" if workers
           else "no live worker (a submit starts one)")
    notes = "".join(f"\n  {w['id']}: {w['note']}" for w in workers if w.get("note"))
    return f"{store.path.parent}: {jobs}; {who}{notes}"


def names_and_types(values: dict[str, Any]) -> str:
    """``model (LinearRegression), score (float)``."""
    return ", ".join(f"{k} ({type(v).__name__})" for k, v in values.items())


__all__ = ["panel", "Panel", "PanelModel", "RowView", "row_view", "row_render", "diff_rows", "Receipt",
           "JobList", "job_bundle", "receipt_html", "receipt_text", "live_possible", "watch", "unwatch_all",
           "status_text", "summary_text", "fmt_duration", "lab_href", "header_html"]


class _PanelModule(types.ModuleType):
    """``nbjobs.panel`` is this module and, called, the `panel` function: ``nbjobs.panel()``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Panel:
        return panel(*args, **kwargs)


sys.modules[__name__].__class__ = _PanelModule
