"""Acting on jobs: `cancel` and `retry` (a job, or a group's jobs), and running a `worker` here.
"""
from __future__ import annotations

from pathlib import Path

from .. import wake
from ..errors import BadInput
from ..store import actor_name
from .checks import _check_int, check_preload
from .handle import Job, _store
from .submitting import ensure_worker


def cancel(job_id: str, home: Path | str | None = None) -> "Job | Group":
    """Cancel a job: at once if it has not started; a running job's kernel is stopped by its worker
    within about a second.  Works from any process.  A group's ID cancels its unfinished jobs."""
    store = _store(home)
    kind, full = store.resolve_any(job_id)
    if kind == "group":
        from ..sweeps import Group

        return Group(full, home).cancel()
    store.request_cancel(full, actor_name("api"))
    wake.poke(store.path)
    return Job(full, home)


def retry(job_id: str, home: Path | str | None = None, start_worker: bool = True) -> "Job | Group":
    """Run a failed, timed-out or cancelled job again under the same ID (attempts continue).  A
    group's ID retries its failed, timed-out and cancelled jobs."""
    store = _store(home)
    kind, full = store.resolve_any(job_id)
    if kind == "group":
        from ..sweeps import Group

        return Group(full, home).retry(start_worker=start_worker)
    store.retry(full, actor_name("api"))
    wake.poke(store.path)
    if start_worker:
        ensure_worker(home)
    return Job(full, home)


def worker(concurrency: int | None = None, executor: str | None = None, idle_exit: float | None = None,
           home: Path | str | None = None, scheduler: str | None = None, pool: int | None = None,
           kernels: str | None = None, preload: str | list[str] | None = None) -> int:
    """Run a worker in this process until it is stopped (Ctrl-C) or idle for ``idle_exit`` seconds.

    ``executor``: ``local`` (default, or ``$NBJOBS_EXECUTOR``) or ``dask``; with ``dask``,
    ``scheduler`` is the Dask scheduler's address (default ``$NBJOBS_SCHEDULER``; none starts a
    LocalCluster sized to this machine).  ``concurrency`` defaults to 1 for ``local`` and to the
    cluster's threads for ``dask``.  ``pool`` (local): kernels kept started ahead of need, each for
    one job only (default: one per concurrency slot; 0: every kernel starts with its job).
    ``kernels`` (local): ``fork`` (default on Linux: a zygote forks each job's kernel), ``pool`` or
    ``cold``; ``preload``: modules every job's kernel has imported (``"pandas,numpy"``).
    Returns the number of attempts run.

    >>> nbjobs.worker(concurrency=2, idle_exit=30)                          # doctest: +SKIP
    >>> nbjobs.worker(executor="dask", scheduler="tcp://scheduler:8786")  # doctest: +SKIP
    """
    from ..worker import Worker

    if concurrency is not None:
        concurrency = _check_int("concurrency", concurrency, 1, 256)
    if pool is not None:
        pool = _check_int("pool", pool, 0, 64)
    if kernels is not None and kernels not in ("fork", "pool", "cold"):
        raise BadInput(f"kernels must be fork, pool or cold, not {kernels!r}")
    return Worker(home, concurrency=concurrency, executor=executor, idle_exit=idle_exit, scheduler=scheduler,
                  pool=pool, kernels=kernels, preload=check_preload(preload) if preload is not None else None).run()

