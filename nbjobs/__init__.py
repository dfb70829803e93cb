"""nbjobs: run notebooks and notebook cells as durable background jobs.

>>> import nbjobs
>>> job = nbjobs.run_notebook("report.ipynb", parameters={"n": 7})  # doctest: +SKIP
>>> job.wait().result()                                            # doctest: +SKIP

``import nbjobs`` is light: papermill, pandas and ipywidgets load only when a job needs them.
History and metrics (pandas) and plots (matplotlib) load on first use::

    nbjobs.history(since="7D"); nbjobs.sli(); nbjobs.slo(0.99); nbjobs.plot.runtime()

Full-text search of the job history, and the home's database for ad-hoc SQL (sqlite-utils, loaded
on first use)::

    nbjobs.search("KeyError"); nbjobs.db().query("SELECT state, count(*) FROM jobs GROUP BY state")

Two runs side by side, and a run as an HTML page (nbconvert, loaded on first use)::

    nbjobs.compare("8f3a2c", "91bc04"); nbjobs.report("8f3a2c", no_input=True)
"""
from __future__ import annotations

from .errors import NbjobsError
from .job import State
from .outputs import record

__version__ = "0.1.0"

_API = ("Job", "submit", "run_notebook", "get", "jobs", "records", "wait", "result", "logs", "cancel",
        "retry", "worker", "ensure_worker", "summary", "dead_letters", "ack", "prune", "retention", "infra_retries",
        "schedule_add", "schedules", "schedule_show", "schedule_pause", "schedule_resume", "schedule_rm",
        "schedule_run_now", "schedule_backfill", "notify_default", "deliveries", "search", "db", "lookup",
        "waiting_reasons", "compare", "report")

#: sweeps: groups of jobs (nbjobs.sweeps)
_GROUPS = ("sweep", "group", "groups", "Group")

#: history and service levels (nbjobs.metrics; loads pandas on first use)
_METRICS = ("history", "sli", "slo")

__all__ = ["NbjobsError", "State", "record", "__version__", *_API, *_GROUPS, "panel", *_METRICS, "metrics", "plot"]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
    if name in _GROUPS:
        from . import sweeps

        return getattr(sweeps, name)
    if name == "panel":  # the module nbjobs.panel, which is also callable: nbjobs.panel(state="failed")
        import importlib

        return importlib.import_module(".panel", __name__)
    if name in _METRICS:
        from . import metrics

        return getattr(metrics, name)
    if name in ("metrics", "plot"):  # modules loaded on first use: nbjobs.plot.runtime(), nbjobs.metrics.serve()
        import importlib

        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'nbjobs' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)


def load_ipython_extension(ipython) -> None:
    """``%load_ext nbjobs`` registers the ``%%job`` and ``%job`` magics (see `nbjobs.magics`).

    >>> get_ipython().run_line_magic("load_ext", "nbjobs")  # doctest: +SKIP
    """
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython) -> None:
    """``%unload_ext nbjobs`` removes the magics and stops live receipts."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)
