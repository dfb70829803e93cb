"""The panel's widget layer: `PanelView` (header, filters, a grid of rows) and `ReceiptView` (one
row in a card), built from ipywidgets on first display and kept current by the updater thread
(`nbjobs.watch`).  Both are `RowsView`s (`nbjobs.panel.rows_view`), whose rows are `RowWidgets`
(`nbjobs.panel.row_widgets`): a diff of two renders touches only the widgets whose value changed.
The thread only assigns widget traits (ipykernel >= 7.1 publishes them in order, also while a cell
blocks the kernel); it never prints, and displays one thing only:
a receipt shown with a display id (`nbjobs.panel.public.show_job`) is replaced in place by the final
static receipt when its job ends (``update_display``, which the front end routes by display id).

A view leaves the updater when it is closed (``widget.close()``, the panel's own close button), or
when the front end removed every view of it (the cell's output was cleared or the notebook closed:
ipywidgets' ``_view_count`` drops back to 0); a view that no front end ever rendered (papermill, a
console) stays live until its jobs have ended plus `rows_view.DISPLAY_GRACE`.  ipywidgets is imported only
when a live view is first built.
"""
from __future__ import annotations

import html
import sys
from pathlib import Path
from typing import Any

from .. import watch
from ..errors import NbjobsError
from ..job import ACTIVE, JobRecord, State
from ..watch import RESYNC
from .model import COLUMNS, MAX_LIMIT, RECEIPT_COLUMNS, group_items
from .row_widgets import Styles
from .rows_view import RowsView
from .static import header_html

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


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


class ReceiptView(RowsView):
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
            self.styles = Styles(grid=False)
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


class PanelView(RowsView):
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
            self.styles = Styles(grid=True)
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
