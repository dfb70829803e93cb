"""The panel's widget layer: `PanelView` (header, filters, a grid of rows) and `ReceiptView` (one
row in a card), built from ipywidgets on first display and kept current by the updater thread
(`nbjobs.watch`).  `RowWidgets` (one row's widgets) applies a diff of two renders, touching only the
widgets whose value changed.  The thread only assigns widget traits (ipykernel >= 7.1 publishes
them in order, also while a cell blocks the kernel); it never prints, and displays one thing only:
a receipt shown with a display id (`nbjobs.panel.public.show_job`) is replaced in place by the final
static receipt when its job ends (``update_display``, which the front end routes by display id).

A view leaves the updater when it is closed (``widget.close()``, the panel's own close button), or
when the front end removed every view of it (the cell's output was cleared or the notebook closed:
ipywidgets' ``_view_count`` drops back to 0); a view that no front end ever rendered (papermill, a
console) stays live until its jobs have ended plus `DISPLAY_GRACE`.  ipywidgets is imported only
when a live view is first built.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .. import watch
from ..errors import BadInput, NbjobsError
from ..job import ACTIVE, JobRecord, State
from ..text import names_and_types, wait_reason
from ..watch import RESYNC
from .files import LogTail, copy_for_user, lab_href, lab_server, log_file
from .model import (ACTIONS, COLUMNS, MAX_LIMIT, RECEIPT_COLUMNS, TICKING, GroupRow, diff_rows, group_items,
                    item_view)
from .static import header_html, row_render

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
#: a view no front end has rendered stays live this long after its jobs ended
DISPLAY_GRACE = 600.0


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


def wanted(include, exclude) -> bool:
    """Whether a display bundle may hold a widget (the front end did not exclude the widget type)."""
    return (not include or WIDGET_MIME in include) and not (exclude and WIDGET_MIME in exclude)


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
            b = w.Button(description=render.get("logs_label", a) if a == "logs" else a, disabled=not render[a],
                         layout=st.button, style=st.button_style,
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
            elif k == "logs_label":
                self.buttons["logs"].description = val
            elif k == "copy":
                if val and self.copy is None:
                    self._add_copy()
                elif not val and self.copy is not None:  # copied: the link takes the button's place
                    self.actions.children = tuple(c for c in self.actions.children if c is not self.copy)
                    self.copy.close()
                    self.copy = None
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


class _RowsView(watch.View):
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
        self.styles: _Styles | None = None
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


class ReceiptView(_RowsView):
    """The live receipt of one job: one row of the panel's component in a card."""

    columns = RECEIPT_COLUMNS

    def __init__(self, job: Any, display_id: str | None = None):
        super().__init__(Path(job.home))
        self.job_id = job.id
        self.record = job.record
        self.display_id = display_id  # the output to replace by the final receipt when the job ends

    def build(self) -> Any:
        import ipywidgets as w

        with self.lock:
            self.styles = _Styles(grid=False)
            self.line = w.HBox([], layout=w.Layout(flex_flow="row wrap", align_items="center"))
            self.root = w.VBox([self.line], _dom_classes=("nbjobs-receipt", f"nbjobs-job-{self.job_id[:8]}"))
            if self.record.state == State.QUEUED:
                from .. import api

                self.wait_summary = api.summary(home=self.home)
            self.render()
            self.needs_resync = False
            self._watch_views()
        watch.activate(self)
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

    def refresh(self, tick: watch.Tick) -> None:
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
            if self.record.state == State.QUEUED:
                self.wait_summary = tick.summary()[1]
            self.render(tick.now)
            if self.display_id is not None and self.record.state not in ACTIVE:
                self._finalize()

    def _finalize(self) -> None:
        """The job ended: replace the whole output (widget and fallback) by its final static receipt,
        which a saved notebook, a restarted kernel and nbviewer show as it is."""
        from IPython.display import update_display

        from .public import final_bundle

        display_id, self.display_id = self.display_id, None
        update_display(final_bundle(self.record), raw=True, display_id=display_id)

    def _close_widgets(self) -> None:
        for x in (getattr(self, "line", None), self.root):
            if x is not None:
                x.close()


class PanelView(_RowsView):
    """The live panel: header, filters, a close button, and a grid with one row per job."""

    grid = True
    _TEMPLATE = ("68px minmax(56px,1fr) 64px 92px 88px 60px 62px 62px 58px minmax(90px,2fr) "
                 "max-content")

    def __init__(self, panel: "Panel"):
        super().__init__(panel.home)
        self.model = panel.model
        self.summary_gen = -1
        self.summary: dict[str, Any] | None = None
        self.groups: dict[str, dict[str, Any]] = {}        # counts of the groups among the rows
        self.expanded: set[str] = set()                    # groups shown with their jobs
        self.members: dict[str, dict[str, JobRecord]] = {}  # the jobs of the expanded groups

    def items(self) -> list[Any]:
        """Jobs, and a group's jobs folded into one row (expanded: followed by its jobs)."""
        members = {g: sorted(d.values(), key=lambda r: (r.options.get("sweep_index", 0), r.id))
                   for g, d in self.members.items()}
        return group_items(self.model.records, self.groups, self.expanded, members)

    def _read_groups(self, store: Any = None, changed: set[str] | None = None) -> None:
        """Re-read the counts of the groups among the rows (all, or only when one of ``changed``
        is shown or a shown group is not known yet), from ``store`` (the updater's) or through
        `nbjobs.sweeps.group_counts`."""
        shown = {r.group_id for r in self.model.records if r.group_id}
        if changed is not None and not (changed & shown) and shown <= set(self.groups):
            return
        if not shown:
            self.groups = {}
        elif store is not None:
            self.groups = store.group_counts(shown)
        else:
            from ..sweeps import group_counts

            self.groups = group_counts(shown, home=self.home)
        for gid in list(self.expanded):
            if gid not in self.groups:
                self.expanded.discard(gid)
                self.members.pop(gid, None)

    def toggle_group(self, group_id: str) -> bool:
        from ..sweeps import Group

        with self.lock:
            if group_id not in self.groups or self.closed:
                return False
            if group_id in self.expanded:
                self.expanded.discard(group_id)
                self.members.pop(group_id, None)
            else:
                self.expanded.add(group_id)
                self.members[group_id] = {r.id: r for r in Group(group_id, self.home).records()}
            self.render()
        return True

    def build(self, records: list[JobRecord], summary: dict[str, Any]) -> Any:
        import ipywidgets as w

        with self.lock:
            self.styles = _Styles(grid=True)
            m = self.model
            self.header = w.HTML(value=header_html(summary), _dom_classes=("nbjobs-summary",))
            self.summary = self.wait_summary = summary
            state_options = [("all states", "all"), ("active", "active")] + [(s.value, s.value) for s in State]
            current = ",".join(m.states) if m.states else "all"
            if m.states is not None and set(m.states) == {x.value for x in ACTIVE}:
                current = "active"  # not "waiting,queu..." in a narrow box
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
            self._read_groups()
            self.render()
            self.needs_resync = False
            self._watch_views()
        watch.activate(self)
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
        from .. import api

        with self.lock:
            if self.closed:
                return
            try:
                self.model.set_filters(self.f_state.value, self.f_name.value, self.f_tag.value,
                                       int(self.f_limit.value))
                self.model.reset(self.model.query(lambda **kw: api.records(home=self.home, **kw)))
                self._read_groups()
            except NbjobsError as exc:
                self.note.value = f'<span style="color:#cf222e">{html.escape(str(exc))}</span>'
                return
            self.render()
            self._place()

    def refresh(self, tick: watch.Tick) -> None:
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
            changed_groups = {r.group_id for r in tick.changed.values() if r.group_id}
            for r in tick.changed.values():
                if r.group_id in self.members:
                    self.members[r.group_id][r.id] = r
            self._read_groups(tick.home.store, None if need else changed_groups)
            gen, summary = tick.summary()
            self.wait_summary = summary
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

