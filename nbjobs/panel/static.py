"""Static forms of jobs (HTML and text, no widgets): the state badge, a row's cells, the panel's
header, the receipt and job tables; for notebooks shown by nbconvert or GitHub, terminals, and the
cells of the live widgets (`row_render`).

>>> from nbjobs.job import JobRecord, State
>>> print(table_text([JobRecord(id="ab" * 16, name="etl", kind="notebook", state=State.QUEUED)]))
ID        NAME  KIND      STATE   CELLS  ATTEMPT  QUEUED  STARTED  ELAPSED
abababab  etl   notebook  queued  -      -        -       -        -
"""
from __future__ import annotations

import html
from typing import Any, Callable, Sequence

from ..errors import NbjobsError
from ..job import RETRYABLE, JobRecord, State
from ..text import receipt_text as _receipt_line, table
from .model import COLUMNS, GroupRow, RowView, item_view, row_view


def _record(job_or_record: Any) -> JobRecord:
    return job_or_record if isinstance(job_or_record, JobRecord) else job_or_record.record


def receipt_text(job_or_record: Any) -> str:
    """The receipt as one line of text: ``8f3a2c1d train: running, 2/4 cells, 12s``."""
    return _receipt_line(_record(job_or_record))


_COLORS = {
    State.WAITING: "#6e7781", State.QUEUED: "#6e7781", State.RUNNING: "#0969da", State.RETRYING: "#bf8700",
    State.SUCCEEDED: "#1a7f37", State.FAILED: "#cf222e", State.TIMED_OUT: "#cf222e", State.CANCELLED: "#6e7781",
}


def badge_html(state: str) -> str:
    """The coloured state badge.

    >>> badge_html("failed")[:40]
    '<span class="nbjobs-badge" data-state="f'
    """
    color = _COLORS.get(State(state), "#6e7781")
    return (f'<span class="nbjobs-badge" data-state="{state}" style="background:{color};color:#fff;'
            f'border-radius:3px;padding:1px 6px;font-weight:600;font-size:11px;white-space:nowrap;'
            f'display:inline-block;line-height:16px">{html.escape(state)}</span>')


#: shown beside the state of a running job past its name's usual runtime
SLOW_BADGE = (' <span class="nbjobs-slow" title="running longer than usual: past twice the p95 runtime of its '
              'last successes" style="color:#9a6700;font-weight:600;font-size:11px">slow</span>')


def _ellipsis(text: str, style: str = "") -> str:
    t = html.escape(text)
    return (f'<span title="{t}" style="display:block;overflow:hidden;text-overflow:ellipsis;'
            f'white-space:nowrap;{style}">{t}</span>')


def progress_html(v: RowView) -> str:
    """The cells bar: the user's cells done of all of them (wrapper cells are not counted), filled
    to the point reached in the colour of the job's state, so a job that failed in its second of
    four cells ends red at half; ``-`` before its code began.

    >>> v = row_view(JobRecord(id="ab" * 16, name="x", kind="cell", state=State.FAILED, progress_done=1,
    ...                        progress_total=4))
    >>> print(progress_html(v))  # doctest: +ELLIPSIS
    <span class="nbjobs-progress" data-done="1" data-total="4" ...><span style="...width:25%;background:#cf222e"></span></span> <span class="nbjobs-progress-text">1/4</span>
    """
    if not v.total:
        return '<span style="color:#6e7781">-</span>'
    done = min(v.done, v.total)
    color = _COLORS.get(State(v.state), "#6e7781")
    return (f'<span class="nbjobs-progress" data-done="{done}" data-total="{v.total}" title="{done} of {v.total} '
            f'cells" style="display:inline-block;width:48px;height:8px;background:#d0d7de;border-radius:2px;'
            f'overflow:hidden;vertical-align:middle"><span style="display:block;height:100%;'
            f'width:{round(100 * done / v.total)}%;background:{color}"></span></span> '
            f'<span class="nbjobs-progress-text">{done}/{v.total}</span>')


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
        return badge_html(v.state) + (SLOW_BADGE if v.slow else "")
    if column == "progress":
        return progress_html(v)
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
    if href:  # one label, copy or not (the tooltip tells): a longer one would widen the column
        label = "notebook"
        p += " (a copy under the Jupyter root)" if copied else ""
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
    if v.group_size:  # a group's row: its logs button expands it to its jobs
        out["logs_label"] = "fold" if v.expanded else "jobs"
    if v.report_path:
        report_href = link(v.report_path)[0] if link else None
        out["open"] += report_link_html(v.report_path, files_url(report_href) if report_href else None,
                                        bool(out["open"]))
    return out


def files_url(lab_url: str) -> str:
    """The URL that serves a file as it is (``/files/...``) from the one that opens it in JupyterLab
    (``/lab/tree/...``): a report opens as a page of its own.

    >>> files_url("/user/ann/lab/tree/runs/report.html")
    '/user/ann/files/runs/report.html'
    """
    head, sep, tail = lab_url.partition("lab/tree/")
    return head + "files/" + tail if sep else lab_url


def report_link_html(path: str, href: str | None, after: bool = False) -> str:
    """The row's link to the HTML report (opens in a new tab), or its path where no link can be made.

    >>> report_link_html("/r/report.html", "/files/r/report.html")[:62]
    '<a class="nbjobs-report" href="/files/r/report.html" target="_'
    """
    p = html.escape(path)
    sep = " &middot; " if after else ""
    if href:
        return (f'{sep}<a class="nbjobs-report" href="{html.escape(href)}" target="_blank" rel="noopener" title="{p}" '
                f'style="color:var(--jp-content-link-color,#0969da);text-decoration:underline">report</a>')
    return f'{sep}<code class="nbjobs-report-path" title="{p}" style="user-select:all;font-size:10px">report: {p}</code>'


# --- two runs compared (nbjobs.compare) ---------------------------------------------------------------------
def _h(v: Any) -> str:
    return html.escape(str(v))


def comparison_html(d: dict[str, Any]) -> str:
    """Two runs compared (`nbjobs.comparison.Comparison.to_dict`) as HTML tables: what
    ``nbjobs.compare(a, b)`` shows in a notebook."""
    from ..text import fmt_delta, fmt_duration, fmt_value, first_line

    def tbl(head: Sequence[str], rows: list[Sequence[str]], cls: str) -> str:
        th = "".join(f"<th style='text-align:left'>{h}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{c}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table class='{cls}' style='font-size:12px'><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"

    def side(label: str, s: dict[str, Any]) -> list[str]:
        return [label, f"<code title='{_h(s['id'])}'>{_h(s['short_id'])}</code>", _h(s["name"]), badge_html(s["state"]),
                str(s["attempt"]), _h(fmt_duration(s["runtime_s"], precise=True))]

    parts = ["<div class='nbjobs-compare'>",
             tbl(("", "ID", "name", "state", "attempt", "runtime"), [side("a", d["a"]), side("b", d["b"])],
                 "nbjobs-compare-runs")]
    differ, same = d["parameters"]["differ"], d["parameters"]["same"]
    parts.append("<h4 style='margin:8px 0 2px'>parameters that differ</h4>")
    if differ:
        parts.append(tbl(("name", "a", "b"), [
            (_h(k), _h(fmt_value(v["a"])) if "a" in v["in"] else "-", _h(fmt_value(v["b"])) if "b" in v["in"] else "-")
            for k, v in differ.items()], "nbjobs-compare-parameters"))
    else:
        parts.append("<p>none</p>")
    if same:
        parts.append(f"<p style='color:#57606a'>the same: {_h(', '.join(same))}</p>")
    parts.append("<h4 style='margin:8px 0 2px'>outputs</h4>")
    outs = d["outputs"]
    if outs:
        parts.append(tbl(("name", "a", "b", "delta", ""), [
            (_h(k), _h(fmt_value(v["a"])) if "a" in v["in"] else "-", _h(fmt_value(v["b"])) if "b" in v["in"] else "-",
             _h(fmt_delta(v["delta"], v["a"])), "same" if v["same"] else "<b>differs</b>" if len(v["in"]) == 2 else "")
            for k, v in outs.items()], "nbjobs-compare-outputs"))
    else:
        parts.append("<p>none recorded</p>")
    c = d["code"]
    rows = [("code hash", _h(c["a"]), _h(c["b"]), "same" if c["same"] else "<b>differs</b>")]
    rows += [(_h(k), _h(v["a"]), _h(v["b"]), "same" if v["same"] else "<b>differs</b>") for k, v in d["versions"].items()]
    parts += ["<h4 style='margin:8px 0 2px'>code and versions</h4>",
              tbl(("", "a", "b", ""), rows, "nbjobs-compare-versions")]
    first = d["first_difference"]
    parts.append("<h4 style='margin:8px 0 2px'>first cell whose text output differs</h4>")
    if first:
        def pre(text: str | None) -> str:
            body = "(no such cell)" if text is None else (text or "(no text output)")
            return f"<pre style='margin:0;font-size:11px;max-height:160px;overflow:auto'>{_h(body)}</pre>"
        parts.append(f"<p>cell {first['cell']}: <code>{_h(first['source'])}</code></p>"
                     + tbl(("a", "b"), [(pre(first["a"]), pre(first["b"]))], "nbjobs-compare-first"))
    else:
        parts.append("<p>none</p>" if d["cells"] else "<p>(an output notebook is missing)</p>")
    fails = []
    for label in ("a", "b"):
        f = d["failed"].get(label)
        if f:
            where = f" at cell {f['cell']}" if f["cell"] is not None else ""
            src = f" (<code>{_h(f['source'])}</code>)" if f.get("source") else ""
            err = f": {_h(f['error_type'])}: {_h(first_line(f['error_message'], 200))}" if f["error_type"] else ""
            fails.append(f"<li><b>{label}</b> {badge_html(f['state'])}{where}{src}{err}</li>")
    parts.append("<h4 style='margin:8px 0 2px'>failed</h4>"
                 + (f"<ul style='margin:0'>{''.join(fails)}</ul>" if fails else "<p>neither</p>"))
    if d["cells"]:
        def sec(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"
        parts += ["<h4 style='margin:8px 0 2px'>cell durations (seconds)</h4>",
                  tbl(("cell", "a", "b", "delta", "source"), [
                      (str(x["cell"]), sec(x["a_s"]), sec(x["b_s"]), "" if x["delta_s"] is None else f"{x['delta_s']:+.3f}",
                       f"<code>{_h(x['source'])}</code>") for x in d["cells"]], "nbjobs-compare-cells")]
    return "".join(parts) + "</div>"


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
    if r.state.terminal:  # what the live receipt's buttons did, for a page that has no kernel behind it
        verbs = ["logs"] + (["pull"] if r.state == State.SUCCEEDED else []) + (["retry"] if r.state in RETRYABLE else [])
        hints = " &middot; ".join(f'<code style="user-select:all">%job {verb} {r.short_id}</code>' for verb in verbs)
        out += f'<div class="nbjobs-hints" style="color:#6e7781">{hints}</div>'
    return out + "</div>"


TEXT_HEAD = ("ID", "NAME", "KIND", "STATE", "CELLS", "ATTEMPT", "QUEUED", "STARTED", "ELAPSED")


def table_text(records: Sequence[Any], now: float | None = None) -> str:
    """Records as an aligned text table (what a terminal shows for a `JobList` or `Panel`); a
    `GroupRow` is one row for its group."""
    if not records:
        return "no jobs yet; submit one with %%job or %job run NOTEBOOK"
    views = [item_view(r, now) for r in records]
    return table(TEXT_HEAD, ((v.short_id, v.name[:30], v.kind, v.state + (" (slow)" if v.slow else ""), v.progress,
                              v.attempt, v.queued, v.started, v.elapsed) for v in views))


def table_html(records: Sequence[Any], now: float | None = None) -> str:
    """Records as a static HTML table with the panel's cells (no actions).

    >>> table_html([JobRecord(id="ab" * 16, name="etl", kind="cell", state=State.FAILED)])[:30]
    "<table class='nbjobs-jobs' sty"
    """
    if not records:
        return f"<p>{html.escape(table_text([]))}</p>"
    head = "".join(f"<th style='text-align:left'>{h}</th>" for h in COLUMNS.values())
    body = []
    for r in records:
        v = item_view(r, now)
        cells = "".join(f"<td style='text-align:left;max-width:320px'>{cell_html(v, c)}</td>" for c in COLUMNS)
        body.append(f"<tr data-job-id='{r.id}'>{cells}</tr>")
    return (f"<table class='nbjobs-jobs' style='font-size:12px'><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")



def group_html(group: Any) -> str:
    """A group (a sweep) as static HTML: its row (badge, name, ID, ``n/N`` jobs ended, counts) and a
    table of its jobs, each named by its parameters.  What a `nbjobs.Group` shows in a notebook."""
    try:
        counts = group.counts()
        recs = group.records()
    except NbjobsError as exc:
        return f'<div class="nbjobs-group"><code>{html.escape(str(exc))}</code></div>'
    g = GroupRow.of(group.id, dict(counts, name=group.name))
    v = item_view(g)
    head = (f'<div class="nbjobs-group" data-group-id="{group.id}" data-state="{v.state}" '
            f'style="font-family:var(--jp-code-font-family,monospace);font-size:12px;line-height:1.7">'
            f'{badge_html(v.state)} <b>{html.escape(v.name)}</b> {cell_html(v, "id")} '
            f'<span style="color:#6e7781">sweep</span> &middot; {cell_html(v, "progress")} jobs ended'
            f' &middot; {html.escape(v.note)}</div>')
    from .model import Member

    return head + table_html([Member(r) for r in recs])
