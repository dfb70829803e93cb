"""The `Job` handle: a job's ID and home; every property reads SQLite afresh.

``_store(home)`` opens the home's store: the one way every part of `nbjobs.api` reaches SQLite.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import config
from ..errors import NbjobsError
from ..job import JobRecord, State, short_id
from ..store import Store, open_store


def _store(home: Path | str | None = None) -> Store:
    return open_store(config.db_path(Path(home)) if home else None)


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
        from .queries import wait

        wait([self], timeout=timeout)
        return self

    def result(self) -> dict[str, Any]:
        """Recorded outputs by name, each as the same kind of object it was recorded as."""
        from .queries import result

        return result(self.id, home=self.home)

    def logs(self, attempt: int | None = None) -> str:
        """Captured stdout/stderr of the latest (or the given) attempt."""
        from .queries import logs

        return logs(self.id, attempt=attempt, home=self.home)

    def cancel(self) -> "Job":
        from .actions import cancel

        return cancel(self.id, home=self.home)

    def retry(self) -> "Job":
        from .actions import retry

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
        from ..text import wait_reason
        from .queries import waiting_reasons

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
        from ..panel.static import receipt_html  # display code lives in the panel; loaded on first display

        return receipt_html(self)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict[str, Any]:
        """The handle's display data: its text repr, the HTML receipt and, in a kernel whose front
        end can show widgets, a live receipt widget (see `nbjobs.panel`)."""
        from ..panel.public import job_bundle

        return job_bundle(self, include, exclude)

    def _ipython_display_(self) -> None:
        """How Jupyter shows a handle (the value of a ``%%job`` cell, ``nbjobs.get(id)``): the
        receipt, published with a display id; a live receipt of a running job is replaced in place
        by its final static receipt when the job ends, so a saved notebook, a restarted kernel and
        nbviewer show how it ended (see `nbjobs.panel.public.show_job`)."""
        from ..panel.public import show_job

        show_job(self)

