"""The job history as a DataFrame (`history`): one row per job, or per attempt.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..store import Store
from .inputs import _TEXT, _TS, STATE_DTYPE, _floats, _states, _store, _utc, epoch

HISTORY_DTYPES: dict[str, Any] = {
    "id": _TEXT, "name": _TEXT, "kind": _TEXT, "state": STATE_DTYPE, "reason": _TEXT, "attempts": "int64",
    "priority": "int64", "tags": object, "submitted_at": _TS, "started_at": _TS, "finished_at": _TS,
    "queue_wait_s": "float64", "runtime_s": "float64", "total_s": "float64", "error_type": _TEXT, "error_message": _TEXT,
    "code_hash": _TEXT, "worker": _TEXT, "output_path": _TEXT,
}
#: ``history(attempts=True)``: the same columns plus ``attempt`` (its number) and ``outcome``
ATTEMPT_DTYPES: dict[str, Any] = {
    "id": _TEXT, "attempt": "int64", "name": _TEXT, "kind": _TEXT, "state": STATE_DTYPE, "outcome": _TEXT,
    **{k: v for k, v in HISTORY_DTYPES.items() if k not in ("id", "name", "kind", "state", "total_s")},
}


def history(since: Any = None, until: Any = None, name: str | None = None,
            state: str | Iterable[str] | None = None, tag: str | None = None, attempts: bool = False, *,
            home: Path | str | None = None) -> pd.DataFrame:
    """The job history as a DataFrame: one row per job, oldest submit first (or one row per
    attempt with ``attempts=True``).

    Filters: ``since``/``until`` bound the submit time (``since <= submitted_at < until``) and
    take a time (``"2024-05-01"``, a datetime, epoch seconds; naive means UTC) or a duration
    before now (``since="7D"``); ``name`` is exact or a glob (``"train*"``); ``state`` one state
    or several; ``tag`` one tag.

    Columns (timestamps are tz-aware UTC, durations float seconds, NaN/NaT where there is none):

    ======================  ======================================================================
    ``id``                  the full job ID
    ``name``, ``kind``      the job's name; ``notebook`` or ``cell``
    ``state``               categorical, all 8 states as categories (lifecycle order)
    ``reason``              why it is in that state (``error``, ``timeout``, ``released`` ...)
    ``attempts``            attempts started (released and lost attempts included)
    ``priority``, ``tags``  as submitted; ``tags`` is a tuple of strings
    ``submitted_at``        when it was submitted
    ``started_at``          when its first attempt started
    ``finished_at``         when it reached its final state (NaT while active)
    ``queue_wait_s``        ``started_at - submitted_at``: waiting before the first attempt
    ``runtime_s``           the last attempt's run time: from its first cell of the job's own code
                            to the end (the start phase, a worker and a kernel getting ready, is
                            not counted; nor are earlier attempts and backoff).  NaN for a job
                            whose last attempt never reached its code (cancelled while starting)
    ``total_s``             ``finished_at - submitted_at``: what the user waited, submit to end
    ``error_type``,         the last error (None for a job that succeeded)
    ``error_message``
    ``code_hash``           sha256 prefix of the cell source / notebook file
    ``worker``              the worker that ran the job's last attempt
    ``output_path``         the output notebook of the last attempt
    ======================  ======================================================================

    With ``attempts=True`` there is one row per attempt, with two more columns, ``attempt`` (its
    number) and ``outcome`` (``succeeded``, ``error``, ``timeout``, ``kernel_died``,
    ``worker_lost``, ``released``, ``cancelled``, ``running`` ...); ``started_at``,
    ``finished_at``, ``runtime_s``, the error, ``code_hash``, ``worker`` and ``output_path``
    are the attempt's own (there is no ``total_s``); ``queue_wait_s`` is the attempt's start minus the moment it could
    first run (the submit for attempt 1, else the end of the previous attempt: retry backoff
    counts as waiting, and so does the time a dead letter sat until someone retried it).
    ``state``, ``reason`` and ``attempts`` stay the job's.

    No matching job gives an empty frame with these columns and dtypes.

    >>> df = nbjobs.history(since="7D", name="report*")              # doctest: +SKIP
    >>> df.groupby("name").runtime_s.quantile(0.95)                  # doctest: +SKIP
    >>> df[df.state == "failed"][["id", "error_type", "worker"]]     # doctest: +SKIP
    >>> nbjobs.history(attempts=True).groupby("outcome").size()      # doctest: +SKIP
    """
    lo, hi = epoch(since, "since"), epoch(until, "until")
    states = _states(state)
    store = _store(home)
    names = Store.ATTEMPT_COLUMNS if attempts else Store.HISTORY_COLUMNS
    raw = dict(zip(names, store.history_rows(lo, hi, name=name, state=states, tag=tag, attempts=attempts)))
    submitted, started, began, finished = (_floats(raw[k]) for k in
                                           ("submitted_at", "started_at", "began_at", "finished_at"))
    if attempts:
        numbers = np.array(raw["attempt"], dtype=np.int64)
        ids = np.array(raw["id"], dtype=object)
        same_job = np.zeros(len(ids), dtype=bool)
        same_job[1:] = ids[1:] == ids[:-1]  # rows come ordered by job, then attempt number
        previous_end = np.concatenate(([np.nan], finished[:-1]))
        ready = np.where(same_job & (numbers > 1), previous_end, submitted)
    else:
        ready = submitted
    tag_codes, tag_texts = pd.factorize(np.array(raw["tags"], dtype=object))  # few distinct tag lists
    decoded = np.empty(len(tag_texts), dtype=object)
    for i, text in enumerate(tag_texts):
        decoded[i] = tuple(json.loads(text)) if text else ()

    columns: dict[str, Any] = {}
    dtypes = ATTEMPT_DTYPES if attempts else HISTORY_DTYPES
    for col, dtype in dtypes.items():
        if col == "queue_wait_s":
            columns[col] = started - ready
        elif col == "runtime_s":
            columns[col] = finished - began
        elif col == "total_s":
            columns[col] = finished - submitted
        elif col in ("submitted_at", "started_at", "finished_at"):
            columns[col] = _utc({"submitted_at": submitted, "started_at": started, "finished_at": finished}[col])
        elif col == "tags":
            columns[col] = pd.Series(decoded[tag_codes] if len(tag_codes) else [], dtype=object)
        elif col == "state":
            columns[col] = pd.Categorical(raw["state"], dtype=STATE_DTYPE)
        else:
            columns[col] = pd.Series(raw[col], dtype=dtype)
    return pd.DataFrame(columns)
