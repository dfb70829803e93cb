"""Two runs side by side (`compare`, built by `nbjobs.comparison`) and a run as a standalone HTML
page (`report`, rendered by `nbjobs.reports`).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import BadInput
from ..job import short_id
from .handle import Job, _store


def compare(a: str | Job, b: str | Job, home: Path | str | None = None):
    """Compare two runs (job IDs, unique prefixes or handles), each by its latest attempt: the
    parameters that differ, recorded outputs side by side (numbers with their delta), code hash
    and versions, per-cell durations (from the output notebooks' papermill metadata), the first
    cell whose text output differs, and which one failed where.  Returns a `nbjobs.comparison.Comparison`:
    a table in a notebook, text in a terminal, ``.to_dict()`` for scripts.

    >>> c = nbjobs.compare("8f3a2c", "91bc04")           # doctest: +SKIP
    >>> c.to_dict()["outputs"]["total"]                  # doctest: +SKIP
    {'a': 91, 'b': 120, 'delta': 29, 'same': False}
    """
    from ..comparison import build

    ids = [x.id if isinstance(x, Job) else _store(home).resolve(x) for x in (a, b)]
    return build(Job(ids[0], home), Job(ids[1], home))


def report(job_id: str | Job, *, no_input: bool = False, output: str | os.PathLike | None = None,
           attempt: int | None = None, home: Path | str | None = None) -> Path:
    """Render a job's output notebook (its latest attempt's, or ``attempt``'s) to a standalone HTML
    page with nbconvert; returns its path.  ``no_input`` leaves the code out (outputs and markdown
    stay).  Default place: the attempt's run folder (``report.html``, ``report-no-input.html``);
    the full report of the latest attempt is then what ``nbjobs show`` and the panel link to.

    >>> nbjobs.report("8f3a2c", no_input=True, output="q3.html")   # doctest: +SKIP
    PosixPath('q3.html')
    """
    from .. import reports

    store = _store(home)
    full = job_id.id if isinstance(job_id, Job) else store.resolve(job_id)
    rec = store.get(full)
    rows = store.attempts(full)
    if attempt is not None:
        rows = [r for r in rows if r["number"] == attempt]
        if not rows:
            raise BadInput(f"job {short_id(full)} has no attempt {attempt} (it has {rec.attempts})")
    row = next((r for r in reversed(rows) if r.get("output_path") and Path(r["output_path"]).exists()), None)
    if row is None:
        hint = f"; wait for it with `nbjobs wait {short_id(full)}`" if rec.state.active else ""
        raise BadInput(f"job {short_id(full)} ({rec.state}) has no output notebook to render{hint}")
    src = Path(row["output_path"])
    dest = Path(output).expanduser().absolute() if output is not None else src.parent / reports.default_name(no_input)
    if dest.suffix.lower() not in (".html", ".htm"):
        raise BadInput(f"the report is an HTML page: give -o a file name ending in .html, not {dest.name!r}")
    if not dest.parent.is_dir():
        raise BadInput(f"folder {dest.parent} does not exist; create it or give -o another path")
    reports.render(src, dest, no_input=no_input, title=rec.name)
    if output is None and not no_input:
        store.set_report(full, row["number"], str(dest))
    return dest
