"""Parameter sweeps as one thing: `sweep` submits one ordinary job per parameter set as a **group**
with its own ID (the same form as job IDs, found by the same prefix lookup) and a name; `Group` is
its handle.  Every verb that takes an ID takes a group's and applies to its jobs (``cancel``,
``retry``, ``wait``, ``show``, ``logs``, ``result``).

>>> g = nbjobs.sweep("train.ipynb", grid={"lr": [0.1, 0.01], "depth": [3, 5]}, max_parallel=2)  # doctest: +SKIP
>>> g.wait(600).results()                                                                     # doctest: +SKIP
           score      state  duration                                id
lr   depth
0.10 3      0.91  succeeded      1.52  8f3a2c1d...
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from . import config, params, policy
from .api.handle import Job, _store
from .api.specs import _common, _flow, _limits, _notebook_spec, _options, _report_option
from .api.submitting import _submit_group, ensure_worker
from .errors import BadInput, IllegalTransition, NbjobsError
from .job import RETRYABLE, JobRecord, State, code_hash, group_state, new_id, short_id
from .store import actor_name

#: what `Group.results` adds after the recorded outputs
RESULT_COLUMNS = ("state", "duration", "id")


class Group:
    """A handle on one group of jobs (a sweep).  Like `Job`, every property reads SQLite afresh.

    >>> g = nbjobs.lookup("91bc04")      # doctest: +SKIP
    >>> g.progress, g.state              # doctest: +SKIP
    ((3, 4), <State.RUNNING: 'running'>)
    """

    def __init__(self, group_id: str, home: Path | str | None = None):
        self.id = group_id
        self.home = Path(home) if home else config.home()

    @property
    def _store(self):
        return _store(self.home)

    @property
    def record(self) -> dict[str, Any]:
        """The group's row: id, name, kind, params (the swept names), size, created_at, options."""
        return self._store.get_group(self.id)

    @property
    def name(self) -> str:
        return self.record["name"]

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @property
    def params(self) -> list[str]:
        """The swept parameter names: the index of `results`."""
        return self.record["params"]

    def records(self) -> list[JobRecord]:
        """Its jobs' records, in the sweep's order."""
        return self._store.group_jobs(self.id)

    def jobs(self) -> list[Job]:
        """Its jobs' handles, in the sweep's order."""
        return [Job(r.id, self.home) for r in self.records()]

    def counts(self) -> dict[str, Any]:
        """``total``, jobs per state (``states``), first start and last end."""
        return self._store.group_counts([self.id]).get(
            self.id, {"total": 0, "states": {}, "started_at": None, "finished_at": None})

    @property
    def progress(self) -> tuple[int, int]:
        """``(ended, total)``: how many of its jobs reached a final state."""
        c = self.counts()
        return sum(n for s, n in c["states"].items() if State(s).terminal), c["total"]

    @property
    def state(self) -> State:
        """One state for the group (`job.group_state`): running while any job runs, ..., else the
        worst ending, else succeeded."""
        return group_state(self.counts()["states"])

    def wait(self, timeout: float | None = None) -> "Group":
        """Block until every job of the group ended (or raise `WaitTimeout`); returns the handle."""
        from .api import wait

        wait(self.jobs(), timeout=timeout)
        return self

    def cancel(self) -> "Group":
        """Cancel its unfinished jobs (its finished ones stay as they are)."""
        from . import wake

        store = self._store
        for r in self.records():
            if r.state.terminal:
                continue
            try:
                store.request_cancel(r.id, actor_name("api"))
            except IllegalTransition:  # it ended meanwhile
                pass
        wake.poke(store.path)
        return self

    def retry(self, start_worker: bool = True) -> "Group":
        """Run its failed, timed-out and cancelled jobs again (same IDs); a group with none raises."""
        from . import wake

        store = self._store
        todo = [r for r in self.records() if r.state in RETRYABLE]
        if not todo:
            raise IllegalTransition(f"group {self.short_id} has no failed, timed-out or cancelled job to retry")
        for r in todo:
            try:
                store.retry(r.id, actor_name("api"))
            except IllegalTransition:
                pass
        wake.poke(store.path)
        if start_worker:
            ensure_worker(self.home)
        return self

    def results(self):
        """A pandas DataFrame with one row per job: indexed by the swept parameters, one column per
        recorded output (values of the same kind as recorded; missing ones NaN), then ``state``,
        ``duration`` (the run time of its last attempt, seconds, as `history`'s ``runtime_s``) and ``id``.  Loads pandas."""
        import pandas as pd

        from .outputs import load

        store = self._store
        names = self.params
        rows, index = [], []
        for r in self.records():
            folder = config.run_dir(r.id, store.path.parent)
            values: dict[str, Any] = {}
            for row in store.outputs(r.id):
                key = row["name"] if row["name"] not in RESULT_COLUMNS else f"{row['name']} (output)"
                try:
                    values[key] = load(row, folder)
                except (OSError, NbjobsError, ValueError):  # a file pruned or unreadable: missing, not fatal
                    values[key] = None
            values.update(state=r.state.value, duration=r.runtime, id=r.id)
            rows.append(values)
            index.append(tuple(_hashable(r.parameters.get(n)) for n in names))
        outputs = list(dict.fromkeys(k for v in rows for k in v if k not in RESULT_COLUMNS))
        columns = outputs + list(RESULT_COLUMNS)
        if len(names) == 1:
            idx = pd.Index([i[0] for i in index], name=names[0])
        else:
            idx = pd.MultiIndex.from_tuples(index, names=names) if index else \
                pd.MultiIndex.from_arrays([[]] * len(names), names=names)
        frame = pd.DataFrame(rows, index=idx, columns=columns)
        frame["duration"] = frame["duration"].astype(float)
        return frame

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Group) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("group", self.id))

    def __repr__(self) -> str:
        try:
            done, total = self.progress
            return f"<Group {self.short_id} {self.name!r} {done}/{total} done: {self.state.value}>"
        except NbjobsError:
            return f"<Group {self.short_id} (unavailable)>"

    def _repr_html_(self) -> str:
        """A static snapshot: the group's row (n/N) and a table of its jobs with their parameters."""
        from .panel.static import group_html

        return group_html(self)


def _hashable(value: Any) -> Any:
    """A parameter value usable in an index: lists become tuples, mappings their JSON text."""
    import json

    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


#: the job options `sweep` passes on to each job (as `run_notebook` takes them)
_JOB_OPTIONS = ("kernel", "cwd", "retries", "timeout", "priority", "tags", "cell_timeout", "secrets", "retry_on",
                "backoff", "infra_retries", "after", "after_any", "notify", "notify_on", "concurrency_key",
                "max_running", "report", "resources")


def sweep(notebook: str | os.PathLike | None = None, grid: dict[str, Sequence[Any]] | None = None, *,
          code: str | None = None, zip: bool = False, parameters: dict[str, Any] | None = None,
          name: str | None = None, max_parallel: int | None = None, key: str | None = None,
          home: Path | str | None = None, start_worker: bool = True, **options: Any) -> Group:
    """Submit a parameter sweep: one job of ``notebook`` (or of ``code``, cell jobs) per parameter
    set of ``grid``, as one group; returns its `Group` at once.

    ``grid`` maps parameter names to lists of values: every combination runs (the first name varies
    slowest), or with ``zip=True`` the i-th values together.  ``parameters`` are the same in every
    job.  ``name`` names the group and its jobs (default: the notebook's name).  ``max_parallel=N``:
    at most N of its jobs run at once (a concurrency limit keyed by the group).  ``key`` makes the
    submit idempotent: a second sweep with the same key returns the first group.  Other keywords
    are `run_notebook`'s job options (``retries``, ``timeout``, ``tags``, ``after``, ``notify``,
    ``notify_on``, ``concurrency_key`` ...), applied to each job.  Bad input raises `BadInput` and
    submits nothing: all of the sweep's jobs are recorded in one transaction, or none.

    >>> g = nbjobs.sweep("train.ipynb", grid={"lr": [0.1, 0.01], "depth": [3, 5]})   # doctest: +SKIP
    >>> g.wait().results().loc[(0.1, 3), "score"]                                       # doctest: +SKIP
    0.91
    """
    unknown = sorted(set(options) - set(_JOB_OPTIONS))
    if unknown:
        raise BadInput(f"sweep() got unknown option(s) {', '.join(unknown)}; the job options are: "
                       f"{', '.join(_JOB_OPTIONS)}")
    if (notebook is None) == (code is None):
        raise BadInput("give a notebook or code= for the sweep's jobs (one of them)")
    sets = params.expand(grid or {}, zip_=bool(zip))
    base = params.check_json(dict(parameters or {}))
    o = {k: options.get(k) for k in _JOB_OPTIONS}
    if notebook is not None:
        spec = _notebook_spec(notebook, base, name, o["kernel"], o["cwd"], o["retries"] or 0, o["timeout"],
                              o["priority"] or 0, o["tags"], None, o["cell_timeout"], o["secrets"], o["retry_on"],
                              o["backoff"], o["infra_retries"])
    else:
        if not isinstance(code, str) or not code.strip():
            raise BadInput("code must be a non-empty string of Python source")
        spec = _common(name, o["retries"] or 0, o["timeout"], o["priority"] or 0, o["tags"], None, o["kernel"],
                       o["cwd"], base)
        spec.update(kind="cell", source=code, code_hash=code_hash("cell", source=code),
                    options=_options(o["cell_timeout"], o["secrets"], o["retry_on"], o["backoff"],
                                     o["infra_retries"]))
        spec["name"] = spec["name"] or "sweep"
        spec["kernel"] = spec["kernel"] or "python3"
    _flow(spec, home, o["after"], bool(o["after_any"]), o["notify"], o["notify_on"])
    _report_option(spec, o["report"])
    spec["resources"] = policy.check_resources(o["resources"])
    gid = new_id()
    if max_parallel is not None:
        if o["concurrency_key"] is not None:
            raise BadInput("give --max-parallel or --concurrency-key for a sweep, not both (a job has one key)")
        from .api.checks import MAX_RUNNING, _check_int

        spec["concurrency_key"] = f"group:{gid}"
        spec["max_running"] = _check_int("max_parallel", max_parallel, 1, MAX_RUNNING)
    else:
        _limits(spec, o["concurrency_key"], o["max_running"])
    if key is not None:
        from .api.checks import _check_text

        key = _check_text("key", key)
    specs = []
    for i, values in enumerate(sets):
        job = dict(spec, parameters={**spec["parameters"], **values},
                   options=dict(spec["options"], sweep_index=i))
        specs.append(job)
    group = {"id": gid, "name": spec["name"], "params": list(sets[0]), "idem_key": key,
             "options": {"zip": bool(zip), "max_parallel": spec.get("max_running") if max_parallel else None}}
    full = _submit_group(group, specs, home, start_worker)
    return Group(full, home)


def group_counts(group_ids: Sequence[str] | set[str], home: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """Each group's jobs per state and its time span (`Store.group_counts`): what the panel's group
    rows show."""
    return _store(home).group_counts(group_ids)


def group(id_or_prefix: str, home: Path | str | None = None) -> Group:
    """The group with this ID or unique prefix (a job's ID is refused).

    >>> nbjobs.group("91bc04").results()   # doctest: +SKIP
    """
    return Group(_store(home).check_group_prefix(id_or_prefix), home)


def groups(limit: int | None = 20, home: Path | str | None = None) -> list[Group]:
    """Recent groups (sweeps), newest first."""
    return [Group(g["id"], home) for g in _store(home).list_groups(limit)]


__all__ = ["Group", "sweep", "group", "groups", "RESULT_COLUMNS"]
