"""`RowsView`: rows of jobs as widgets (`RowWidgets`), kept current by diffing renders; what the live
panel and the live receipt share (`nbjobs.panel.widgets`): rendering, why a job waits, the log
area, the row actions (cancel, retry, logs, pull, copy), and when a view goes dormant
(`DISPLAY_GRACE`).
"""
from __future__ import annotations

import html
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from .. import watch
from ..errors import BadInput, NbjobsError
from ..job import ACTIVE, JobRecord, State
from ..text import names_and_types, wait_reason
from .files import LogTail, copy_for_user, lab_href, lab_server, log_file
from .model import COLUMNS, TICKING, GroupRow, diff_rows, item_view
from .row_widgets import RowWidgets, Styles
from .static import row_render

#: a view no front end has rendered stays live this long after its jobs ended
DISPLAY_GRACE = 600.0


class RowsView(watch.View):
    """Rows of jobs as widgets, kept current by diffing renders (shared by panel and receipt).
    The updater thread calls `refresh`; button handlers run on the kernel's shell thread: both
    touch the widgets under ``self.lock``."""

    grid = False
    columns: tuple[str, ...] = tuple(COLUMNS)

    def __init__(self, home: Path):
        super().__init__(home)
        self.lock = threading.RLock()
        self.root: Any = None
        self.shown = False       # a front end reported a view of it
        self.idle_since: float | None = None  # when its jobs had all ended (for DISPLAY_GRACE)
        self.styles: Styles | None = None
        self.rows: dict[str, RowWidgets] = {}
        self.renders: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self._cache: dict[str, tuple[JobRecord, str, dict[str, Any], str]] = {}  # record, note, render, wait
        self.wait_summary: dict[str, Any] | None = None  # the home's summary, for why queued jobs wait
        self._tail = LogTail()
        self._copies: dict[str, str] = {}  # output path -> path of its copy under the root
        self.writes = 0                    # traits assigned so far (tests: only changes are sent)
        self.needs_resync = True
        self.resync_at = 0.0
        self.resync_version: int | None = None

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
            if not self.closed:  # shown again (e.g. a notebook reopened): catch up
                self.needs_resync = True
                watch.activate(self)

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
        before = getattr(cached[0], "record", cached[0]) if cached is not None else None
        if cached is not None and not ticking and getattr(before, "updated_at", None) == r.updated_at \
                and getattr(before, "attempts", None) == r.attempts:
            return cached[1]
        return self._tail.last_line(path)

    def _wait(self, r: JobRecord | None, now: float) -> str:
        """Why job ``r`` waits (`nbjobs.text.wait_reason`): a waiting job reads its upstream jobs,
        a queued one with a concurrency key how many of its key run (`nbjobs.api.waiting_reasons`)."""
        if r is None or r.state not in ACTIVE:
            return ""
        if r.state == State.WAITING or (r.state == State.QUEUED and r.concurrency_key):
            from ..api import Job

            return Job(r.id, self.home).wait_reason(r)
        return wait_reason(r, self.wait_summary, now)

    def items(self) -> list[Any]:
        """The rows: records (a job each), or for the panel also groups and their expanded jobs."""
        return list(self.records())

    def render(self, now: float | None = None) -> int:
        """Bring the widgets in line with `records` at time ``now``; returns traits assigned.
        Rows whose record, note, wait and clock did not change reuse their last render."""
        now = time.time() if now is None else now
        renders: dict[str, dict[str, Any]] = {}
        order = []
        active = False
        for r in self.items():
            rec = None if isinstance(r, GroupRow) else getattr(r, "record", r)
            ticking = r.state in TICKING or (r.state == State.QUEUED and rec is not None and
                                             bool(rec.concurrency_key))
            active = active or r.state in ACTIVE
            cached = self._cache.get(r.id)
            wait = self._wait(rec, now)
            if cached is not None and not ticking and (cached[0] is r or cached[0] == r) and cached[3] == wait:
                rd = cached[2]  # same record and wait, no clock: same render (the note moves only with the record)
            else:
                note = "" if rec is None else self._note(rec, ticking)
                rd = row_render(item_view(r, now, note, wait), self.columns, self._link)
                self._cache[r.id] = (r, note, rd, wait)
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
                r = getattr(r, "record", r)
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
        from .. import api

        message = ""
        if action == "logs" and self.toggle_group(job_id):  # a group's row: expand to its jobs, or fold
            return message
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

    def toggle_group(self, group_id: str) -> bool:
        """Expand or fold a group's row; False when ``group_id`` is not a group shown here."""
        return False

    def _updated(self, records: list[JobRecord]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _copy(self, job_id: str) -> str:
        from .. import api

        r = api.get(job_id, home=self.home).record
        if not r.output_path or not Path(r.output_path).exists():
            return "no output notebook yet"
        if lab_server() is None:
            return f"the output notebook is {r.output_path}"
        dest_dir = Path.cwd() / "nbjobs-outputs"
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', r.name)[:40]}-{r.short_id}-{r.attempts}.ipynb"
        copy_for_user(r.output_path, dest)
        self._copies[r.output_path] = str(dest)
        if r.report_path and Path(r.report_path).exists():  # its HTML report goes along, and is linked too
            shutil.copyfile(r.report_path, dest.with_suffix(".html"))
            self._copies[r.report_path] = str(dest.with_suffix(".html"))
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
    from .. import api

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
