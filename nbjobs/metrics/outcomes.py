"""The rows SLIs, SLOs and Prometheus are computed from (`Store.outcome_rows` as numpy arrays), the
numeric helpers they share (grouped quantiles as numpy computes them, ratios), and the runs
behind `sli` as a frame (`finished_runs`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..store import Store
from .inputs import _check_by, _I, STATE_DTYPE, _store, _utc, epoch, seconds


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
    _check_by(by)
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
