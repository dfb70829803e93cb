"""The papermill engine that runs one attempt's notebook in a kernel nbjobs already started.

`nbjobs.runner.run_attempt` imports this module when an attempt runs (it imports papermill and
nbclient, which ``import nbjobs`` and the runner's light users must not pay for).  Its classes
are defined once, here, and registered once with papermill as ``nbjobs``; what differs from one
attempt to the next travels as an `Attempt`, which papermill hands to the engine as an engine
keyword argument::

    papermill.execute_notebook(source, output, engine_name=ENGINE, attempt=Attempt(...), ...)

What the engine adds to papermill's ``nbclient`` engine:

* the kernel is ours (forked from the zygote, warm from a pool, or started for the attempt): its
  process is reported (``{"type": "kernel", ...}``) before anything else, so that a stop can reach
  it; its client may be connected already (`connect`, run by the runner host between jobs); a
  kernel started ahead of the job runs the silent ``prepare`` cell that moves it into the job (a
  cold one, the preloads' imports);
* progress is reported per cell of the user's code (the wrapper cells nbjobs and papermill add
  are not counted), and when the first of them starts, ``stop.began`` is set (before that, a
  kernel death is the system's failure, not the job's) and a ``began`` event marks the end of the
  start phase: a job's runtime counts from there;
* the output notebook is saved at most once a second while cells run, with secrets redacted;
* a cell that runs past its timeout gets the error in its outputs, as a failing cell does.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from queue import Empty
from typing import Any, Callable

import nbformat
from jupyter_core.utils import ensure_async
from nbclient.client import run_sync
from nbclient.exceptions import CellTimeoutError
from nbclient.util import run_hook
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
from papermill.log import logger

from .job import HELPER_TAGS
from .kernels import zmq_context

#: the name the engine is registered under with papermill
ENGINE = "nbjobs"
SAVE_EVERY = 1.0  # seconds between two saves of the output notebook while cells run
#: every cell nbjobs or papermill adds around the job's code (none counts as progress)
HIDDEN_TAGS = HELPER_TAGS | {"injected-parameters"}
#: those before the job's code: a kernel death in one of them is not the job's
WRAPPER_TAGS = HIDDEN_TAGS - {"nbjobs-outputs"}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Attempt:
    """What the engine needs of the attempt it runs.

    ``report``: the runner's event callback; ``kernel``: a started `nbjobs.kernels.Kernel`;
    ``stop``: the attempt's stop state (`nbjobs.runner`'s: ``kernel``, ``began``,
    ``requested``, ``kill_kernel()``), shared with whoever may stop it; ``redact``: the job's
    `nbjobs.runner.Redactor`, if it has secrets; ``prepare``: the silent cell that moves a
    kernel started ahead into the job (see `nbjobs.kernels.prepare_code`) or imports the preloads in a cold one,
    or None; ``move``: the job's ``(cwd, env)`` for a kernel forked ahead, which moves without a
    request (`nbjobs.kernels.Kernel.move`).
    """

    report: Callable[[dict], None]
    kernel: Any
    stop: Any
    redact: Callable[[Any], Any] | None = None
    prepare: str | None = None
    move: tuple[str, dict[str, str]] | None = None  # (cwd, env): for a kernel forked ahead (`Kernel.move`)


def _tags(cell: Any) -> set:
    return set(cell.get("metadata", {}).get("tags", []))


def _is_job_code(cell: Any) -> bool:
    """A code cell of the job's own (not a wrapper cell before it)."""
    return cell.get("cell_type") == "code" and not WRAPPER_TAGS & _tags(cell)


def user_cells(nb: Any) -> list[int]:
    """Indexes of the user's code cells: what progress counts (``done/total``).

    >>> import nbformat
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("", metadata={"tags": ["parameters"]}),
    ...     nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_markdown_cell("# x"),
    ...     nbformat.v4.new_code_cell("rec()", metadata={"tags": ["nbjobs-outputs"]})])
    >>> user_cells(nb)
    [0, 1]
    """
    return [i for i, c in enumerate(nb.cells) if c.get("cell_type") == "code" and not HIDDEN_TAGS & _tags(c)]


async def _ready(kc: Any, km: Any, timeout: float) -> dict[str, Any]:
    """Wait until the kernel answers and our iopub subscription is live; its kernel_info reply's content.  jupyter_client's
    ``wait_for_ready`` checks the same but waits 0.2 s for iopub after the first reply, which a
    fresh subscription misses (ZeroMQ's slow joiner): a warm kernel would spend 200 ms there."""
    deadline = time.monotonic() + timeout
    while True:
        msg_id = kc.kernel_info()
        while True:
            try:
                reply = await ensure_async(kc.shell_channel.get_msg(timeout=1))
            except Empty:
                break
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                try:
                    await ensure_async(kc.iopub_channel.get_msg(timeout=0.02))
                    return reply.get("content") or {}
                except Empty:
                    break
        if not km.is_alive():
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")


#: what a kernel connected ahead of its job runs once, silently: a kernel's first cell pays for what
#: IPython sets up lazily, which a job's prepare cell then does not (it leaves no trace: no history,
#: no execution count, nothing imported that the prepare cell would not import)
WARM_UP = "pass"


async def connect(kernel: Any, timeout: float = 60.0, warm_up: bool = False) -> None:
    """Connect a client to ``kernel`` (a `nbjobs.kernels.Kernel`) once it listens, and wait until it
    answers: ``kernel.kc``.  The runner host does it ahead of the job for a kernel kept ahead
    (``warm_up``: and runs `WARM_UP` in it), else the job does it.  Raises RuntimeError if the
    kernel dies or stays silent for ``timeout`` seconds."""
    import asyncio

    deadline = time.monotonic() + timeout
    while not kernel.listening():  # a client that connects first waits ZeroMQ's 100 ms to connect again
        if not kernel.km.is_alive():
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")
        await asyncio.sleep(0.002)
    kc = kernel.km.client(context=zmq_context(asynchronous=True))
    # no heartbeat (its manager tells whether it lives), no stdin (jobs cannot be asked for
    # input), no control channel (nbjobs kills its kernels): two threads and three sockets fewer
    await ensure_async(kc.start_channels(stdin=False, hb=False, control=False))
    try:
        kernel.info = await _ready(kc, kernel.km, max(0.0, deadline - time.monotonic()))
        if warm_up:
            msg_id = kc.execute(WARM_UP, silent=True, store_history=False, allow_stdin=False)
            while True:
                reply = await ensure_async(kc.shell_channel.get_msg(timeout=max(0.0, deadline - time.monotonic())))
                if reply.get("parent_header", {}).get("msg_id") == msg_id:
                    break
    except Empty:
        kc.stop_channels()
        raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds") from None
    except BaseException:
        kc.stop_channels()
        raise
    kc.allow_stdin = False
    kernel.kc = kc


class Manager(NotebookExecutionManager):
    """papermill's execution state of the notebook, for one `Attempt`: progress events, the
    job's first cell, and throttled, redacted saves of the output notebook."""

    def __init__(self, nb: Any, attempt: Attempt, **kwargs: Any):
        self.attempt = attempt
        self.last_save: float | None = None
        self.user: list[int] = []  # the user's code cells (see `user_cells`), known once the first begins
        super().__init__(nb, **kwargs)

    def save(self, **kwargs):
        # papermill saves before and after every cell; a job of quick cells would spend most of
        # its time writing the notebook.  Save at the start, then at most once a second while
        # cells run, and at the end (papermill writes the finished notebook once more itself).
        now = time.monotonic()
        if self.last_save is not None and now - self.last_save < SAVE_EVERY:
            return
        self.last_save = now
        self.redact()
        super().save(**kwargs)

    def redact(self) -> None:
        """Take the job's secrets out of the notebook's outputs (before any write of it)."""
        redact = self.attempt.redact
        if redact:  # a secret the job printed never reaches the output notebook
            for cell in self.nb.cells:
                redact.deep(cell.get("outputs", []))

    def cell_start(self, cell, cell_index=None, **kwargs):
        if _is_job_code(cell) and not self.attempt.stop.began:
            self.attempt.stop.began = True
            self.user = user_cells(self.nb)
            self.attempt.report({"type": "began", "at": time.time()})
            self.attempt.report({"type": "progress", "done": 0, "total": len(self.user)})
        super().cell_start(cell, cell_index=cell_index, **kwargs)

    def notebook_complete(self, saved_after: bool = False, **kwargs):
        # the final save goes through, unless papermill writes the notebook right after (``saved_after``:
        # `papermill.execute_notebook` does once the engine returns)
        self.last_save = time.monotonic() if saved_after else None
        if saved_after:
            self.redact()
        super().notebook_complete(**kwargs)

    def cell_complete(self, cell, cell_index=None, **kwargs):
        super().cell_complete(cell, cell_index=cell_index, **kwargs)
        if cell_index in self.user:
            self.attempt.report({"type": "progress", "done": self.user.index(cell_index) + 1,
                                 "total": len(self.user)})


class Client(PapermillNotebookClient):
    """nbclient's client on the attempt's kernel (``self.nb_man.attempt``), which it did not start."""

    def execute(self, **kwargs):
        """papermill's, but the notebook's ``language_info`` is the kernel_info reply `connect`
        received: not asked again once the cells have run."""
        self.reset_execution_trackers()
        with self.setup_kernel(**kwargs):
            self.papermill_execute_cells()
            self.nb.metadata["language_info"] = self.nb_man.attempt.kernel.info.get("language_info", {})
            self.set_widgets_metadata()
        return self.nb

    async def async_start_new_kernel_client(self):
        # ours, already started (nbclient skipped async_start_new_kernel)
        attempt = self.nb_man.attempt
        kernel, stop = attempt.kernel, attempt.stop
        stop.kernel = kernel.proc
        attempt.report({"type": "kernel", "pid": kernel.pid, "proc": kernel.proc.dump() if kernel.proc else None,
                        "path": kernel.path})
        if stop.requested:  # asked to stop while the kernel was starting
            stop.kill_kernel()
        if kernel.kc is None:
            await connect(kernel, self.startup_timeout)
        self.kc = kc = kernel.kc
        await run_hook(self.on_notebook_start, notebook=self.nb)
        if attempt.move is not None:
            kernel.move(*attempt.move)
        elif attempt.prepare:
            reply = await self.async_wait_for_reply(await ensure_async(
                kc.execute(attempt.prepare, silent=True, store_history=False, allow_stdin=False)))
            if (reply or {}).get("content", {}).get("status") != "ok":
                raise RuntimeError("the kernel started ahead could not be prepared for the job "
                                   f"({(reply or {}).get('content', {}).get('evalue', 'no reply')})")
        return kc

    # nbclient binds each sync wrapper to its own coroutine: rebind them to ours
    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        try:
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        except CellTimeoutError as exc:
            message = ANSI.sub("", str(exc)).strip().splitlines()[0]
            cell.outputs.append(nbformat.v4.new_output(
                "error", ename="CellTimeoutError", evalue=message, traceback=[f"CellTimeoutError: {message}"]))
            self.nb_man.cell_exception(cell, cell_index=cell_index, exception=exc)
            exc.cell_index = cell_index
            raise

    execute_cell = run_sync(async_execute_cell)


class NbjobsEngine(NBClientEngine):
    """The engine papermill runs as ``nbjobs``: takes the `Attempt` from its keyword arguments."""

    @classmethod
    def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=False, log_output=False,
                         autosave_cell_every=30, *, attempt: Attempt, **kwargs):
        nb_man = Manager(nb, attempt, output_path=output_path, progress_bar=False, log_output=log_output,
                         autosave_cell_every=autosave_cell_every)
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        except BaseException:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
            raise
        nb_man.cleanup_pbar()
        nb_man.notebook_complete(saved_after=True)  # papermill writes it when we return
        return nb_man.nb

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                 stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
        client = Client(nb_man, km=nb_man.attempt.kernel.km, timeout=execution_timeout,
                        startup_timeout=start_timeout, kernel_name=kernel_name, log=logger,
                        log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
        return client.execute()  # the client's channels close with the kernel (`Kernel.kill`), after the outcome


papermill_engines.register(ENGINE, NbjobsEngine)
