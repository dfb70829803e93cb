"""Job history and service levels: pandas frames, SLO burn rates and Prometheus text.

Everything here reads the same SQLite file as the rest of nbjobs, through `nbjobs.store` (this
package holds no SQL) and computes with numpy/pandas.  ``import nbjobs`` does not import this
package; ``nbjobs.history``, ``nbjobs.sli`` and ``nbjobs.slo`` load it (and pandas) on first use.

>>> import nbjobs
>>> df = nbjobs.history(since="7D")                 # doctest: +SKIP
>>> df.groupby("name").runtime_s.median()           # doctest: +SKIP
>>> nbjobs.sli(window="7D")                         # doctest: +SKIP
           runs  succeeded  failed  ...  success_rate  p50_runtime_s  ...  queue_depth
name
nightly      28         27       1  ...      0.964286          312.4  ...            0
report      140        140       0  ...      1.000000           41.0  ...            2
>>> nbjobs.slo(objective=0.99)[["budget_remaining_ratio", "burn_1h", "alert"]]   # doctest: +SKIP

One module per concern, each name defined once and re-exported here (``nbjobs.metrics.sli``):
`inputs` (durations, times, states: what the functions take), `history_frame` (`history`),
`outcomes` (the rows SLIs, SLOs and Prometheus are computed from; `finished_runs`), `indicators`
(`sli`), `objectives` (`slo`, burn rates and alerts), `prometheus` (`JobsCollector`, `registry`,
`prometheus_text`, `serve`).

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

from .history_frame import ATTEMPT_DTYPES, HISTORY_DTYPES, history
from .indicators import SLI_DTYPES, sli
from .inputs import FINAL, STATE_DTYPE, STATES, epoch, seconds
from .objectives import ALERT_DTYPE, ALERT_RULES, BURN_WINDOWS, SLO_COLUMNS, SLO_MIN_RUNS, slo
from .outcomes import finished_runs
from .prometheus import QUEUE_WAIT_BUCKETS, RUNTIME_BUCKETS, JobsCollector, prometheus_text, registry, serve

__all__ = ["history", "sli", "slo", "finished_runs", "JobsCollector", "registry", "prometheus_text", "serve", "seconds", "epoch",
           "STATES", "BURN_WINDOWS", "ALERT_RULES", "HISTORY_DTYPES", "ATTEMPT_DTYPES", "SLI_DTYPES", "SLO_COLUMNS"]
