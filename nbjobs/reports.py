"""Reports: an attempt's output notebook rendered to one standalone HTML page with nbconvert.

``nbjobs report ID [--no-input] [-o FILE]`` (`nbjobs.report`) renders on demand; a job submitted
with ``--report html`` (``report="html"``) is rendered by its worker once it succeeded, into its
run folder (``runs/<id>/<n>/report.html``), by a `Reporter` thread beside the worker's loop, so a
render never delays a claim or the record of an ending.  ``nbjobs show`` and the panel's row link
to it.  Output notebooks are already redacted of secrets by the runner, so reports are too.

nbconvert is imported when a report is first rendered, never by ``import nbjobs``.

>>> default_name(no_input=True)
'report-no-input.html'
"""
from __future__ import annotations

import os
import queue
import sys
import threading
from pathlib import Path

#: the formats ``--report`` takes
FORMATS = ("html",)


def default_name(no_input: bool = False) -> str:
    """The report's file name in an attempt's folder."""
    return "report-no-input.html" if no_input else "report.html"


def render(notebook: str | os.PathLike, dest: str | os.PathLike, *, no_input: bool = False,
           title: str | None = None) -> Path:
    """Render ``notebook`` to ``dest`` as a standalone HTML page (nbconvert's ``lab`` template, its
    CSS inline); ``no_input`` leaves the code out (outputs and markdown stay).  Written to a
    temporary file first, then renamed, so a reader never sees half a page.  Returns ``dest``."""
    import nbformat
    from nbconvert import HTMLExporter

    src, dest = Path(notebook), Path(dest)
    nb = nbformat.read(src, as_version=4)
    exporter = HTMLExporter(template_name="lab", exclude_input=no_input, exclude_input_prompt=no_input,
                            exclude_output_prompt=no_input)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title or src.stem}})
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(body)
    os.replace(tmp, dest)
    return dest


class Reporter(threading.Thread):
    """A worker's report thread: renders the output notebooks of attempts that succeeded with
    ``--report html`` into their folders and records each report (`Store.set_report`), on its
    own SQLite connection.  `stop` renders what is queued, then ends."""

    def __init__(self, home: Path | str):
        super().__init__(name="nbjobs-reporter", daemon=True)
        self.home = Path(home)
        self.todo: queue.Queue = queue.Queue()

    def put(self, job_id: str, number: int, output_path: str, title: str | None = None) -> None:
        self.todo.put((job_id, number, output_path, title))

    def stop(self, timeout: float = 60.0) -> None:
        self.todo.put(None)
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        from . import config
        from .store import Store

        store = Store(config.db_path(self.home))
        try:
            while True:
                item = self.todo.get()
                if item is None:
                    return
                job_id, number, output_path, title = item
                try:
                    dest = render(output_path, Path(output_path).parent / default_name(), title=title)
                    store.set_report(job_id, number, str(dest))
                except Exception as exc:  # noqa: a report that cannot be rendered must not stop the others
                    print(f"nbjobs worker: the report of job {job_id[:8]} attempt {number} failed: "
                          f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            store.close()


__all__ = ["render", "default_name", "Reporter", "FORMATS"]
