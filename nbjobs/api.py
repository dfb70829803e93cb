"""The Python API every front end uses: submit, look up, wait, read results, cancel, retry.

>>> import nbjobs
>>> job = nbjobs.submit("import nbjobs; nbjobs.record('answer', 6 * 7)", name="quick")  # doctest: +SKIP
>>> job.wait(60).result()                                                               # doctest: +SKIP
{'answer': 42}
"""
from __future__ import annotations

import json
import keyword
import math
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import config, params, policy, wake
from .errors import BadInput, NbjobsError, WaitTimeout
from .job import TERMINAL, JobRecord, State, code_hash, short_id
from .store import Store, actor_name, open_store

MAX_RETRIES = 100
MAX_TIMEOUT = 30 * 24 * 3600.0
MAX_PRIORITY = 1_000_000


def _store(home: Path | str | None = None) -> Store:
    return open_store(config.db_path(Path(home)) if home else None)


# --- the handle ------------------------------------------------------------------------------------
class Job:
    """A handle on one job.  Every property reads SQLite afresh, so it is always current and
    survives kernel restarts: ``nbjobs.get(job_id)`` gives an equal handle later.

    >>> job = nbjobs.get("8f3a2c")      # doctest: +SKIP
    >>> job.state, job.wait(60).result()  # doctest: +SKIP
    """

    def __init__(self, job_id: str, home: Path | str | None = None):
        self.id = job_id
        self.home = Path(home) if home else config.home()

    @property
    def _store(self) -> Store:
        return _store(self.home)

    @property
    def record(self) -> JobRecord:
        """A fresh snapshot of the job's row."""
        return self._store.get(self.id)

    @property
    def state(self) -> State:
        return self.record.state

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    def wait(self, timeout: float | None = None) -> "Job":
        """Block until the job ends (or raise `WaitTimeout`); returns the handle."""
        wait([self], timeout=timeout)
        return self

    def result(self) -> dict[str, Any]:
        """Recorded outputs by name, each as the same kind of object it was recorded as."""
        return result(self.id, home=self.home)

    def logs(self, attempt: int | None = None) -> str:
        """Captured stdout/stderr of the latest (or the given) attempt."""
        return logs(self.id, attempt=attempt, home=self.home)

    def cancel(self) -> "Job":
        return cancel(self.id, home=self.home)

    def retry(self) -> "Job":
        return retry(self.id, home=self.home)

    def attempts(self) -> list[dict[str, Any]]:
        return self._store.attempts(self.id)

    def events(self) -> list[dict[str, Any]]:
        return self._store.events(self.id)

    def recorded(self) -> list[dict[str, Any]]:
        """The recorded outputs' rows (name, kind, type_name, path; not their values: see `result`)."""
        return self._store.outputs(self.id)

    def upstream(self) -> list[str]:
        """IDs of the jobs this one runs after (``after=``)."""
        return self._store.upstream(self.id)

    def downstream(self) -> list[str]:
        """IDs of the jobs that run after this one."""
        return self._store.downstream(self.id)

    def deliveries(self) -> list[dict[str, Any]]:
        """This job's webhook deliveries (see `nbjobs.deliveries`)."""
        return self._store.deliveries(self.id)

    def wait_reason(self, record: JobRecord | None = None) -> str:
        """Why the job is not running its code yet, in a few words (``queued behind 2 running
        (concurrency 2)``, ``waiting on 3f2a1b0c (running)``, ``backoff until 14:02:31 (in 4.0s)``,
        ``starting: a kernel is getting ready`` ...); ``""`` when it is running its code or has
        ended.  ``record``: a snapshot already read (else read afresh)."""
        from .text import wait_reason

        store, r = self._store, record or self.record
        if not r.state.active:
            return ""
        up = [(u.id, u.state.value) for u in store.get_many(store.upstream(self.id))] \
            if r.state == State.WAITING else []
        queued = r.state == State.QUEUED
        limit = waiting_reasons([r], home=self.home).get(r.id, "") if queued and r.concurrency_key else ""
        return wait_reason(r, store.summary() if queued else None, upstream=up, limit=limit)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        try:
            r = self.record
        except NbjobsError:
            return f"<Job {self.short_id} (unavailable)>"
        return f"<Job {r.short_id} {r.name!r} {r.state.value} attempt {r.attempt_text}>"

    def _repr_html_(self) -> str:
        """A one-line HTML receipt (short ID, name, state, progress, elapsed): a static snapshot."""
        from .panel.static import receipt_html  # display code lives in the panel; loaded on first display

        return receipt_html(self)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        """The handle's display data: its text repr, the HTML receipt and, in a kernel whose front
        end can show widgets, a live receipt widget (see `nbjobs.panel`)."""
        from .panel.public import job_bundle

        return job_bundle(self, include, exclude)

    def _ipython_display_(self) -> None:
        """How Jupyter shows a handle (the value of a ``%%job`` cell, ``nbjobs.get(id)``): the
        receipt, published with a display id; a live receipt of a running job is replaced in place
        by its final static receipt when the job ends, so a saved notebook, a restarted kernel and
        nbviewer show how it ended (see `nbjobs.panel.public.show_job`)."""
        from .panel.public import show_job

        show_job(self)


# --- validation --------------------------------------------------------------------------------------
def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise BadInput(f"{name} must be a whole number from {lo} to {hi}, not {value!r}") from None
    if not lo <= value <= hi:
        raise BadInput(f"{name} must be from {lo} to {hi}, not {value}")
    return value


def _check_seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_TIMEOUT:
        raise BadInput(f"{name} must be more than 0 and at most {MAX_TIMEOUT:.0f} seconds (30 days), not {value}")
    return seconds


def _check_text(name: str, value: Any, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit \
            or any(ord(c) < 32 for c in value):
        raise BadInput(f"{name} must be a non-empty single-line string of at most {limit} characters, not {value!r}")
    return value.strip()


def _check_kernel(kernel: str | None) -> str | None:
    if kernel is None:
        return None
    from .kernels import kernel_exists, kernel_names

    kernel = _check_text("kernel", kernel, 100)
    if not kernel_exists(kernel):
        raise BadInput(f"kernel {kernel!r} is not installed (installed: {', '.join(kernel_names()) or 'none'}); "
                       "pick one of those or install it with `python -m ipykernel install --user --name NAME`")
    return kernel


def _check_cwd(cwd: str | os.PathLike | None) -> str:
    path = Path(cwd).expanduser().absolute() if cwd else Path.cwd()
    if not path.is_dir():
        raise BadInput(f"working directory {path} does not exist; give an existing folder")
    return str(path)


def _read_notebook(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """Check that ``path`` is a readable notebook; return its absolute path and its JSON."""
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise BadInput(f"notebook {path} does not exist; check the path (relative to {Path.cwd()})")
    if p.is_dir() or p.suffix != ".ipynb":
        raise BadInput(f"{path} is not a notebook; give a .ipynb file")
    try:
        nb = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read notebook {path} ({exc}); check its permissions") from None
    except ValueError as exc:
        raise BadInput(f"notebook {path} is not valid JSON ({exc}); open and re-save it in Jupyter") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or nb.get("nbformat", 0) < 4:
        raise BadInput(f"{path} is not a Jupyter notebook in format 4 (no 'cells' list); re-save it in Jupyter")
    return str(p), nb


def _common(name: Any, retries: Any, timeout: Any, priority: Any, tags: Iterable[str] | str | None,
            key: Any, kernel: str | None, cwd: Any, parameters: Any) -> dict[str, Any]:
    if isinstance(tags, str):
        tags = [tags]
    return {
        "name": _check_text("name", name) if name is not None else None,
        "retries": _check_int("retries", retries, 0, MAX_RETRIES),
        "timeout": _check_seconds("timeout", timeout),
        "priority": _check_int("priority", priority, -MAX_PRIORITY, MAX_PRIORITY),
        "tags": [_check_text("tag", t, 64) for t in (tags or [])],
        "idem_key": _check_text("key", key) if key is not None else None,
        "kernel": _check_kernel(kernel),
        "cwd": _check_cwd(cwd),
        "parameters": params.check_json(dict(parameters or {})),
    }


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _options(cell_timeout: Any, secrets: Any, retry_on: Any, backoff: Any, infra_retries: Any = None) -> dict[str, Any]:
    """The job's ``options``: per-cell timeout, secret names (never values), retry policy, and its
    infrastructure budget (only when given: else the home's setting applies when it is needed)."""
    out: dict[str, Any] = {"cell_timeout": _check_seconds("cell_timeout", cell_timeout)}
    if infra_retries is not None:
        out["infra_retries"] = policy.check_infra_retries(infra_retries)
    names = [n.strip() for n in secrets.split(",")] if isinstance(secrets, str) else list(secrets or [])
    for n in names:
        if not isinstance(n, str) or not _ENV_NAME.match(n):
            raise BadInput(f"secret {n!r} is not an environment variable name; name the variable (e.g. "
                           "--secret API_TOKEN), never its value")
    if names:
        out["secrets"] = list(dict.fromkeys(names))
    if backoff is not None and not isinstance(backoff, dict):
        raise BadInput("backoff must be a dict like {'base': 1, 'factor': 2, 'cap': 300, 'jitter': 'full'}")
    unknown = set(backoff or {}) - {"base", "factor", "cap", "jitter"}
    if unknown:
        raise BadInput(f"unknown backoff setting(s) {', '.join(sorted(unknown))}; use base, factor, cap, jitter")
    out.update(policy.check_retry_options(retry_on, **(backoff or {})))
    return out


# --- submit ------------------------------------------------------------------------------------------
_last_spawn: dict[Path, float] = {}


def ensure_worker(home: Path | str | None = None) -> bool:
    """Start a background worker for ``home`` unless one is alive.  Returns True if it started one."""
    home = Path(home) if home else config.home()
    if _store(home).live_workers():
        return False
    if time.monotonic() - _last_spawn.get(home, -1e9) < 10:
        return False  # we just started one; it is still importing
    from .worker import start_background

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
    from . import outputs as encoding
    from .job import new_id

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


def _flow(spec: dict[str, Any], home: Path | str | None, after: Any, after_any: bool, notify: str | None,
          notify_on: str | None) -> dict[str, Any]:
    """Add dependencies (resolved to full IDs; unknown or expired ones refused) and the webhook."""
    if after is not None:
        items = [after] if isinstance(after, (str, Job)) else list(after)
        ids: list[str] = []
        for item in items:
            texts = [item.id] if isinstance(item, Job) else [t for t in str(item).split(",") if t.strip()]
            for text in texts:
                ids.append(_store(home).resolve(text.strip()))
        if not ids and items:
            raise BadInput("after names no job; give job IDs (or unique prefixes) separated by commas")
        spec["after"] = list(dict.fromkeys(ids))
    if after_any:
        if not spec.get("after"):
            raise BadInput("after_any needs after=[job IDs] (--after-any goes with --after ID,...)")
        spec["options"]["after_any"] = True
    if notify is not None:
        from .notify import check_url

        spec["options"]["notify"] = check_url(notify)
    if notify_on is not None:
        spec["options"]["notify_on"] = policy.check_notify_on(notify_on)
    return spec


MAX_RUNNING = 10_000


def _limits(spec: dict[str, Any], concurrency_key: Any, max_running: Any) -> dict[str, Any]:
    """Add the per-name limit: at most ``max_running`` (default 1) running jobs share ``concurrency_key``."""
    if concurrency_key is None:
        if max_running is not None:
            raise BadInput("max_running goes with a concurrency key: --concurrency-key K --max-running N")
        return spec
    key = _check_text("concurrency_key", concurrency_key)
    if key.startswith("group:"):
        raise BadInput("concurrency keys starting with 'group:' are kept for --max-parallel of sweeps; pick another")
    spec["concurrency_key"] = key
    spec["max_running"] = _check_int("max_running", 1 if max_running is None else max_running, 1, MAX_RUNNING)
    return spec


def _report_option(spec: dict[str, Any], report: Any) -> dict[str, Any]:
    """``report="html"``: the worker renders the output notebook when the job succeeds."""
    if report is not None:
        from .reports import FORMATS

        if report not in FORMATS:
            raise BadInput(f"report must be {' or '.join(repr(f) for f in FORMATS)} (a standalone HTML page of the "
                           f"output notebook), not {report!r}")
        spec["options"]["report"] = report
    return spec


def _check_callback(on_done: Any) -> None:
    if on_done is not None and not callable(on_done):
        raise BadInput(f"on_done must be a function taking the job, not {type(on_done).__name__}")


def _done_callback(job: Job, on_done: Callable[[Job], Any] | None) -> Job:
    """Call ``on_done(job)`` once, from a background thread of this process, when ``job`` ends.
    It rides on the one updater thread of `nbjobs.watch` (which polls SQLite's ``data_version``
    about twice a second); an exception in the callback is printed to stderr, never raised."""
    if on_done is None:
        return job
    import sys
    import traceback

    from .watch import watch

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


def _check_names(what: str, names: Sequence[str] | str | None) -> list[str]:
    """Variable names for inputs/outputs: identifiers, in order, without repeats."""
    if names is None:
        return []
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: list[str] = []
    for n in names:
        if not isinstance(n, str) or not n.isidentifier() or keyword.iskeyword(n):
            raise BadInput(f"{what} name {n!r} is not a valid Python variable name; use letters, digits and _")
        if n not in out:
            out.append(n)
    return out


def _default_cell_name(code: str) -> str:
    for line in code.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "%", "!", "import ", "from ")):
            return line[:40]
    return "cell"


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


def _notebook_spec(path: Any, parameters: Any, name: Any, kernel: Any, cwd: Any, retries: Any, timeout: Any,
                   priority: Any, tags: Any, key: Any, cell_timeout: Any, secrets: Any, retry_on: Any,
                   backoff: Any, infra_retries: Any = None) -> dict[str, Any]:
    nb_path, nb = _read_notebook(path)
    spec = _common(name, retries, timeout, priority, tags, key, kernel, cwd, parameters)
    if spec["kernel"] is None:
        nb_kernel = (nb.get("metadata") or {}).get("kernelspec", {}).get("name") or "python3"
        spec["kernel"] = _check_kernel(nb_kernel)
    spec.update(kind="notebook", notebook=nb_path, code_hash=code_hash("notebook", notebook=nb_path),
                options=_options(cell_timeout, secrets, retry_on, backoff, infra_retries))
    spec["name"] = spec["name"] or Path(nb_path).stem
    return spec


# --- reading ------------------------------------------------------------------------------------------
def get(job_id: str, home: Path | str | None = None) -> Job:
    """The job with this ID or unique ID prefix (as in git); a clear error if none or several match."""
    return Job(_store(home).resolve(job_id), home)


def jobs(state: str | Iterable[str] | None = None, name: str | None = None, tag: str | None = None,
         limit: int | None = 20, home: Path | str | None = None) -> list[Job]:
    """Recent jobs, newest first, optionally filtered by state(s), name (glob) and tag."""
    if state is not None:
        for s in [state] if isinstance(state, str) else state:
            _check_state(s)
    return [Job(r.id, home) for r in _store(home).list_jobs(state=state, name=name, tag=tag, limit=limit)]


def records(state: str | Iterable[str] | None = None, name: str | None = None, tag: str | None = None,
            limit: int | None = 20, home: Path | str | None = None, group: str | None = None) -> list[JobRecord]:
    """Like `jobs` but returns row snapshots (one query, for tables); ``group``: only that group's
    jobs (an ID or unique prefix)."""
    if state is not None:
        for s in [state] if isinstance(state, str) else state:
            _check_state(s)
    store = _store(home)
    return store.list_jobs(state=state, name=name, tag=tag, limit=limit,
                           group=store.check_group_prefix(group) if group else None)


def lookup(id_or_prefix: str, home: Path | str | None = None) -> "Job | Group":
    """The job or the group (a sweep) with this ID or unique prefix: job and group IDs share one
    form and one lookup (a prefix matching both is ambiguous).

    >>> nbjobs.lookup("8f3a2c")   # doctest: +SKIP
    <Group 8f3a2c1d 'train' 3/4 done: running>
    """
    kind, full = _store(home).resolve_any(id_or_prefix)
    if kind == "group":
        from .sweeps import Group

        return Group(full, home)
    return Job(full, home)


def waiting_reasons(recs: Iterable[JobRecord], home: Path | str | None = None) -> dict[str, str]:
    """Why these queued jobs wait, for those whose concurrency key is at its limit: ``{id: text}``,
    e.g. ``queued: 1 of max 1 running for key nightly``.  One read for all their keys."""
    from .job import limit_reason

    queued = [r for r in recs if r.state == State.QUEUED and r.concurrency_key]
    if not queued:
        return {}
    running = _store(home).running_per_key(r.concurrency_key for r in queued)
    out = {}
    for r in queued:
        n, limit = running.get(r.concurrency_key, 0), r.max_running or 1
        if n >= limit:
            out[r.id] = limit_reason(r.concurrency_key, n, limit)
    return out


def search(query: str, limit: int = 50, home: Path | str | None = None) -> list[JobRecord]:
    """Jobs whose name, tags, parameters, error or log tail match ``query``, best match first.

    ``query`` is an SQLite FTS5 query: words (all must match), ``"a phrase"``, ``prefix*``,
    ``OR``/``NOT``, or a column filter such as ``error_message: KeyError``.  The log tail is the
    last 4 KB of the latest attempt's log.  A query FTS5 cannot parse raises `BadInput`.

    >>> [r.name for r in nbjobs.search("KeyError")]  # doctest: +SKIP
    ['nightly-etl']
    """
    return _store(home).search(query, limit=limit)


def db(home: Path | str | None = None):
    """A `sqlite_utils.Database` on the home's database file, for ad-hoc analysis (its own
    connection; the schema is brought up to date first).  It loads sqlite-utils (and pandas, if
    this process has not loaded sqlite-utils yet).  Jobs submitted until now are in its search
    index (``db["jobs"].search(...)``); `nbjobs.search` also finds the ones submitted later.

    >>> db = nbjobs.db()                                           # doctest: +SKIP
    >>> db.query("SELECT state, count(*) AS n FROM jobs GROUP BY state")  # doctest: +SKIP
    """
    import sqlite_utils

    store = _store(home)
    store.index_pending()  # the index is brought up to date lazily (see `Store.index_pending`)
    database = sqlite_utils.Database(store.path)
    database.execute(f"PRAGMA busy_timeout={int(config.BUSY_TIMEOUT * 1000)}")
    return database


def own_kernel() -> str:
    """The kernelspec that runs this very Python (``python3`` when none does): where ``%%job`` runs
    cells by default, so a cell job sees the caller's own packages."""
    from .kernels import kernel_for_python

    return kernel_for_python()


def workers(home: Path | str | None = None) -> list[dict[str, Any]]:
    """The live workers of a home (heartbeat within one lease): id, pid, host, executor, note, ..."""
    return _store(home).live_workers()


def summary(home: Path | str | None = None) -> dict[str, Any]:
    """Counts for a status header: ``counts`` (jobs per state), ``queue_depth``, ``running``,
    ``workers`` (alive) and ``dead_letters``.

    >>> nbjobs.summary()["queue_depth"]  # doctest: +SKIP
    3
    """
    return _store(home).summary()


def _check_state(s: str) -> None:
    try:
        State(s)
    except ValueError:
        raise BadInput(f"unknown state {s!r}; use one of: {', '.join(x.value for x in State)}") from None


def check_wait_timeout(timeout: Any, what: str = "timeout") -> float | None:
    """A wait's timeout: None (no limit) or a finite number of seconds, 0 or more."""
    if timeout is None:
        return None
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        raise BadInput(f"{what} must be a number of seconds, not {timeout!r}") from None
    if not 0 <= seconds < math.inf:  # also false for nan
        raise BadInput(f"{what} must be 0 or more seconds (leave it out to wait without limit), not {timeout}")
    return seconds


def wait(id_or_ids: str | Job | Iterable[str | Job], timeout: float | None = None,
         home: Path | str | None = None, poll: float = 0.05) -> Job | list[Job]:
    """Block until the job(s) reach a final state; returns the Job (or the list of Jobs).  A group's
    ID (or `Group`) stands for its jobs; given alone, the `Group` is returned.

    Raises `WaitTimeout` after ``timeout`` seconds, naming what is still running.
    """
    timeout = check_wait_timeout(timeout)
    from .sweeps import Group

    single = isinstance(id_or_ids, (str, Job, Group))
    items = [id_or_ids] if single else list(id_or_ids)
    found = [i if isinstance(i, (Job, Group)) else lookup(i, home) for i in items]
    if single and isinstance(found[0], Group):
        wait(found[0].jobs(), timeout=timeout, poll=poll)
        return found[0]
    handles = [j for f in found for j in (f.jobs() if isinstance(f, Group) else [f])]
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    pending = list(handles)
    while pending:
        pending = [j for j in pending if j.state not in TERMINAL]
        if not pending:
            break
        if deadline is not None and time.monotonic() >= deadline:
            names = ", ".join(f"{j.short_id} ({j.state.value})" for j in pending[:5])
            raise WaitTimeout(f"still not finished after {timeout:g} s: {names}; wait longer or check `nbjobs ls`")
        time.sleep(poll)
    return handles[0] if single else handles


def result(job_id: str, home: Path | str | None = None) -> dict[str, Any]:
    """Recorded outputs of a job as ``{name: value}``, each value the same kind of object it was
    recorded as (DataFrames, arrays and other objects are read from the run folder)."""
    from .outputs import load

    store = _store(home)
    full = store.resolve(job_id)
    folder = config.run_dir(full, store.path.parent)
    return {row["name"]: load(row, folder) for row in store.outputs(full)}


def logs(job_id: str, attempt: int | None = None, home: Path | str | None = None) -> str:
    """Captured output (stdout/stderr) of the latest attempt, or of attempt number ``attempt``."""
    path = log_path(job_id, attempt, home)
    if path is None or not path.exists():
        return ""
    return path.read_text(errors="replace")


def log_path(job_id: str, attempt: int | None = None, home: Path | str | None = None) -> Path | None:
    store = _store(home)
    full = store.resolve(job_id)
    rows = store.attempts(full)
    if not rows:
        return None
    if attempt is None:
        row = rows[-1]
    else:
        match = [r for r in rows if r["number"] == attempt]
        if not match:
            raise BadInput(f"job {short_id(full)} has no attempt {attempt} (it has {len(rows)})")
        row = match[0]
    return Path(row["log_path"]) if row["log_path"] else config.run_dir(full, store.path.parent) / str(
        row["number"]) / "log.txt"


# --- actions ----------------------------------------------------------------------------------------------
def cancel(job_id: str, home: Path | str | None = None) -> "Job | Group":
    """Cancel a job: at once if it has not started; a running job's kernel is stopped by its worker
    within about a second.  Works from any process.  A group's ID cancels its unfinished jobs."""
    store = _store(home)
    kind, full = store.resolve_any(job_id)
    if kind == "group":
        from .sweeps import Group

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
        from .sweeps import Group

        return Group(full, home).retry(start_worker=start_worker)
    store.retry(full, actor_name("api"))
    wake.poke(store.path)
    if start_worker:
        ensure_worker(home)
    return Job(full, home)


def check_preload(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """The ``preload`` modules as a list, each one importable here, or `BadInput` that says which is not.

    >>> check_preload("json, csv")
    ['json', 'csv']
    """
    import importlib.util
    import sys

    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n and n.strip()]
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", name):
            raise BadInput(f"--preload takes module names separated by commas (e.g. pandas,numpy), not {name!r}")
        try:
            found = importlib.util.find_spec(name.split(".")[0]) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise BadInput(f"--preload: no module named {name.split('.')[0]!r} in this Python ({sys.executable}); "
                           "install it or leave it out")
    return names


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
    from .worker import Worker

    if concurrency is not None:
        concurrency = _check_int("concurrency", concurrency, 1, 256)
    if pool is not None:
        pool = _check_int("pool", pool, 0, 64)
    if kernels is not None and kernels not in ("fork", "pool", "cold"):
        raise BadInput(f"kernels must be fork, pool or cold, not {kernels!r}")
    return Worker(home, concurrency=concurrency, executor=executor, idle_exit=idle_exit, scheduler=scheduler,
                  pool=pool, kernels=kernels, preload=check_preload(preload) if preload is not None else None).run()


# --- dead letters and retention ---------------------------------------------------------------------
def dead_letters(limit: int | None = 100, home: Path | str | None = None) -> list[JobRecord]:
    """Jobs that failed or timed out with no retry left and that nobody retried or acknowledged,
    newest first.  ``retry`` re-drives one (same ID, attempts continue); ``ack`` files it away.

    >>> [(r.short_id, r.reason, r.error_message) for r in nbjobs.dead_letters()]  # doctest: +SKIP
    [('8f3a2c1d', 'timeout', 'job exceeded its timeout of 2 s (stopped after 2.0 s)')]
    """
    return _store(home).dead_letters(limit)


def ack(job_id: str | Iterable[str], home: Path | str | None = None) -> Job | list[Job]:
    """Acknowledge a dead letter: the record stays, but it leaves the dead-letter list.  Given
    several IDs, all are acknowledged or (one is unknown or not a dead letter) none; returns a list.

    >>> nbjobs.ack("8f3a2c").acked_at  # doctest: +SKIP
    """
    store = _store(home)
    single = isinstance(job_id, str)
    full = [store.resolve(i) for i in ([job_id] if single else job_id)]
    store.ack(full, actor_name("api"))
    jobs = [Job(f, home) for f in full]
    return jobs[0] if single else jobs


def prune(older_than: str | float, states: Iterable[str] | str | None = None, *, dead_letters_only: bool = False,
          dry_run: bool = False, home: Path | str | None = None) -> list[str]:
    """Remove finished jobs older than ``older_than`` (``"30d"``, ``"12h"``, seconds) — their rows,
    attempts, events, outputs and run folders.  Only terminal states are ever removed (optionally
    only ``states``).  A pruned ID then answers "expired on DATE".  Returns the pruned IDs.

    >>> nbjobs.prune("30d", states=["succeeded"])  # doctest: +SKIP
    ['8f3a2c1d...', ...]
    """
    if isinstance(states, str):
        states = [states]
    for s in states or []:
        _check_state(s)
        if not State(s).terminal:
            raise BadInput(f"state {s!r} is not final; prune removes only succeeded, failed, timed_out "
                           "or cancelled jobs")
    cutoff = time.time() - policy.parse_duration(older_than, "older-than")
    store = _store(home)
    ids = store.prunable(cutoff, states, dead_letters_only=dead_letters_only)
    if not dry_run and ids:
        config.remove_run_dirs(ids, store.path.parent)  # files first: a crash in between leaves rows to prune
        store.prune(ids, actor_name("api"))              # again, never folders nobody knows about
    return ids


RETENTION_SETTING = "retention"


def retention(older_than: str | float | None = None, *, off: bool = False,
              home: Path | str | None = None) -> str | None:
    """Show (no argument) or set the home's default retention, e.g. ``"30d"``: workers then prune
    finished jobs older than that about every ten minutes.  ``off=True`` keeps everything."""
    store = _store(home)
    if off:
        store.set_setting(RETENTION_SETTING, None)
    elif older_than is not None:
        policy.parse_duration(older_than, "retention")
        store.set_setting(RETENTION_SETTING, str(older_than))
    return store.get_setting(RETENTION_SETTING)


def infra_retries(n: int | None = None, *, home: Path | str | None = None) -> int:
    """Show (no argument) or set the home's infrastructure budget: how many times a job is re-queued
    after attempts lost to the system (worker lost, runner died, kernel lost before the job's code
    ran) before it fails, without charging its ``retries``.  A job's own ``infra_retries`` wins.

    >>> nbjobs.infra_retries(5)
    5
    """
    store = _store(home)
    if n is not None:
        store.set_setting("infra_retries", str(policy.check_infra_retries(n)))
    value = store.get_setting("infra_retries")
    return policy.check_infra_retries(value) if value is not None else policy.INFRA_RETRIES


# --- schedules -----------------------------------------------------------------------------------------
def schedule_add(name: str, cron: str, notebook: str | os.PathLike | None = None,
                 parameters: dict[str, Any] | None = None, *, code: str | None = None, tz: str = "UTC",
                 misfire: str = "once", misfire_cap: int = 10, overlap: str = "skip", job_name: str | None = None,
                 kernel: str | None = None, cwd: str | os.PathLike | None = None, retries: int = 0,
                 timeout: float | None = None, priority: int = 0, tags: Sequence[str] | str | None = None,
                 cell_timeout: float | None = None, secrets: Sequence[str] | str | None = None,
                 retry_on: Sequence[str] | str | None = None, backoff: dict[str, Any] | None = None,
                 notify: str | None = None, notify_on: str | None = None, home: Path | str | None = None,
                 start_worker: bool = True, now: float | None = None, report: str | None = None) -> dict[str, Any]:
    """Add a cron schedule that submits ``notebook`` (or ``code``, a cell job) at each slot.

    ``cron``: 5 fields or an alias (``@daily``...), in the IANA zone ``tz`` (DST rules in
    `nbjobs.schedule`).  ``misfire`` (after downtime): ``skip``, ``once`` (default) or ``all`` (at
    most ``misfire_cap`` missed slots).  ``overlap`` (previous fire still active): ``skip``
    (default), ``queue`` or ``allow``.  Each fire is an ordinary job named ``job_name`` (default:
    the schedule's name) linked to the schedule.  Schedules fire while a worker of the home runs;
    a background worker is started (``start_worker=False`` to skip) and stays while schedules
    exist.  Invalid input raises `BadInput` and nothing is written.  Returns the schedule with its
    next three fire times (``next``).

    A fired job whose notebook has a ``parameters`` cell (a cell job always has one) gets the
    parameter ``nbjobs_scheduled_for``: its slot in ISO 8601 with the zone's offset
    (``2025-03-09T06:30:00+01:00``), so a nightly report knows which day it reports; past slots
    run with `schedule_backfill`.  ``report="html"`` renders each fired job's output notebook
    (see `submit`).

    >>> nbjobs.schedule_add("daily-report", "30 6 * * 1-5", "report.ipynb", {"n": 7},
    ...                     tz="Europe/Berlin")["next"]                       # doctest: +SKIP
    """
    from . import schedule as sch

    name = sch.check_name(name)
    cron = sch.check_cron(cron)
    tz = sch.check_tz(tz)
    misfire = sch.check_policy("misfire", misfire, sch.MISFIRE_POLICIES)
    overlap = sch.check_policy("overlap", overlap, sch.OVERLAP_POLICIES)
    misfire_cap = _check_int("misfire_cap", misfire_cap, 1, 1000)
    if (notebook is None) == (code is None):
        raise BadInput("give a notebook or code= for the schedule's job (one of them)")
    if notebook is not None:
        spec = _notebook_spec(notebook, parameters, job_name or name, kernel, cwd, retries, timeout, priority, tags,
                              None, cell_timeout, secrets, retry_on, backoff)
    else:
        if not isinstance(code, str) or not code.strip():
            raise BadInput("code must be a non-empty string of Python source")
        spec = _common(job_name or name, retries, timeout, priority, tags, None, kernel, cwd, parameters)
        spec.update(kind="cell", source=code, code_hash=code_hash("cell", source=code),
                    options=_options(cell_timeout, secrets, retry_on, backoff))
        spec["kernel"] = spec["kernel"] or "python3"
    _flow(spec, home, None, False, notify, notify_on)
    _report_option(spec, report)
    try:
        sch.next_fire(cron, tz, time.time() if now is None else now)
    except Exception:  # noqa: croniter gives up on dates that never come (Feb 30)
        raise BadInput(f"cron expression {cron!r} never fires; check the day and month fields") from None
    store = _store(home)
    store.add_schedule(name, cron, tz, spec, misfire=misfire, misfire_cap=misfire_cap, overlap=overlap, now=now,
                       actor=actor_name("api"))
    if start_worker:
        ensure_worker(home)
    return schedule_show(name, home=home, now=now)


def _with_next(d: dict[str, Any], now: float | None, n: int = 3) -> dict[str, Any]:
    from . import schedule as sch

    now = time.time() if now is None else now
    d["next"] = [] if d["paused"] else sch.next_fires(d["cron"], d["tz"], max(now, d["last_slot"]), n)
    d["next_local"] = [sch.fmt_slot(t, d["tz"]) for t in d["next"]]
    return d


def schedules(home: Path | str | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """Every schedule of the home with its next three fire times (``next``, ``next_local``).

    >>> [(s["name"], s["next_local"][0]) for s in nbjobs.schedules()]   # doctest: +SKIP
    [('daily-report', '2026-11-25 06:30 CET')]
    """
    return [_with_next(d, now) for d in _store(home).list_schedules()]


def schedule_show(name: str, home: Path | str | None = None, now: float | None = None) -> dict[str, Any]:
    """One schedule: its settings, next fire times, recent decisions (``events``: fired,
    misfire_*, overlap_skipped, paused...) and the jobs it fired most recently (``jobs``)."""
    store = _store(home)
    d = _with_next(store.get_schedule(name), now)
    d["events"] = store.schedule_events(name, 20)
    d["jobs"] = [e["job_id"] for e in d["events"] if e["job_id"]]
    return d


def schedule_pause(name: str, home: Path | str | None = None) -> dict[str, Any]:
    """Stop firing until `schedule_resume`; slots of the pause never fire (no misfire catch-up)."""
    _store(home).set_schedule_paused(name, True, actor=actor_name("api"))
    return schedule_show(name, home)


def schedule_resume(name: str, home: Path | str | None = None) -> dict[str, Any]:
    """Fire again from now on."""
    _store(home).set_schedule_paused(name, False, actor=actor_name("api"))
    return schedule_show(name, home)


def schedule_rm(name: str, home: Path | str | None = None) -> None:
    """Remove a schedule (the jobs it fired stay)."""
    _store(home).remove_schedule(name)


def schedule_run_now(name: str, home: Path | str | None = None, start_worker: bool = True) -> Job:
    """Submit one job of the schedule now, outside its slots; returns its handle.

    >>> nbjobs.schedule_run_now("daily-report").wait(600).result()   # doctest: +SKIP
    """
    from . import schedule as sch

    job_id = sch.run_now(_store(home), name, actor_name("api"))
    if start_worker:
        ensure_worker(home)
    return Job(job_id, home)


def schedule_backfill(name: str, start: Any, end: Any, *, limit: int = 100, home: Path | str | None = None,
                      start_worker: bool = True, now: float | None = None) -> list[dict[str, Any]]:
    """Run the past slots of schedule ``name`` from ``start`` to ``end`` (both included), each as a
    job of its own with its slot time (``nbjobs_scheduled_for``, see `schedule_add`).  ``start`` and
    ``end``: ``"2025-03-01"`` (a whole day in the schedule's zone), an ISO 8601 time
    (``"2025-03-01T06:30"``, in the schedule's zone unless it has an offset) or epoch seconds.
    Idempotent: a slot that fired or was backfilled before keeps its job (``created`` False), so
    running the same backfill twice submits nothing new.  At most ``limit`` slots; an ``end`` in
    the future is refused.  Returns one dict per slot, oldest first: ``slot`` (epoch),
    ``scheduled_for`` (ISO 8601), ``job`` (its `Job`) and ``created``.

    >>> [(b["scheduled_for"], b["created"]) for b in
    ...  nbjobs.schedule_backfill("nightly", "2025-03-01", "2025-03-03")]        # doctest: +SKIP
    [('2025-03-01T02:30:00+01:00', True), ('2025-03-02T02:30:00+01:00', True), ('2025-03-03T02:30:00+01:00', True)]
    """
    from . import schedule as sch

    store = _store(home)
    d = store.get_schedule(name)
    limit = _check_int("limit", limit, 1, 10_000)
    lo = sch.parse_when(start, d["tz"], "--from")
    hi = sch.parse_when(end, d["tz"], "--to", end=True)
    done = sch.backfill(store, name, lo, hi, actor_name("api"), now=now, limit=limit)
    if done:
        wake.poke(store.path)
        if start_worker:
            ensure_worker(home)
    return [{"slot": slot, "scheduled_for": sch.slot_iso(slot, d["tz"]), "job": Job(job_id, home),
             "created": created} for slot, job_id, created in done]


def notify_default(url: str | None = None, *, secret_env: str | None = None, on: str | None = None,
                   off: bool = False, home: Path | str | None = None) -> dict[str, Any]:
    """Show or set the home's default webhook (used by jobs without ``notify=``).  ``secret_env``
    names the worker's environment variable holding the HMAC signing secret (the value is never
    stored); ``on`` is ``end`` (final states, default), ``all`` (every state change) or ``failure`` (only
    failed and timed-out jobs); ``off=True`` removes them.

    >>> nbjobs.notify_default("https://hooks.example.com/nbjobs", secret_env="NBJOBS_WEBHOOK_SECRET")
    {'url': 'https://hooks.example.com/nbjobs', 'secret_env': 'NBJOBS_WEBHOOK_SECRET', 'on': 'end'}
    """
    from .notify import check_env_name, check_url

    store = _store(home)
    if off:
        for k in ("notify_url", "notify_secret_env", "notify_on"):
            store.set_setting(k, None)
    else:
        url = check_url(url) if url is not None else None
        secret_env = check_env_name(secret_env) if secret_env is not None else None
        if on is not None:
            policy.check_notify_on(on, "on")
        for k, v in (("notify_url", url), ("notify_secret_env", secret_env), ("notify_on", on)):
            if v is not None:
                store.set_setting(k, v)
    return {"url": store.get_setting("notify_url"), "secret_env": store.get_setting("notify_secret_env"),
            "on": store.get_setting("notify_on") or "end"}


def deliveries(job_id: str, home: Path | str | None = None) -> list[dict[str, Any]]:
    """The webhook deliveries of a job: id, url, event, state (pending/delivered/failed),
    attempts, last status and error."""
    store = _store(home)
    return store.deliveries(store.resolve(job_id))


# --- comparing runs and reports ----------------------------------------------------------------------------
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
    from .comparison import build

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
    from . import reports

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