"""nbjobs: run notebooks and notebook cells as durable background jobs.

>>> import nbjobs
>>> job = nbjobs.run_notebook("report.ipynb", parameters={"n": 7})  # doctest: +SKIP
>>> job.wait().result()                                            # doctest: +SKIP

``import nbjobs`` is light: papermill, pandas and ipywidgets load only when a job needs them.
"""
from __future__ import annotations

from .errors import NbjobsError
from .job import State
from .outputs import record

__version__ = "0.1.0"

_API = ("Job", "submit", "run_notebook", "get", "jobs", "records", "wait", "result", "logs", "cancel",
        "retry", "worker", "ensure_worker", "summary", "dead_letters", "ack", "prune", "retention")

__all__ = ["NbjobsError", "State", "record", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        return getattr(api, name)
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
