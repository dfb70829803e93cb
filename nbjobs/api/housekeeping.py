"""Dead letters (`dead_letters`, `ack`), pruning and the home's retention, and its infrastructure
retry budget (`infra_retries`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable

from .. import config, policy
from ..errors import BadInput
from ..job import JobRecord, State
from ..store import actor_name
from .checks import _check_state
from .handle import Job, _store


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

