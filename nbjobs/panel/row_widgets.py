"""The widgets of one row of jobs (`RowWidgets`): one HTML per cell, the action buttons, the
open-notebook link, a copy button and an expandable area made on first use; `apply` assigns only
what changed.  `Styles`: the layouts and styles every widget of one view shares.  ipywidgets is
imported when the first one is built.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import ACTIONS

if TYPE_CHECKING:
    from .rows_view import RowsView


class Styles:
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


_TOOLTIPS = {"cancel": "cancel the job (a running job's kernel is stopped)",
             "retry": "run this failed, timed-out or cancelled job again (same ID)",
             "logs": "show or hide the tail of the job's log", "pull": "put the job's recorded outputs into "
                                                                       "this notebook's namespace"}


class RowWidgets:
    """The widgets of one row: one HTML per cell, the action buttons and the open-notebook link;
    a copy button and an expandable area (logs, messages) are made on first use.  `apply` sets
    only the entries of a render that changed."""

    def __init__(self, view: "RowsView", job_id: str, render: dict[str, Any]):
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
