"""Service-level indicators (`sli`): runs, success rate, runtime and queue-wait percentiles,
retries, dead letters, queue depth and slow runs, per group and optionally per time bucket.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import BadInput
from .inputs import _check_by, _I, FINAL, _store, _utc, epoch, seconds
from .outcomes import _grouped_quantiles, _Outcomes, _ratio

SLI_DTYPES: dict[str, str] = {
    "runs": "int64", "succeeded": "int64", "failed": "int64", "timed_out": "int64", "cancelled": "int64",
    "success_rate": "float64", "p50_runtime_s": "float64", "p95_runtime_s": "float64",
    "p99_runtime_s": "float64", "p95_queue_wait_s": "float64", "mean_queue_wait_s": "float64",
    "retries_per_run": "float64", "dead_letters": "int64", "dead_letter_rate": "float64", "queue_depth": "int64",
    "slow_runs": "int64", "slow_running": "int64",
}
_MAX_ROWS = 200_000                                        # groups x buckets in one `sli` frame


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
    _check_by(by)
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
