"""Where attempts run.  The worker loop talks to an `Executor` and nothing else, so a new place
to run (a Dask cluster) is a new executor, not a change to the worker.

An executor starts an attempt from its spec (see `nbjobs.runner.run_attempt`) and forwards the
runner's events to ``report`` (first ``{"type": "placing"}`` when the attempt waits for a place
with its resources); when the attempt is over it reports ``{"type": "exit",
"returncode": int}`` last.  ``stop`` asks the attempt to stop (interrupt, then kill the kernel);
``kill`` ends it at once.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

from ..errors import BadInput

Report = Callable[[dict], None]


class Handle:
    """One attempt started by an executor."""

    def __init__(self, spec: dict[str, Any]):
        self.spec = spec
        self.job_id: str = spec["job_id"]
        self.number: int = spec["attempt"]
        self.kernel_pid: int | None = None


class Executor(ABC):
    name = "executor"

    @abstractmethod
    def start(self, spec: dict[str, Any], report: Report) -> Handle:
        """Start one attempt; return at once."""

    @abstractmethod
    def stop(self, handle: Handle) -> None:
        """Ask a running attempt to stop: interrupt its kernel, kill it after a grace period."""

    @abstractmethod
    def kill(self, handle: Handle) -> None:
        """End a running attempt now (runner and kernel)."""

    def renew(self, handle: Handle, fence_at: float) -> None:
        """The worker renewed its lease on this attempt; an executor that can end an attempt by
        itself when its worker stops renewing (see `nbjobs.runner.serve`) lets it run until
        ``fence_at`` (epoch seconds).  Optional."""

    def offers(self) -> list[dict[str, float]]:
        """The resources of each place this executor runs attempts (a Dask worker's declared
        ``--resources``), for placement: a job that needs resources none of them has is not
        claimed (`nbjobs.policy.fits`).  The local executor offers none."""
        return []

    def begin(self) -> None:
        """Get ready before the first attempt (e.g. start processes, warm kernels); optional."""

    def shutdown(self) -> None:
        """Release resources; running attempts have already been stopped by the worker."""


NAMES = ("local", "dask")


def get_executor(name: str | None = None, *, scheduler: str | None = None, **options: Any) -> Executor:
    """The executor called ``name``: ``local`` (the default) or ``dask``, built with ``options``
    (for ``local``: ``concurrency``, ``pool``, ``kernels``, ``workdir``, ``mode``, ``preload``; for ``dask``:
    ``pool``, warm kernels per Dask worker, ``kernels``, ``n_workers``, ``ship_limit``, ``storage``).

    ``name`` and ``scheduler`` default to ``$NBJOBS_EXECUTOR`` and ``$NBJOBS_SCHEDULER``.  For
    ``dask``, ``scheduler`` is the Dask scheduler's address (``tcp://host:8786``); without one a
    `LocalCluster` sized to this machine is started.

    >>> get_executor("local").name
    'local'
    """
    import os

    name = name or os.environ.get("NBJOBS_EXECUTOR") or "local"
    scheduler = scheduler or os.environ.get("NBJOBS_SCHEDULER") or None
    if name == "local":
        if scheduler and "NBJOBS_SCHEDULER" not in os.environ:
            raise BadInput("--scheduler is for the dask executor; add --executor dask")
        from .local import LocalExecutor

        return LocalExecutor(**options)
    if name == "dask":
        try:
            from .dask import DaskExecutor
        except ImportError:  # pragma: no cover - the module itself imports no Dask at import
            raise BadInput("the dask executor needs the dask extra: pip install 'nbjobs[dask]'") from None
        return DaskExecutor(scheduler, **options)
    raise BadInput(f"unknown executor {name!r}; use one of {', '.join(NAMES)}")
