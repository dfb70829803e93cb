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

The package, layered so most of it is testable without a browser:

- `nbjobs.panel.model`: the view model (pure): `row_view` turns a `JobRecord` into a `RowView` of
  display strings, `diff_rows` compares two renders, `PanelModel` keeps the filtered,
  newest-first list of records current from changed rows.
- `nbjobs.panel.static`: HTML and text forms (badge, cells, header, receipt, tables), for
  terminals, nbconvert and GitHub, and the cells of the live widgets (`row_render`).
- `nbjobs.panel.files`: links that open output notebooks in JupyterLab, log tails.
- `nbjobs.panel.widgets`: the ipywidgets layer (`PanelView`, `ReceiptView`), kept current by the one
  updater thread of `nbjobs.watch`; what both share is `nbjobs.panel.rows_view` (`RowsView`: rows,
  their actions, when a view goes dormant), one row's widgets `nbjobs.panel.row_widgets` (`RowWidgets`).
- `nbjobs.panel.public`: `panel`, `Panel`, `Receipt`, `job_bundle`, `JobList`.

``nbjobs.panel`` is this package and, called, the `panel` function: ``nbjobs.panel(state="failed")``.
"""
from __future__ import annotations

import sys
import types
from typing import Any

from ..text import fmt_duration, fmt_time, job_detail, names_and_types, summary_text
from ..watch import unwatch_all, watch
from .files import LogTail, lab_href, lab_server, log_file, read_tail
from .model import (ACTIONS, COLUMNS, DEFAULT_LIMIT, MAX_LIMIT, RECEIPT_COLUMNS, PanelModel, RowsDiff, RowView,
                    diff_rows, parse_states, row_view)
from .public import JobList, Panel, Receipt, job_bundle, panel
from .row_widgets import RowWidgets
from .static import (TEXT_HEAD, badge_html, cell_html, executors_html, header_html, header_text, open_html,
                     receipt_html, receipt_text, row_render, table_html, table_text)
from .widgets import WIDGET_MIME, PanelView, ReceiptView, live_possible

#: the detail view of one job, by its name before `nbjobs.text`
status_text = job_detail

__all__ = ["panel", "Panel", "PanelModel", "RowView", "row_view", "row_render", "diff_rows", "Receipt",
           "JobList", "job_bundle", "receipt_html", "receipt_text", "live_possible", "watch", "unwatch_all",
           "summary_text", "fmt_duration", "lab_href", "header_html"]


class _PanelModule(types.ModuleType):
    """``nbjobs.panel`` is this package and, called, the `panel` function: ``nbjobs.panel()``."""

    def __call__(self, *args: Any, **kwargs: Any) -> Panel:
        return panel(*args, **kwargs)


sys.modules[__name__].__class__ = _PanelModule
