"""Service-level objectives (`slo`): error budgets, burn rates over several windows and the alert
level of the SRE workbook's multiwindow, multi-burn-rate rules.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import BadInput
from .inputs import _check_by, _I, _store, epoch, seconds
from .outcomes import _Outcomes, _ratio

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
_REL_TOL = 1e-9                                            # for burn-rate thresholds, see `slo`
SLO_COLUMNS: tuple[str, ...] = (
    "objective", "runs", "bad", "sli", "budget_total", "budget_spent", "budget_remaining",
    "budget_remaining_ratio", *(f"burn_{w}" for w in BURN_WINDOWS), "alert")
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
    _check_by(by)
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
