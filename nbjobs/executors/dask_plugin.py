"""Warm runner hosts on every Dask worker: the `RunnerHosts` worker plugin.

The Dask executor registers it through its client (`register`); Dask runs its `setup` on every
worker of the cluster, and on every worker that joins later (the scheduler keeps registered
plugins and hands them to each new worker).  On a Dask worker it keeps a `LocalExecutor`: runner
hosts (``python -m nbjobs.runner --serve``, papermill imported once), one per worker thread, each
with its share of a warm kernel pool (by default one kernel per thread; ``pool=0`` is the cold
path).  An attempt's Dask task (`nbjobs.executors.dask.run_remote`) takes a host from it instead
of starting a runner process and a kernel of its own: a kernel still serves one job and dies after
it, exactly as on the local executor.

Nothing is left behind: `teardown` (the plugin removed, the Dask worker closing) kills the hosts
that run an attempt, ends the idle ones (each kills its pool) and removes the plugin's folder; a
Dask worker that dies without a teardown (``kill -9``, a nanny's restart) leaves hosts that notice
their parent is gone and kill their kernels and themselves (`nbjobs.runner`'s parent watch).

``import nbjobs`` never imports this module; it imports Dask.
"""
from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from typing import Any

from distributed import WorkerPlugin

from .local import LocalExecutor

#: the plugin's name with the default settings (one warm kernel per worker thread, python3)
NAME = "nbjobs-hosts"


def plugin_name(pool: int | None = None, kernels: list[str] | None = None, mode: str = "pool",
                preload: list[str] | None = None) -> str:
    """The plugin's name for these settings: executors that agree share one set of hosts per worker.

    >>> plugin_name(), plugin_name(0), plugin_name(mode="fork", preload=["pandas"])
    ('nbjobs-hosts', 'nbjobs-hosts-pool0', 'nbjobs-hosts-fork-pandas')
    """
    name = NAME if pool is None else f"{NAME}-pool{int(pool)}"
    extra = [k for k in (kernels or []) if k != "python3"]
    name += "".join(f"-{k}" for k in extra)
    if mode != "pool":
        name += f"-{mode}"
    return name + "".join(f"-{m}" for m in preload or [])


class RunnerHosts(WorkerPlugin):
    """Runner hosts with warm kernels on one Dask worker (see the module's docstring).

    ``pool``: warm kernels per Dask worker, shared among its hosts (default: one per worker
    thread; 0 starts each job's kernel when the job starts); ``kernels``: the kernel names kept warm;
    ``mode``: the kernel path (`nbjobs.kernels`: ``fork``, ``pool`` or ``cold``; ``fork`` becomes
    ``pool`` on a Dask worker where forking does not apply) and ``preload``, as on a local worker.
    """

    #: a second registration (another nbjobs worker on the same cluster) keeps the hosts already running
    idempotent = True

    def __init__(self, pool: int | None = None, kernels: list[str] | None = None, mode: str = "pool",
                 preload: list[str] | None = None):
        self.pool = pool
        self.kernels = list(kernels or ["python3"])
        self.mode, self.preload = mode, list(preload or [])
        self.name = plugin_name(pool, kernels, mode, self.preload)
        self.executor: LocalExecutor | None = None  # on the Dask worker, once set up
        self.workdir: str | None = None

    def setup(self, worker: Any) -> None:
        """Start one host per worker thread (and so their warm kernels); returns at once."""
        self.workdir = tempfile.mkdtemp(prefix="nbjobs-hosts-")
        threads = max(1, int(worker.state.nthreads))
        from ..forking import default_mode

        mode = "pool" if self.mode == "fork" and default_mode() != "fork" else self.mode
        self.executor = LocalExecutor(concurrency=threads, pool=self.pool, kernels=self.kernels, workdir=self.workdir,
                                      mode=mode, preload=self.preload)
        self.executor.begin()

    async def teardown(self, worker: Any) -> None:
        """Kill the hosts that run an attempt, end the others (each kills its pool), remove the folder."""
        executor, self.executor = self.executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, lambda: executor.shutdown(3.0, kill_running=True))
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def register(client: Any, pool: int | None = None, kernels: list[str] | None = None, mode: str = "pool",
             preload: list[str] | None = None) -> str:
    """Register the plugin on ``client``'s cluster (every worker now and later); returns its name.
    Registering again with the same settings keeps the hosts already running (``idempotent``)."""
    plugin = RunnerHosts(pool, kernels, mode, preload)
    client.register_plugin(plugin, name=plugin.name)
    return plugin.name


def hosts_on(worker: Any, name: str, wait: float = 10.0) -> LocalExecutor:
    """The `LocalExecutor` of the plugin ``name`` on ``worker`` (the Dask worker running this task).
    A worker that has just joined may still be setting the plugin up: wait up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        plugin = worker.plugins.get(name)
        executor = getattr(plugin, "executor", None)
        if executor is not None:
            return executor
        if time.monotonic() >= deadline:
            raise RuntimeError(f"the nbjobs plugin {name} is not set up on the Dask worker {worker.address}; "
                               "is the same nbjobs version installed there?")
        time.sleep(0.05)
