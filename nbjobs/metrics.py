"""Job history and service levels: pandas frames, SLO burn rates and Prometheus text.

Everything here reads the same SQLite file as the rest of nbjobs, through `nbjobs.store` (this
module holds no SQL) and computes with numpy/pandas.  ``import nbjobs`` does not import this
module; ``nbjobs.history``, ``nbjobs.sli`` and ``nbjobs.slo`` load it (and pandas) on first use.

>>> import nbjobs
>>> df = nbjobs.history(since="7D")                 # doctest: +SKIP
>>> df.groupby("name").runtime_s.median()           # doctest: +SKIP
>>> nbjobs.sli(window="7D")                         # doctest: +SKIP
           runs  succeeded  failed  ...  success_rate  p50_runtime_s  ...  queue_depth
name
nightly      28         27       1  ...      0.964286          312.4  ...            0
report      140        140       0  ...      1.000000           41.0  ...            2
>>> nbjobs.slo(objective=0.99)[["budget_remaining_ratio", "burn_1h", "alert"]]   # doctest: +SKIP

Definitions used throughout (epoch seconds in SQLite, tz-aware UTC timestamps in the frames):

- **queue wait** of a job: its first attempt's start minus its submit time; of an attempt
  (``attempts=True``): its start minus the moment it could first run (the submit for attempt 1,
  else the end of the previous attempt, so retry backoff counts as waiting).
- **runtime** of a job: its end minus its first attempt's start (for a retried job this spans
  every attempt and the backoff between them: the time the job took once it started); of an
  attempt: its own end minus its own start.
- a **run**: a job that reached a final state (succeeded, failed, timed_out, cancelled).  A job
  that was retried and then succeeded is one run, a success.
- **percentiles**: numpy's ``'linear'`` method (Hyndman & Fan type 7, the default of
  `numpy.percentile` and `pandas.Series.quantile`): with the ``n`` values sorted, the q-th
  quantile sits at position ``(n - 1) * q``, interpolated linearly between its two neighbours.
"""
from __future__ import annotations

import json
import math
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from . import config, policy
from .errors import BadInput
from .job import State
from .store import Store, open_store

#: every state, in lifecycle order: the categories of the ``state`` column
STATES: tuple[str, ...] = tuple(s.value for s in State)
STATE_DTYPE = pd.CategoricalDtype(list(STATES))
#: final states, in the order of the SLI columns
FINAL: tuple[str, ...] = ("succeeded", "failed", "timed_out", "cancelled")
#: the windows of `slo`'s burn rates, in seconds
BURN_WINDOWS: dict[str, float] = {"5m": 300.0, "30m": 1800.0, "1h": 3600.0, "6h": 21600.0, "24h": 86400.0,
                                  "3d": 259200.0}
#: the SRE workbook's multiwindow, multi-burn-rate alerts: (level, long window, short window, burn rate)
ALERT_RULES: tuple[tuple[str, str, str, float], ...] = (
    ("page", "1h", "5m", 14.4),    # 2% of a 30-day budget spent in one hour
    ("page", "6h", "30m", 6.0),    # 5% in six hours
    ("ticket", "3d", "6h", 1.0),   # 10% in three days
)
ALERT_DTYPE = pd.CategoricalDtype(["none", "ticket", "page"], ordered=True)
#: upper bounds (seconds) of the Prometheus histogram buckets
RUNTIME_BUCKETS: tuple[float, ...] = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
QUEUE_WAIT_BUCKETS: tuple[float, ...] = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 600, 1800, 3600)

_I = {s: i for i, s in enumerate(STATES)}                 # state -> code used by Store.outcome_rows
_TEXT: Any = "str" if int(pd.__version__.split(".")[0]) >= 3 else object
_TS = "datetime64[ns, UTC]"
_REL_TOL = 1e-9                                            # for burn-rate thresholds, see `slo`
_MAX_ROWS = 200_000                                        # groups x buckets in one `sli` frame

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
SLI_DTYPES: dict[str, str] = {
    "runs": "int64", "succeeded": "int64", "failed": "int64", "timed_out": "int64", "cancelled": "int64",
    "success_rate": "float64", "p50_runtime_s": "float64", "p95_runtime_s": "float64",
    "p99_runtime_s": "float64", "p95_queue_wait_s": "float64", "mean_queue_wait_s": "float64",
    "retries_per_run": "float64", "dead_letters": "int64", "dead_letter_rate": "float64", "queue_depth": "int64",
    "slow_runs": "int64", "slow_running": "int64",
}
SLO_COLUMNS: tuple[str, ...] = (
    "objective", "runs", "bad", "sli", "budget_total", "budget_spent", "budget_remaining",
    "budget_remaining_ratio", *(f"burn_{w}" for w in BURN_WINDOWS), "alert")


# --- inputs -------------------------------------------------------------------------------------------
def _store(home: Path | str | None) -> Store:
    return open_store(config.db_path(Path(home)) if home else None)


def seconds(value: Any, what: str = "duration") -> float:
    """Seconds in a duration: ``"7D"``, ``"30d"``, ``"1h"``, ``"30min"``, ``"90s"``, ``"2w"``, a
    number of seconds (also as a string), or a `datetime.timedelta`/`pandas.Timedelta`.

    >>> seconds("7D"), seconds("1h"), seconds("30min"), seconds(90), seconds("3600")
    (604800.0, 3600.0, 1800.0, 90.0, 3600.0)
    """
    if isinstance(value, (timedelta, np.timedelta64)):
        s = pd.Timedelta(value).total_seconds()
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        s = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            s = float(text)
        except ValueError:
            try:
                s = policy.parse_duration(text, what)
            except BadInput:
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        s = pd.Timedelta(text).total_seconds()
                except ValueError:
                    raise BadInput(f"{what} {value!r} is not a duration; write it like 7D, 12h, 30min, 90s "
                                   "or a number of seconds") from None
    else:
        raise BadInput(f"{what} must be a duration like '7D' or '1h', not {value!r}")
    if not math.isfinite(s) or s <= 0:
        raise BadInput(f"{what} must be a positive duration, not {value!r}")
    return s


def epoch(value: Any, what: str = "time", now: float | None = None) -> float | None:
    """Epoch seconds for a point in time: None stays None; a number is epoch seconds; a
    `datetime`, `pandas.Timestamp`, ``numpy.datetime64`` or ISO string is a time (naive means
    UTC); a duration string (``"7D"``, ``"12h"``) means that long before ``now``.

    >>> epoch(1700000000), epoch("2023-11-14T22:13:20Z"), epoch("1h", now=7200.0)
    (1700000000.0, 1700000000.0, 3600.0)
    """
    if value is None:
        return None
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        out = float(value)
    elif isinstance(value, str) and not _looks_like_date(value):
        out = (time.time() if now is None else now) - seconds(value, what)
    else:
        try:
            ts = pd.Timestamp(value)
        except (TypeError, ValueError):
            raise BadInput(f"{what} {value!r} is neither a time (2024-05-01, 2024-05-01T12:00Z, a datetime, "
                           "epoch seconds) nor a duration before now (7D, 12h)") from None
        if ts is pd.NaT:
            raise BadInput(f"{what} must be a time, not {value!r}")
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts
        out = ts.value / 1e9
    if not math.isfinite(out):
        raise BadInput(f"{what} must be a finite time, not {value!r}")
    return out


def _looks_like_date(text: str) -> bool:
    t = text.strip()
    return len(t) >= 8 and t[:4].isdigit() and t[4] in "-/"


def _utc(values: np.ndarray) -> pd.Series:
    """Epoch seconds (NaN for none) as tz-aware UTC timestamps, always nanosecond resolution."""
    return pd.Series(pd.to_datetime(values, unit="s", utc=True)).astype(_TS)


def _floats(values: Sequence[Any]) -> np.ndarray:
    return np.array(values, dtype=np.float64)  # None -> NaN


def _states(state: str | Iterable[str] | None) -> list[str] | None:
    if state is None:
        return None
    states = [state] if isinstance(state, str) else list(state)
    for s in states:
        if s not in STATES:
            raise BadInput(f"unknown state {s!r}; use one of: {', '.join(STATES)}")
    return states


# --- history --------------------------------------------------------------------------------------------
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


# --- the rows SLIs, SLOs and Prometheus are computed from ---------------------------------------------
class _Outcomes:
    """`Store.outcome_rows` as numpy arrays, with the group of each row factorized (sorted)."""

    #: one record per `Store.outcome_rows` tuple (None becomes NaN)
    DTYPE = np.dtype([("group", object), ("packed", np.int64), ("submitted_at", np.float64),
                      ("started_at", np.float64), ("began_at", np.float64), ("finished_at", np.float64)])

    def __init__(self, store: Store, since: float, by: str | None, until: float | None = None):
        rows = np.fromiter(store.outcome_rows(since, by), dtype=self.DTYPE)  # straight from the cursor
        packed = rows["packed"]
        self.state = packed & 7
        self.acked = (packed >> 3) & 1
        self.slow = (packed >> 4) & 1
        self.attempts = packed >> 5
        self.submitted, self.started, self.began, self.finished = (
            np.ascontiguousarray(rows[k]) for k in ("submitted_at", "started_at", "began_at", "finished_at"))
        if by is None:
            self.code = np.zeros(len(rows), dtype=np.int64)
            self.labels: list[Any] = ["all"]
        else:
            codes, uniques = pd.factorize(rows["group"], sort=True)
            self.code, self.labels = codes.astype(np.int64), list(uniques)
        if until is not None:  # jobs submitted after the end of the period do not exist yet
            keep = self.submitted <= until
            if not keep.all():
                for attr in ("state", "acked", "slow", "attempts", "submitted", "started", "began", "finished", "code"):
                    setattr(self, attr, getattr(self, attr)[keep])
        self.final = self.state >= _I["succeeded"]

    def __len__(self) -> int:
        return len(self.state)


def _grouped_quantiles(keys: np.ndarray, values: np.ndarray, size: int, qs: Sequence[float]) -> np.ndarray:
    """Quantiles ``qs`` of ``values`` per integer key in ``range(size)``: bit for bit what
    ``numpy.quantile(v, q)`` (method ``'linear'``) gives for each key's values; NaN for a key
    without values.  One radix sort by key; then, per key, `numpy.partition` at the two
    neighbours of each quantile's position (or, for very many keys, one full sort)."""
    out = np.full((size, len(qs)), np.nan)
    if len(values) == 0:
        return out
    q = np.asarray(qs, dtype=np.float64)
    small = np.uint16 if size <= 1 << 16 else np.uint32 if size <= 1 << 32 else np.int64
    counts = np.bincount(keys, minlength=size)
    ends = np.cumsum(counts)
    starts = ends - counts
    present = np.flatnonzero(counts)
    if len(present) <= 4096:
        v = values[np.argsort(keys.astype(small), kind="stable")]  # radix sort: values grouped by key
        for key in present:
            seg = v[starts[key]:ends[key]]
            virtual = (len(seg) - 1) * q                     # numpy: (n - 1) * quantiles
            lo = np.floor(virtual).astype(np.intp)
            hi = np.minimum(lo + 1, len(seg) - 1)
            part = np.partition(seg, np.unique(np.concatenate((lo, hi))))
            out[key] = _lerp(part[lo], part[hi], virtual - lo)
        return out
    by_value = np.argsort(values)
    v = values[by_value[np.argsort(keys[by_value].astype(small), kind="stable")]]  # by key, then value
    n, first = counts[present], starts[present]
    for j, qj in enumerate(q):
        virtual = (n - 1) * qj
        lo = np.floor(virtual).astype(np.int64)
        hi = np.minimum(lo + 1, n - 1)
        out[present, j] = _lerp(v[first + lo], v[first + hi], virtual - lo)
    return out


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's own linear interpolation (numpy.lib._function_base_impl._lerp), for equal results."""
    diff = b - a
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def finished_runs(window: Any = "7D", by: str | None = "name", *, now: Any = None,
                  home: Path | str | None = None) -> pd.DataFrame:
    """The runs behind `sli`: one row per job that reached a final state within
    ``[now - window, now]``, with columns ``group`` (the ``by`` value, ``"all"`` for None),
    ``state`` (categorical), ``finished_at`` (UTC), ``runtime_s`` (the last attempt's run time, as
    in `history`) and ``queue_wait_s`` (NaN for a job that never started), ``attempts`` and ``dead_letter``.  What `nbjobs.plot.runtime` draws.

    >>> nbjobs.metrics.finished_runs("24h").groupby("group").runtime_s.describe()   # doctest: +SKIP
    """
    if by is not None and by not in Store.OUTCOME_GROUPS:
        raise BadInput(f"cannot group by {by!r}; use one of {', '.join(Store.OUTCOME_GROUPS)} or None")
    end = time.time() if now is None else epoch(now, "now")
    start = end - seconds(window, "window")
    o = _Outcomes(_store(home), start, by, until=end)
    with np.errstate(invalid="ignore"):
        run = o.final & (o.finished >= start) & (o.finished <= end)
    labels = np.array(o.labels, dtype=object)
    return pd.DataFrame({
        "group": pd.Series(labels[o.code[run]] if len(labels) else [], dtype=object),
        "state": pd.Categorical.from_codes(o.state[run], dtype=STATE_DTYPE),
        "finished_at": _utc(o.finished[run]),
        "runtime_s": (o.finished - o.began)[run],
        "queue_wait_s": (o.started - o.submitted)[run],
        "attempts": o.attempts[run],
        "dead_letter": np.isin(o.state[run], [_I["failed"], _I["timed_out"]]) & (o.acked[run] == 0),
    })


# --- SLIs ---------------------------------------------------------------------------------------------------
def sli(window: Any = "7D", by: str | None = "name", freq: Any = None, *, now: Any = None,
        home: Path | str | None = None) -> pd.DataFrame:
    """Service-level indicators of the jobs: one row per group (``by``), or per group and time
    bucket with ``freq``.

    ``window`` (``"7D"``, ``"24h"``, seconds) is how far back to look from ``now`` (default: the
    present; a time or epoch seconds to look back from another moment).  ``by`` is ``"name"``
    (default), ``"kind"``, ``"priority"`` or None (one row, ``"all"``).  ``freq`` (``"1h"``,
    ``"1D"``) splits the window into buckets aligned to multiples of ``freq`` since the epoch
    (UTC), half-open ``[start, start + freq)`` and labelled by their start; the first bucket is
    the one holding ``now - window``, the last the one holding ``now``.  The index is the group
    (named after ``by``), or ``(group, bucket)``, or ``bucket`` for ``by=None``.

    A job counts as a **run** of the row whose period holds its ``finished_at``: without
    ``freq``, the jobs that reached a final state within ``[now - window, now]``; a job that
    was retried and then succeeded is one run, a success.  Columns:

    - ``runs``: runs; ``succeeded``, ``failed``, ``timed_out``, ``cancelled``: runs per final state.
    - ``success_rate``: ``succeeded / (succeeded + failed + timed_out)``.  It counts finished
      jobs only (active jobs are not runs yet), and leaves cancelled jobs out (a cancel is the
      user's decision, not an outcome of the service).  NaN when there is no such run.
    - ``p50_runtime_s``, ``p95_runtime_s``, ``p99_runtime_s``: percentiles of the runs'
      ``runtime_s`` (the last attempt's run time, from its first cell of the job's code to the
      end, as in `history`: earlier attempts, backoff and the start phase are not counted;
      runs that never reached their code are left out), numpy's
      ``'linear'`` interpolation (Hyndman & Fan type 7, the default of `numpy.percentile` and
      `pandas.Series.quantile`): position ``(n - 1) * q`` of the sorted values, interpolated
      linearly between its neighbours.
    - ``p95_queue_wait_s``, ``mean_queue_wait_s``: the runs' queue wait (first start minus
      submit), same interpolation.
    - ``retries_per_run``: attempts after the first (policy retries, manual retries and
      re-runs of released or lost attempts), summed over the runs, divided by ``runs``.
    - ``dead_letters``: runs that are dead letters now (failed or timed out, not retried or
      acknowledged); ``dead_letter_rate``: ``dead_letters / runs``.  Acknowledging a dead letter
      lowers both.
    - ``queue_depth``: jobs waiting to run at the end of the row's period.  For the period that
      ends at the present (``now`` not given: the only row without ``freq``, the last bucket
      with it) it is the live count of waiting, queued and retrying jobs, as in
      `nbjobs.summary`; for earlier ends it is rebuilt from timestamps: jobs submitted by then
      whose first attempt had not started and that had not been cancelled (backoff waits
      between retries are not rebuilt).
    - ``slow_runs``: runs whose last attempt was flagged slow while it ran (past twice the p95
      runtime of its name's last 20 successes, see `nbjobs.policy.slow_threshold`);
      ``slow_running``: jobs running now that are flagged slow (the period that ends at the
      present only, like ``queue_depth``; 0 for earlier ones).

    Rates are NaN where their denominator is 0.  Groups with neither a run in the window nor a
    waiting or slow running job do not appear; with ``freq`` every bucket of every group appears, empty or not.

    >>> nbjobs.sli()                                          # doctest: +SKIP
    >>> nbjobs.sli(window="24h", by=None, freq="1h").success_rate.plot()    # doctest: +SKIP
    >>> nbjobs.sli(window="30D", by="kind")[["runs", "success_rate", "p95_runtime_s"]]   # doctest: +SKIP
    """
    if by is not None and by not in Store.OUTCOME_GROUPS:
        raise BadInput(f"cannot group by {by!r}; use one of {', '.join(Store.OUTCOME_GROUPS)} or None")
    span = seconds(window, "window")
    step = seconds(freq, "freq") if freq is not None else None
    live = now is None
    end = time.time() if live else epoch(now, "now")
    start = end - span
    if step is not None:
        first = math.floor(start / step)
        nb = math.floor(end / step) - first + 1
        lo = first * step
    else:
        nb, lo = 1, start
    if nb > _MAX_ROWS:
        raise BadInput(f"sli would have {nb} buckets per group; use a larger freq or a shorter window")
    o = _Outcomes(_store(home), lo, by, until=end)
    groups = len(o.labels)
    if groups * nb > _MAX_ROWS:
        raise BadInput(f"sli would have {groups * nb} rows ({groups} groups x {nb} buckets); use a larger freq, "
                       "a shorter window or by=None")
    size = groups * nb

    # runs: final state, finished within the window (and by `now`)
    fin = o.finished
    with np.errstate(invalid="ignore"):
        run = o.final & (fin >= lo) & (fin <= end)
    bucket = np.zeros(len(o), dtype=np.int64)
    if step is not None:
        with np.errstate(invalid="ignore"):
            bucket[run] = np.minimum(np.floor((fin[run] - lo) / step).astype(np.int64), nb - 1)
    key = o.code * nb + bucket
    k, st = key[run], o.state[run]
    per_state = np.bincount(k * 8 + st, minlength=size * 8).reshape(size, 8)
    counts = {s: per_state[:, _I[s]] for s in FINAL}
    runs = per_state.sum(axis=1)
    judged = counts["succeeded"] + counts["failed"] + counts["timed_out"]

    started = run & ~np.isnan(o.started)
    ks = key[started]
    wait = (o.started - o.submitted)[started]
    ran = run & ~np.isnan(o.began)  # reached the job's code: has a runtime
    rq = _grouped_quantiles(key[ran], (fin - o.began)[ran], size, (0.5, 0.95, 0.99))
    wq = _grouped_quantiles(ks, wait, size, (0.95,))
    n_started = np.bincount(ks, minlength=size)
    wait_sum = np.bincount(ks, weights=wait, minlength=size)
    retries = np.bincount(k, weights=np.maximum(o.attempts[run] - 1, 0), minlength=size)
    dead = run & ((o.state == _I["failed"]) | (o.state == _I["timed_out"])) & (o.acked == 0)
    dead_n = np.bincount(key[dead], minlength=size)

    depth = _queue_depth(o, nb, lo, step, end).reshape(size)
    slow_runs = np.bincount(key[run & (o.slow == 1)], minlength=size)
    slow_running = np.zeros(size, dtype=np.int64)
    if live:  # the period ending now: the live states, retrying included
        waiting = np.isin(o.state, [_I["waiting"], _I["queued"], _I["retrying"]])
        now_depth = np.bincount(o.code[waiting], minlength=groups)
        depth.reshape(groups, nb)[:, -1] = now_depth
        slow_now = (o.state == _I["running"]) & (o.slow == 1)
        slow_running.reshape(groups, nb)[:, -1] = np.bincount(o.code[slow_now], minlength=groups)

    frame = pd.DataFrame({
        "runs": runs, "succeeded": counts["succeeded"], "failed": counts["failed"],
        "timed_out": counts["timed_out"], "cancelled": counts["cancelled"],
        "success_rate": _ratio(counts["succeeded"], judged),
        "p50_runtime_s": rq[:, 0], "p95_runtime_s": rq[:, 1], "p99_runtime_s": rq[:, 2],
        "p95_queue_wait_s": wq[:, 0], "mean_queue_wait_s": _ratio(wait_sum, n_started),
        "retries_per_run": _ratio(retries, runs), "dead_letters": dead_n,
        "dead_letter_rate": _ratio(dead_n, runs), "queue_depth": depth,
        "slow_runs": slow_runs, "slow_running": slow_running,
    }).astype(SLI_DTYPES)
    frame.index = _sli_index(o.labels, by, nb, lo, step)
    if step is None and by is not None:
        frame = frame[(frame.runs > 0) | (frame.queue_depth > 0) | (frame.slow_running > 0)]
    elif step is not None and by is not None:
        per_group = frame.groupby(level=0, sort=False)[["runs", "queue_depth", "slow_running"]].transform("sum")
        frame = frame[(per_group.runs > 0) | (per_group.queue_depth > 0) | (per_group.slow_running > 0)]
    return frame


def _queue_depth(o: _Outcomes, nb: int, lo: float, step: float | None, end: float) -> np.ndarray:
    """Jobs waiting to run at each period's end, from timestamps: submitted by then, and
    neither started nor cancelled by then.  Shape (groups, nb).  With buckets: a +1 at each
    submit and a -1 when the job left the queue (first start, or its end if it never started),
    summed per group and bucket, then accumulated over the buckets."""
    groups = len(o.labels)
    left = np.where(np.isnan(o.started), o.finished, o.started)  # NaN: still waiting
    with np.errstate(invalid="ignore"):
        if step is None:
            waiting = (o.submitted <= end) & ~(left <= end)
            return np.bincount(o.code[waiting], minlength=groups).reshape(groups, 1)
        keep = ~(left < lo)  # left before the first bucket: in no bucket's count
        sub, out, code = o.submitted[keep], left[keep], o.code[keep]
        gone = out <= end
        times = np.concatenate((sub, out[gone]))
        weights = np.concatenate((np.ones(len(sub)), -np.ones(int(gone.sum()))))
        codes = np.concatenate((code, code[gone]))
    # an event in bucket k counts from the end of bucket k on; one before the first bucket from bucket 0
    period = np.clip(np.floor((times - lo) / step), 0, nb - 1).astype(np.int64)
    flat = np.bincount(codes * nb + period, weights=weights, minlength=groups * nb)
    return np.rint(np.cumsum(flat.reshape(groups, nb), axis=1)).astype(np.int64)


def _sli_index(labels: list[Any], by: str | None, nb: int, lo: float, step: float | None) -> pd.Index:
    if step is None:
        return pd.Index(labels, name=by) if by is not None else pd.Index(["all"])
    buckets = pd.DatetimeIndex(_utc(lo + step * np.arange(nb, dtype=np.float64)), name="bucket")
    if by is None:
        return buckets
    return pd.MultiIndex.from_product([pd.Index(labels, name=by), buckets])


# --- SLOs ---------------------------------------------------------------------------------------------------
#: a group needs this many runs in the SLO window before it can alert (one failed one-off run is no trend)
SLO_MIN_RUNS = 10


def slo(objective: float = 0.99, window: Any = "30D", by: str | None = "name", *, now: Any = None,
        min_runs: int = SLO_MIN_RUNS, home: Path | str | None = None) -> pd.DataFrame:
    """Error budget and burn rates of a success objective, with the alert level of the Google SRE
    workbook's multiwindow, multi-burn-rate rules (chapter "Alerting on SLOs").

    The SLI is the success rate of `sli`: of the jobs that reached a final state, the fraction
    that succeeded, cancelled jobs left out.  A *bad* run is one that ended failed or timed_out.
    One row per group (``by``: ``"name"``, ``"kind"``, ``"priority"`` or None for ``"all"``);
    groups with a run in the last ``max(window, 3d)`` appear.  Columns:

    - ``objective``: the target success rate, e.g. 0.99.
    - ``runs``, ``bad``: runs (succeeded + failed + timed_out) and bad runs that finished within
      ``[now - window, now]``; ``sli``: ``(runs - bad) / runs``.
    - ``budget_total``: bad runs the objective allows in the window, ``(1 - objective) * runs``;
      ``budget_spent``: ``bad``; ``budget_remaining``: ``budget_total - bad`` (negative when
      overspent); ``budget_remaining_ratio``: ``budget_remaining / budget_total`` (1 untouched,
      0 exhausted, below 0 overspent; NaN without runs).
    - ``burn_5m``, ``burn_30m``, ``burn_1h``, ``burn_6h``, ``burn_24h``, ``burn_3d``: the burn
      rate over the last 5 minutes ... 3 days, ``(bad / runs in that window) / (1 - objective)``,
      runs counted by ``finished_at`` within ``[now - w, now]``.  1 spends the budget exactly over
      the SLO period; 14.4 spends 2% of a 30-day budget in an hour.  NaN when the window has no
      run (no data, which never alerts).
    - ``alert``: ``"page"`` when ``burn_1h`` and ``burn_5m`` are both >= 14.4, or ``burn_6h`` and
      ``burn_30m`` both >= 6; else ``"ticket"`` when ``burn_3d`` and ``burn_6h`` are both >= 1;
      else ``"none"`` (an ordered categorical).  ">=" allows a relative 1e-9 for floating-point
      rounding, so a burn rate of exactly 14.4 (e.g. 18 bad of 125 runs at 0.99) pages.  A group
      with fewer than ``min_runs`` runs in the window (default 10) never alerts: a cell run once
      that failed has no error budget to burn (its numbers are still shown).

    >>> nbjobs.slo(objective=0.99)                                    # doctest: +SKIP
    >>> nbjobs.slo(0.95, by=None).loc["all", ["burn_1h", "burn_5m", "alert"]]   # doctest: +SKIP
    """
    try:
        objective = float(objective)
    except (TypeError, ValueError):
        raise BadInput(f"objective must be a number between 0 and 1 such as 0.99, not {objective!r}") from None
    if not 0 < objective < 1:
        raise BadInput(f"objective must be between 0 and 1 (exclusive), such as 0.99, not {objective!r}")
    if by is not None and by not in Store.OUTCOME_GROUPS:
        raise BadInput(f"cannot group by {by!r}; use one of {', '.join(Store.OUTCOME_GROUPS)} or None")
    span = seconds(window, "window")
    end = time.time() if now is None else epoch(now, "now")
    lookback = max(span, max(BURN_WINDOWS.values()))
    o = _Outcomes(_store(home), end - lookback, by, until=end)
    groups = len(o.labels)
    fin = o.finished
    judged = o.final & (o.state != _I["cancelled"])
    bad = (o.state == _I["failed"]) | (o.state == _I["timed_out"])
    allowed = 1.0 - objective

    def window_counts(seconds_back: float) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore"):
            inside = judged & (fin >= end - seconds_back) & (fin <= end)
        return (np.bincount(o.code[inside], minlength=groups).astype(np.float64),
                np.bincount(o.code[inside & bad], minlength=groups).astype(np.float64))

    runs, bads = window_counts(span)
    total = allowed * runs
    out: dict[str, Any] = {
        "objective": np.full(groups, objective), "runs": runs.astype(np.int64), "bad": bads.astype(np.int64),
        "sli": _ratio(runs - bads, runs), "budget_total": total, "budget_spent": bads,
        "budget_remaining": total - bads, "budget_remaining_ratio": _ratio(total - bads, total),
    }
    for label, w in BURN_WINDOWS.items():
        n, b = window_counts(w)
        out[f"burn_{label}"] = _ratio(b, n) / allowed
    alert = np.full(groups, "none", dtype=object)
    for level, long_w, short_w, rate in reversed(ALERT_RULES):  # "page" rules last: they win
        threshold = rate * (1 - _REL_TOL)
        with np.errstate(invalid="ignore"):
            hit = (out[f"burn_{long_w}"] >= threshold) & (out[f"burn_{short_w}"] >= threshold)
        alert[hit] = level
    alert[runs < min_runs] = "none"
    out["alert"] = pd.Categorical(alert, dtype=ALERT_DTYPE)
    frame = pd.DataFrame(out, index=pd.Index(o.labels, name=by) if by is not None else pd.Index(["all"]))
    if by is not None:
        with np.errstate(invalid="ignore"):
            recent = np.bincount(o.code[judged & (fin >= end - lookback)], minlength=groups) > 0
        frame = frame[recent]
    return frame[list(SLO_COLUMNS)]


# --- Prometheus -------------------------------------------------------------------------------------------
class JobsCollector:
    """A `prometheus_client` collector over the nbjobs database of ``home``: every scrape reads
    SQLite afresh (one query) and reports, per job name (label ``name``):

    - ``nbjobs_jobs_finished_total{name, state}`` (counter): jobs that reached each final state.
      A job retried after failing moves from ``failed`` to its new final state, and pruned jobs
      leave the count; Prometheus treats such a decrease as a counter reset.
    - ``nbjobs_attempts_total{name}`` (counter): attempts started.
    - ``nbjobs_job_runtime_seconds{name}`` (histogram): runtime of finished jobs that ran
      (final end minus first start); buckets `RUNTIME_BUCKETS`.
    - ``nbjobs_job_queue_wait_seconds{name}`` (histogram): first start minus submit of jobs
      that started; buckets `QUEUE_WAIT_BUCKETS`.
    - ``nbjobs_queue_depth{name}``, ``nbjobs_jobs_running{name}``, ``nbjobs_dead_letters{name}``
      (gauges): waiting + queued + retrying jobs, running jobs, unacknowledged dead letters.
    - ``nbjobs_workers`` (gauge): live workers.

    >>> from prometheus_client import CollectorRegistry, generate_latest     # doctest: +SKIP
    >>> registry = CollectorRegistry(auto_describe=False)                      # doctest: +SKIP
    >>> registry.register(JobsCollector())                                     # doctest: +SKIP
    >>> print(generate_latest(registry).decode())                              # doctest: +SKIP
    """

    def __init__(self, home: Path | str | None = None):
        self.home = home

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        store = _store(self.home)  # one Store per thread: the HTTP server scrapes from its own threads
        o = _Outcomes(store, 0.0, "name")
        names = [str(n) for n in o.labels]
        groups = len(names)
        finished = CounterMetricFamily("nbjobs_jobs_finished", "Jobs that reached a final state, by name and state.",
                                       labels=["name", "state"])
        per_state = np.bincount(o.code * 8 + o.state, minlength=groups * 8).reshape(groups, 8)
        for g, name in enumerate(names):
            for s in FINAL:
                finished.add_metric([name, s], float(per_state[g, _I[s]]))
        attempts = CounterMetricFamily("nbjobs_attempts", "Attempts started, by job name.", labels=["name"])
        tried = np.bincount(o.code, weights=o.attempts, minlength=groups)
        for g, name in enumerate(names):
            attempts.add_metric([name], float(tried[g]))
        yield finished
        yield attempts

        ran = o.final & ~np.isnan(o.began)
        yield _histogram(HistogramMetricFamily, "nbjobs_job_runtime_seconds",
                         "Runtime of finished jobs (their last attempt, from its first cell of job code "
                         "to the end), seconds.", names,
                         o.code[ran], (o.finished - o.began)[ran], RUNTIME_BUCKETS)
        began = ~np.isnan(o.started)
        yield _histogram(HistogramMetricFamily, "nbjobs_job_queue_wait_seconds",
                         "Queue wait of started jobs (first start minus submit), seconds.", names,
                         o.code[began], (o.started - o.submitted)[began], QUEUE_WAIT_BUCKETS)

        waiting = np.isin(o.state, [_I["waiting"], _I["queued"], _I["retrying"]])
        dead = np.isin(o.state, [_I["failed"], _I["timed_out"]]) & (o.acked == 0)
        for metric, doc, mask in (
                ("nbjobs_queue_depth", "Jobs waiting to run (waiting, queued, retrying).", waiting),
                ("nbjobs_jobs_running", "Jobs running now.", o.state == _I["running"]),
                ("nbjobs_dead_letters", "Failed or timed-out jobs nobody retried or acknowledged.", dead)):
            gauge = GaugeMetricFamily(metric, doc, labels=["name"])
            values = np.bincount(o.code[mask], minlength=groups)
            for g, name in enumerate(names):
                gauge.add_metric([name], float(values[g]))
            yield gauge
        yield GaugeMetricFamily("nbjobs_workers", "Live workers (heartbeat within one lease period).",
                                value=float(len(store.live_workers())))


def _histogram(family: Any, metric: str, doc: str, names: list[str], codes: np.ndarray, values: np.ndarray,
               bounds: Sequence[float]) -> Any:
    h = family(metric, doc, labels=["name"])
    groups, nb = len(names), len(bounds) + 1
    slot = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")  # value <= le
    counts = np.cumsum(np.bincount(codes * nb + slot, minlength=groups * nb).reshape(groups, nb), axis=1)
    sums = np.bincount(codes, weights=values, minlength=groups)
    les = [_le(b) for b in bounds] + ["+Inf"]
    for g, name in enumerate(names):
        h.add_metric([name], buckets=[(le, float(c)) for le, c in zip(les, counts[g])], sum_value=float(sums[g]))
    return h


def _le(bound: float) -> str:
    return repr(float(bound))


def registry(home: Path | str | None = None) -> Any:
    """A fresh `prometheus_client.CollectorRegistry` holding only a `JobsCollector` (nothing of the
    process's default registry), e.g. to mount in your own web app.

    >>> from prometheus_client import make_wsgi_app                  # doctest: +SKIP
    >>> app = make_wsgi_app(nbjobs.metrics.registry())               # doctest: +SKIP
    """
    from prometheus_client import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(JobsCollector(home))
    return reg


def prometheus_text(home: Path | str | None = None) -> str:
    """The Prometheus text exposition (format 0.0.4) of `JobsCollector`.

    >>> print(nbjobs.metrics.prometheus_text())       # doctest: +SKIP
    # HELP nbjobs_jobs_finished_total Jobs that reached a final state, by name and state.
    # TYPE nbjobs_jobs_finished_total counter
    nbjobs_jobs_finished_total{name="report",state="succeeded"} 140.0
    ...
    """
    from prometheus_client import generate_latest

    return generate_latest(registry(home)).decode()


def serve(port: int = 9464, home: Path | str | None = None) -> Any:
    """Serve ``/metrics`` (`prometheus_text`) over HTTP on 127.0.0.1 only, from a daemon thread.
    ``port=0`` takes a free port; the server's ``server_port`` says which.  Returns the
    server; ``server.shutdown()`` stops it.

    >>> server = nbjobs.metrics.serve(9464)             # doctest: +SKIP
    >>> server.server_port, server.shutdown()           # doctest: +SKIP
    """
    from prometheus_client import start_http_server

    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise BadInput(f"port must be a whole number from 0 to 65535, not {port!r}")
    try:
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry(home))
    except OSError as exc:
        raise BadInput(f"cannot serve metrics on 127.0.0.1:{port} ({exc.strerror}); choose another --port") from None
    return server


__all__ = ["history", "sli", "slo", "finished_runs", "JobsCollector", "registry", "prometheus_text", "serve", "seconds", "epoch",
           "STATES", "BURN_WINDOWS", "ALERT_RULES", "HISTORY_DTYPES", "ATTEMPT_DTYPES", "SLI_DTYPES", "SLO_COLUMNS"]
