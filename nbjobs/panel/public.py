"""The panel's public objects: `panel` / `Panel` (the live table of a home's recent jobs), `Receipt`
(one job's live row), `job_bundle` and `show_job` (how a `nbjobs.Job` displays) and `JobList` (what ``%job ls``
returns).  Each shows as a live widget in a kernel that can show one (`live_possible`), else as
text and static HTML.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from .. import config
from ..errors import NbjobsError
from ..job import TERMINAL, JobRecord
from .model import DEFAULT_LIMIT, PanelModel, RowView, group_items, row_view
from .static import header_html, header_text, receipt_html, receipt_text, table_html, table_text
from .widgets import WIDGET_MIME, PanelView, ReceiptView, live_possible, wanted


class JobList(list):
    """Jobs as `%job ls` returns them: a list of `Job` handles that shows itself as a table
    (text in a terminal, HTML in a notebook).  ``jobs = _`` keeps the handles.

    >>> JobList([]).records
    []
    """

    def __init__(self, records: Sequence[JobRecord] = (), home: Path | str | None = None):
        from ..api import Job

        super().__init__(Job(r.id, home) for r in records)
        self.records = list(records)

    def __repr__(self) -> str:
        return table_text(self.records)

    def _repr_html_(self) -> str:
        return table_html(self.records)


class Receipt:
    """The receipt of one job.  ``Receipt(job).widget()`` is the live component (the panel's row
    for this one job) kept current by the updater thread while it is displayed; displaying a
    `Receipt` shows it live when `live_possible`, else as a static snapshot (text and HTML).

    >>> r = Receipt(nbjobs.get("8f3a2c"))   # doctest: +SKIP
    >>> r                                   # doctest: +SKIP
    """

    def __init__(self, job: Any, display_id: str | None = None):
        self.job = job
        self.display_id = display_id  # where it was displayed (`show_job`): replaced when the job ends
        self.view: ReceiptView | None = None

    def html(self) -> str:
        return receipt_html(self.job)

    def widget(self) -> Any:
        """The live widget (built and registered with the updater on first use)."""
        if self.view is None:
            self.view = ReceiptView(self.job, self.display_id)
            self.view.build()
        return self.view.root

    def close(self) -> None:
        if self.view is not None:
            self.view.close()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        return job_bundle(self.job, include, exclude, receipt=self)


def job_bundle(job: Any, include=None, exclude=None, receipt: Receipt | None = None) -> dict[str, Any]:
    """The display bundle of a `Job`: text, a static HTML receipt and - in a kernel that can show
    widgets - the live receipt (its buttons: cancel while active; logs, pull, retry after)."""
    try:
        rec = job.record
    except NbjobsError:
        return {"text/plain": repr(job)}
    data = {"text/plain": repr(job), "text/html": receipt_html(rec)}
    if wanted(include, exclude) and live_possible():
        widget = (receipt or Receipt(job)).widget()
        data[WIDGET_MIME] = widget._repr_mimebundle_()[WIDGET_MIME]
    return data


def final_bundle(record: JobRecord) -> dict[str, Any]:
    """What a job's receipt becomes when the job ends: text and static HTML, no widget (a widget
    would show "model not found" once its kernel is gone)."""
    return {"text/plain": receipt_text(record), "text/html": receipt_html(record)}


def show_job(job: Any) -> None:
    """Display ``job``'s receipt with a display id.  While the job is active the receipt is live;
    when it ends, the updater replaces the whole output in place (``update_display``) by
    `final_bundle`.  A job that had ended when displayed keeps its live receipt (logs, pull and
    retry buttons) with the static receipt as the fallback."""
    import secrets

    from IPython.display import display

    try:
        active = job.record.state not in TERMINAL
    except NbjobsError:
        active = False
    display_id = f"nbjobs-{job.short_id}-{secrets.token_hex(4)}" if active else None
    display(job_bundle(job, receipt=Receipt(job, display_id)), raw=True, display_id=display_id)


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
        self.model = PanelModel(state, name, tag, limit)
        self.home = Path(home) if home else config.home()
        self.view: PanelView | None = None

    def records(self) -> list[JobRecord]:
        """The rows' records, read afresh."""
        from .. import api

        return self.model.query(lambda **kw: api.records(home=self.home, **kw))

    def items(self) -> list[Any]:
        """The rows, read afresh: jobs, with a group's jobs folded into one `GroupRow`."""
        from ..sweeps import group_counts

        records = self.records()
        ids = {r.group_id for r in records if r.group_id}
        return group_items(records, group_counts(ids, home=self.home) if ids else {})

    def summary(self) -> dict[str, Any]:
        from .. import api

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
            return f"nbjobs {self.home}: {header_text(self.summary())}\n{table_text(self.items())}"
        except NbjobsError as exc:
            return f"<nbjobs panel: {exc}>"

    def _repr_html_(self) -> str:
        return header_html(self.summary()) + table_html(self.items())

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        data = {"text/plain": repr(self)}
        if wanted(include, exclude) and live_possible():
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

