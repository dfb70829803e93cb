"""Views of jobs in a notebook: the receipt of one job (live while it runs) and job tables.

A **receipt** is one line: short ID, name, state, progress, elapsed (and the error, if any).
Every `nbjobs.Job` shows itself as one (``Job._repr_mimebundle_`` calls `job_bundle`):

- ``text/plain``: the handle's repr, for terminals;
- ``text/html``: a static snapshot of the receipt, for front ends without widgets (nbconvert,
  GitHub) and for jobs that have ended;
- ``application/vnd.jupyter.widget-view+json``: only while the job is active, in a kernel with
  comms and ipywidgets installed: an ``ipywidgets.HTML`` widget that the updater thread keeps
  current until the job ends.

So ``%%job`` needs no display code of its own: it returns the handle, IPython displays it as the
cell's value (live), and ``job = _`` works.  Displaying the same running job again shows another
live receipt; each costs one comparison per tick.

**The updater thread.**  One daemon thread per process (`watch` starts it, it exits when nothing
is watched) polls SQLite twice a second on its own connection: ``PRAGMA data_version`` first
(changes only when another connection committed), and only then re-reads the watched jobs.  It
calls each watcher's callback with the job's record on every tick (elapsed time moves on), and a
last time when the job ends.  Callbacks only assign widget traits; they never print or display
(ipykernel >= 7.1 sends trait changes from a thread in order, even while a cell blocks).

>>> from nbjobs.job import JobRecord, State
>>> receipt_text(JobRecord(id="8f3a2c1d" + "0" * 24, name="train", kind="cell", state=State.QUEUED))
'8f3a2c1d train: queued'
"""
from __future__ import annotations

import html
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import NbjobsError
from .job import TERMINAL, JobRecord, State

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: seconds between two ticks of the updater thread
INTERVAL = 0.5

_COLORS = {
    State.WAITING: "#6e7781", State.QUEUED: "#6e7781", State.RUNNING: "#0969da", State.RETRYING: "#bf8700",
    State.SUCCEEDED: "#1a7f37", State.FAILED: "#cf222e", State.TIMED_OUT: "#cf222e", State.CANCELLED: "#6e7781",
}


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


def fmt_time(ts: float | None) -> str:
    if not ts:
        return "-"
    t = time.localtime(ts)
    return time.strftime("%H:%M:%S" if time.strftime("%Y-%m-%d", t) == time.strftime("%Y-%m-%d")
                         else "%Y-%m-%d %H:%M", t)


def elapsed(r: JobRecord, now: float | None = None) -> float | None:
    """Seconds since the job started (to its end once it ended); None before it starts."""
    if r.started_at is None:
        return None
    return (r.finished_at or (time.time() if now is None else now)) - r.started_at


def _record(job_or_record: Any) -> JobRecord:
    return job_or_record if isinstance(job_or_record, JobRecord) else job_or_record.record


def _parts(r: JobRecord) -> list[str]:
    parts = []
    if r.progress_total and (r.state == State.RUNNING or r.progress_done):
        parts.append(f"{r.progress_done}/{r.progress_total} cells")
    if r.started_at is not None:
        parts.append(fmt_duration(elapsed(r)))
    if r.retries:
        parts.append(f"attempt {r.attempts}/{r.max_attempts}")
    if r.cancel_requested and r.state == State.RUNNING:
        parts.append("cancel requested")
    return parts


def _error(r: JobRecord) -> str | None:
    if not r.error_type or r.state == State.SUCCEEDED:
        return None
    message = (r.error_message or "").strip().splitlines()
    text = f"{r.error_type}: {message[0]}" if message else r.error_type
    return text if len(text) <= 300 else text[:297] + "..."


def receipt_text(job_or_record: Any) -> str:
    """The receipt as one line of text: ``8f3a2c1d train: running, 2/4 cells, 12s``."""
    r = _record(job_or_record)
    line = f"{r.short_id} {r.name}: " + ", ".join([r.state.value, *_parts(r)])
    err = _error(r)
    return line + (f" - {err}" if err else "")


def receipt_html(job_or_record: Any) -> str:
    """The receipt as a small HTML block (a static snapshot; `Receipt` keeps one current)."""
    try:
        r = _record(job_or_record)
    except NbjobsError as exc:
        return f'<div class="nbjobs-receipt"><code>{html.escape(str(exc))}</code></div>'
    color = _COLORS.get(r.state, "#6e7781")
    badge = (f'<span style="background:{color};color:#fff;border-radius:3px;padding:0 6px;'
             f'font-weight:600">{html.escape(r.state.value)}</span>')
    parts = " &middot; ".join(html.escape(p) for p in _parts(r))
    out = (f'<div class="nbjobs-receipt" data-job-id="{r.id}" data-state="{r.state.value}" '
           f'style="font-family:var(--jp-code-font-family,monospace);font-size:12px;line-height:1.7">'
           f'{badge} <b>{html.escape(r.name)}</b> <code title="{r.id}">{r.short_id}</code>'
           + (f" &middot; {parts}" if parts else ""))
    err = _error(r)
    if err:
        out += f'<div style="color:{color}">{html.escape(err)}</div>'
    return out + "</div>"


# --- the live receipt ---------------------------------------------------------------------------
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


class Receipt:
    """The receipt of one job.  ``Receipt(job).widget()`` is an ``ipywidgets.HTML`` kept current by
    the updater thread until the job ends; displaying a `Receipt` shows it live when `live_possible`,
    else as a static snapshot (text and HTML).

    >>> r = Receipt(nbjobs.get("8f3a2c"))   # doctest: +SKIP
    >>> r                                   # doctest: +SKIP
    """

    def __init__(self, job: Any):
        self.job = job
        self._widget = None

    def html(self) -> str:
        return receipt_html(self.job)

    def widget(self):
        """The live widget (created and watched on first use)."""
        if self._widget is None:
            import ipywidgets

            rec = self.job.record
            self._widget = w = ipywidgets.HTML(value=receipt_html(rec), _dom_classes=("nbjobs-receipt",))
            if rec.state not in TERMINAL:
                def update(record: JobRecord, w=w) -> bool:
                    if getattr(w, "comm", None) is None:  # the widget was closed: stop
                        return False
                    value = receipt_html(record)
                    if value != w.value:
                        w.value = value
                    return True

                watch(self.job, update)
        return self._widget

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        return job_bundle(self.job, include, exclude, receipt=self)


def job_bundle(job: Any, include=None, exclude=None, receipt: Receipt | None = None) -> dict[str, Any]:
    """The display bundle of a `Job` (see the module docstring)."""
    try:
        rec = job.record
    except NbjobsError:
        return {"text/plain": repr(job)}
    data = {"text/plain": repr(job), "text/html": receipt_html(rec)}
    wanted = (not include or WIDGET_MIME in include) and not (exclude and WIDGET_MIME in exclude)
    if wanted and rec.state not in TERMINAL and live_possible():
        widget = (receipt or Receipt(job)).widget()
        data[WIDGET_MIME] = widget._repr_mimebundle_()[WIDGET_MIME]
    return data


# --- the updater thread ---------------------------------------------------------------------------
class _Watch:
    __slots__ = ("job_id", "home", "callback", "record", "failures")

    def __init__(self, job_id: str, home: Path, callback: Callable[[JobRecord], Any]):
        self.job_id, self.home, self.callback = job_id, home, callback
        self.record: JobRecord | None = None
        self.failures = 0


_watches: list[_Watch] = []
_lock = threading.Lock()
_thread: threading.Thread | None = None


def watch(job: Any, callback: Callable[[JobRecord], Any]) -> Callable[[], None]:
    """Call ``callback(record)`` from the updater thread on every tick while ``job`` is active, and
    once more when it ends; a callback that returns False stops its watch.  Returns a function that
    stops it.  The callback must only assign widget traits (no print, no display).

    >>> stop = watch(job, lambda rec: print(rec.state))  # doctest: +SKIP
    """
    global _thread
    w = _Watch(job.id, Path(job.home), callback)
    with _lock:
        _watches.append(w)
        if _thread is None:
            _thread = threading.Thread(target=_run, name="nbjobs-panel-updater", daemon=True)
            _thread.start()
    return lambda: _unwatch(w)


def _unwatch(w: _Watch) -> None:
    with _lock:
        if w in _watches:
            _watches.remove(w)


def unwatch_all() -> None:
    """Stop every watch (the thread then exits); `%unload_ext nbjobs` calls this."""
    with _lock:
        _watches.clear()


def watching() -> list[str]:
    """IDs of the jobs watched now (for tests and the panel)."""
    with _lock:
        return [w.job_id for w in _watches]


def updater_alive() -> bool:
    t = _thread
    return t is not None and t.is_alive()


def _run() -> None:
    global _thread
    from . import config
    from .store import Store

    stores: dict[Path, Store] = {}
    versions: dict[Path, int] = {}
    try:
        while True:
            with _lock:
                if not _watches:
                    _thread = None
                    return
                current = list(_watches)
            homes: dict[Path, list[_Watch]] = {}
            for w in current:
                homes.setdefault(w.home, []).append(w)
            for home, group in homes.items():
                try:
                    store = stores.get(home)
                    if store is None:
                        store = stores[home] = Store(config.db_path(home), migrate=False)
                    version = store.data_version()
                    fresh, versions[home] = version != versions.get(home), version
                except Exception:
                    for w in group:
                        _failed(w)
                    continue
                for w in group:
                    try:
                        if fresh or w.record is None:
                            w.record = store.get(w.job_id)
                        keep = w.callback(w.record)
                    except Exception:
                        _failed(w)
                        continue
                    if keep is False or w.record.state in TERMINAL:
                        _unwatch(w)
            time.sleep(INTERVAL)
    finally:
        for store in stores.values():
            try:
                store.close()
            except Exception:
                pass


def _failed(w: _Watch) -> None:
    w.failures += 1
    if w.failures >= 3:  # the job vanished, its home is gone, or its callback keeps failing
        _unwatch(w)


# --- tables and details ------------------------------------------------------------------------------
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

    def _rows(self) -> list[tuple[str, ...]]:
        rows = []
        for r in self.records:
            progress = f"{r.progress_done}/{r.progress_total}" if r.progress_total else "-"
            rows.append((r.short_id, r.name[:30], r.state.value, progress, f"{r.attempts}/{r.max_attempts}",
                         fmt_time(r.submitted_at), fmt_duration(elapsed(r))))
        return rows

    _HEAD = ("ID", "NAME", "STATE", "CELLS", "ATTEMPTS", "SUBMITTED", "ELAPSED")

    def __repr__(self) -> str:
        if not self.records:
            return "no jobs yet; submit one with %%job or %job run NOTEBOOK"
        rows = [self._HEAD, *self._rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self._HEAD))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)

    def _repr_html_(self) -> str:
        if not self.records:
            return f"<p>{html.escape(repr(self))}</p>"
        head = "".join(f"<th style='text-align:left'>{h}</th>" for h in self._HEAD)
        body = []
        for r, row in zip(self.records, self._rows()):
            cells = [f"<td><code title='{r.id}'>{row[0]}</code></td>", f"<td>{html.escape(row[1])}</td>",
                     f"<td style='color:{_COLORS.get(r.state, '#6e7781')};font-weight:600'>{row[2]}</td>"]
            cells += [f"<td>{html.escape(c)}</td>" for c in row[3:]]
            body.append("<tr>" + "".join(cells) + "</tr>")
        return (f"<table class='nbjobs-jobs'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody>"
                "</table>")


def status_text(job: Any) -> str:
    """Several lines about one job: what it runs, its state, attempts, inputs, outputs and error."""
    r = job.record
    lines = [receipt_text(r), f"  id:        {r.id}"]
    what = r.notebook if r.kind == "notebook" else ((r.source or "").strip().splitlines() or [""])[0][:70]
    lines += [f"  {r.kind + ':':<10} {what}", f"  kernel:    {r.kernel}    cwd: {r.cwd}"]
    if r.parameters:
        import json

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
    return f"{store.path.parent}: {jobs}; {who}"


def names_and_types(values: dict[str, Any]) -> str:
    """``model (LinearRegression), score (float)``."""
    return ", ".join(f"{k} ({type(v).__name__})" for k, v in values.items())


__all__ = ["Receipt", "JobList", "job_bundle", "receipt_html", "receipt_text", "live_possible", "watch",
           "unwatch_all", "status_text", "summary_text", "fmt_duration"]
