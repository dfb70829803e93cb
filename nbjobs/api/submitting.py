"""Submitting: `submit` (a cell job), `run_notebook` (a notebook job), the background worker they
start (`ensure_worker`), and ``on_done`` callbacks.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import config, policy, wake
from ..errors import BadInput
from ..job import TERMINAL, JobRecord, code_hash
from ..store import actor_name
from .checks import _check_callback, _check_names
from .handle import Job, _store
from .specs import _common, _default_cell_name, _flow, _limits, _notebook_spec, _options, _report_option


#: when this process last started a background worker, per home (one that just started is still importing)
_last_spawn: dict[Path, float] = {}


def ensure_worker(home: Path | str | None = None) -> bool:
    """Start a background worker for ``home`` unless one is alive.  Returns True if it started one."""
    home = Path(home) if home else config.home()
    if _store(home).live_workers():
        return False
    if time.monotonic() - _last_spawn.get(home, -1e9) < 10:
        return False  # we just started one; it is still importing
    from ..worker import start_background

    start_background(home)
    _last_spawn[home] = time.monotonic()
    return True


def _submit(spec: dict[str, Any], home: Path | str | None, start_worker: bool) -> Job:
    store = _store(home)
    rec, _created = store.insert_job(spec, actor_name("api"))
    wake.poke(store.path)
    if start_worker:
        ensure_worker(home)
    return Job(rec.id, home)


def _submit_group(group: dict[str, Any], specs: list[dict[str, Any]], home: Path | str | None,
                  start_worker: bool) -> str:
    """Record a group and its jobs in one transaction, wake the workers; returns the group's ID."""
    store = _store(home)
    gid, _created = store.insert_group(group, specs, actor_name("api"))
    wake.poke(store.path)
    if start_worker:
        ensure_worker(home)
    return gid


def submit(code: str, *, name: str | None = None, parameters: dict[str, Any] | None = None,
           kernel: str | None = None, cwd: str | os.PathLike | None = None, retries: int = 0,
           timeout: float | None = None, priority: int = 0, tags: Sequence[str] | str | None = None,
           key: str | None = None, cell_timeout: float | None = None, home: Path | str | None = None,
           start_worker: bool = True, inputs: dict[str, Any] | None = None,
           outputs: Sequence[str] | str | None = None, secrets: Sequence[str] | str | None = None,
           retry_on: Sequence[str] | str | None = None, backoff: dict[str, Any] | None = None,
           after: Sequence[str | Job] | str | Job | None = None, after_any: bool = False,
           notify: str | None = None, notify_on: str | None = None,
           on_done: Callable[[Job], Any] | None = None, infra_retries: int | None = None,
           concurrency_key: str | None = None, max_running: int | None = None,
           report: str | None = None, origin: dict[str, Any] | None = None,
           resources: dict[str, float] | str | None = None) -> Job:
    """Submit Python source as a *cell job*; returns its `Job` handle at once.

    The source runs in a fresh kernel (papermill) after a ``parameters`` cell, with ``cwd`` (default:
    the current directory) as working directory.  Inside, ``nbjobs.record(name, value)`` records
    outputs.  ``key`` makes the submit idempotent: a second submit with the same key returns the
    first job.  A background worker is started if none is alive (``start_worker=False`` to skip).

    ``inputs`` (``{name: value}``) travel by value: they are written to the job's run folder before
    the job exists (JSON inline, arrays as ``.npy``, anything else cloudpickled, so DataFrames,
    functions and lambdas work) and the code sees them as ordinary variables.  A value that cannot
    be pickled raises `BadInput` naming it and its type, and nothing is submitted.  ``outputs``
    names variables recorded when the code has run (as ``nbjobs.record`` would); one the code never
    defined fails the job with ``NameError: --out names 'x' but the cell never defined it``.

    Reliability options (also on `run_notebook`): ``retries`` with exponential backoff and full
    jitter (``backoff={"base": 1, "factor": 2, "cap": 300, "jitter": "full"}``), ``retry_on`` (any
    of ``error`` (kernel death counts as error), ``timeout``, ``lost``; default all), ``timeout`` for
    the whole job and ``cell_timeout`` per cell (seconds).  ``secrets`` names environment variables
    of the *worker* that the job needs: their values reach the kernel at run time and are never
    stored; they are redacted from logs, errors and output notebooks.  A job fails only when its own
    code fails: an attempt lost to the system (its worker lost, its runner died, its kernel failed
    to start or died before the job's first cell) is re-queued without charging ``retries``, up to
    ``infra_retries`` times (default: the home's setting, see `infra_retries`, else 3).

    Chains and notifications (also on `run_notebook`): ``after=[id, ...]`` makes the job wait
    (state ``waiting``) until all those jobs succeeded; if one ends failed, timed out or cancelled
    it ends ``cancelled`` with reason ``dependency_failed`` (``after_any=True``: run once they all
    ended, however).  ``nbjobs.result(upstream_id)`` reads an upstream job's outputs inside it.
    ``notify=URL`` POSTs a JSON body when the job ends (``notify_on="all"``: on every state change;
    see `nbjobs.notify`; ``notify_on="failure"``: only if it failed or timed out).
    ``on_done=callback`` calls ``callback(job)`` in this process, from a background thread, when the
    job ends.  ``report="html"`` makes the worker render the output notebook to a standalone HTML
    page once the job succeeded (see `nbjobs.report`).

    Per-name limits (also on `run_notebook` and `sweep`): ``concurrency_key="nightly-report"`` with
    ``max_running=N`` (default 1): at most N running jobs share the key; the others wait ``queued``
    (``nbjobs show`` and the panel say why).  Workers enforce it when they claim.

    ``origin`` says where the code came from, so tracebacks point there: ``{"cell": 13, "magic":
    "%%job ..."}`` (``%%job`` sets it) runs the code as ``In [13]`` below its magic line.

    Placement (also on `run_notebook`): ``resources={"GPU": 1, "MEM": 64e9}`` (or ``"GPU=1,MEM=64e9"``)
    runs the job only on a Dask worker that declared them (``dask worker --resources GPU=1``), through
    Dask's resource scheduling; until a worker of the home offers them the job stays ``queued``
    (the local executor offers none) and ``nbjobs show`` says what it needs.  Its ``timeout`` counts
    from its start on the Dask worker, not from the claim.

    >>> job = nbjobs.submit("import nbjobs; nbjobs.record('n', n * 2)", parameters={"n": 21})  # doctest: +SKIP
    >>> job.wait().result()                                                                     # doctest: +SKIP
    {'n': 42}
    >>> job = nbjobs.submit("total = f(df.x.sum())", inputs={"df": df, "f": lambda v: v + 1},
    ...                     outputs=["total"])                                                  # doctest: +SKIP
    >>> job.wait().result()["total"]                                                            # doctest: +SKIP
    7
    """
    if not isinstance(code, str) or not code.strip():
        raise BadInput("code must be a non-empty string of Python source")
    spec = _common(name, retries, timeout, priority, tags, key, kernel, cwd, parameters)
    spec.update(kind="cell", source=code, code_hash=code_hash("cell", source=code),
                options=_options(cell_timeout, secrets, retry_on, backoff, infra_retries))
    spec["name"] = spec["name"] or _default_cell_name(code)
    spec["kernel"] = spec["kernel"] or "python3"
    spec["resources"] = policy.check_resources(resources)
    out_names = _check_names("output", outputs)
    if out_names:
        spec["options"]["outputs"] = out_names
    if origin:
        spec["options"]["origin"] = {"cell": int(origin.get("cell") or 0), "magic": str(origin.get("magic") or "")[:500]}
    _flow(spec, home, after, after_any, notify, notify_on)
    _limits(spec, concurrency_key, max_running)
    _report_option(spec, report)
    _check_callback(on_done)
    if not inputs:
        return _done_callback(_submit(spec, home, start_worker), on_done)
    if not isinstance(inputs, dict):
        raise BadInput(f"inputs must be a dict of name: value, not {type(inputs).__name__}")
    _check_names("input", list(inputs))
    # The ID is chosen now so the inputs are in place before the row exists: a worker never
    # sees a job without its inputs.
    from .. import outputs as encoding
    from ..job import new_id

    spec["id"] = new_id()
    run_dir = config.run_dir(spec["id"], _store(home).path.parent)
    try:
        entries = encoding.write_inputs(inputs, run_dir / encoding.INPUTS_DIR)
        spec["options"]["inputs"] = [{k: e[k] for k in ("name", "kind", "type_name", "size", "path") if k in e}
                                     for e in entries]  # inline values stay in the folder's manifest
        job = _submit(spec, home, start_worker)
    except BaseException:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    if job.id != spec["id"]:  # the idempotency key matched an earlier job: ours was never created
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    return _done_callback(job, on_done)


def run_notebook(path: str | os.PathLike, parameters: dict[str, Any] | None = None, *, name: str | None = None,
                 kernel: str | None = None, cwd: str | os.PathLike | None = None, retries: int = 0,
                 timeout: float | None = None, priority: int = 0, tags: Sequence[str] | str | None = None,
                 key: str | None = None, cell_timeout: float | None = None, home: Path | str | None = None,
                 start_worker: bool = True, secrets: Sequence[str] | str | None = None,
                 retry_on: Sequence[str] | str | None = None, backoff: dict[str, Any] | None = None,
                 after: Sequence[str | Job] | str | Job | None = None, after_any: bool = False,
                 notify: str | None = None, notify_on: str | None = None,
                 on_done: Callable[[Job], Any] | None = None, infra_retries: int | None = None,
                 concurrency_key: str | None = None, max_running: int | None = None,
                 report: str | None = None, resources: dict[str, float] | str | None = None) -> Job:
    """Submit a *notebook job*: ``path`` run by papermill with ``parameters``; returns its `Job`.

    The kernel defaults to the notebook's own kernelspec; the working directory to the current
    directory.  Each attempt writes its output notebook to ``$NBJOBS_HOME/runs/<id>/<attempt>/``.
    ``after``, ``after_any``, ``notify``, ``notify_on``, ``on_done``, ``infra_retries``, ``concurrency_key``,
    ``max_running``, ``report`` and ``resources`` as in `submit`; the
    documented chain: ``b = run_notebook("b.ipynb", {"source_job": a.id}, after=[a])``, and in
    b.ipynb ``nbjobs.result(source_job)``.

    >>> job = nbjobs.run_notebook("report.ipynb", parameters={"n": 7, "title": "Q3"})  # doctest: +SKIP
    >>> job.wait().state                                                             # doctest: +SKIP
    <State.SUCCEEDED: 'succeeded'>
    """
    spec = _notebook_spec(path, parameters, name, kernel, cwd, retries, timeout, priority, tags, key, cell_timeout,
                          secrets, retry_on, backoff, infra_retries)
    spec["resources"] = policy.check_resources(resources)
    _flow(spec, home, after, after_any, notify, notify_on)
    _limits(spec, concurrency_key, max_running)
    _report_option(spec, report)
    _check_callback(on_done)
    return _done_callback(_submit(spec, home, start_worker), on_done)


def _done_callback(job: Job, on_done: Callable[[Job], Any] | None) -> Job:
    """Call ``on_done(job)`` once, from a background thread of this process, when ``job`` ends.
    It rides on the one updater thread of `nbjobs.watch` (which polls SQLite's ``data_version``
    about twice a second); an exception in the callback is printed to stderr, never raised."""
    if on_done is None:
        return job
    import sys
    import traceback

    from ..watch import watch

    fired: list[bool] = []

    def check(record: JobRecord) -> bool | None:
        if record.state in TERMINAL and not fired:
            fired.append(True)
            try:
                on_done(job)
            except Exception:  # noqa: a user's callback must not stop the updater
                print(f"nbjobs: on_done callback of job {job.short_id} raised:\n{traceback.format_exc()}",
                      file=sys.stderr, flush=True)
            return False
        return None

    watch(job, check)
    return job

