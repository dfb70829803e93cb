"""Plots of the job history: runtime, success rate and error-budget burn (matplotlib).

``nbjobs.plot`` loads on first use, and matplotlib only when a plot is drawn, so ``import nbjobs``
stays light.  Every function returns the matplotlib ``Axes`` it drew on (``ax=`` draws on yours),
with a title, axis labels and units.  matplotlib is the optional extra ``plot``:
``pip install "nbjobs[plot]"``.

>>> import nbjobs
>>> nbjobs.plot.runtime(window="7D")                          # doctest: +SKIP
>>> nbjobs.plot.success_rate(freq="1h", window="2D", objective=0.99)   # doctest: +SKIP
>>> nbjobs.plot.burn(objective=0.99)                          # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import NbjobsError

#: at most this many groups are drawn (the ones with the most runs)
TOP = 12


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise NbjobsError('plots need matplotlib; install it with: pip install "nbjobs[plot]"') from None
    return plt


def _silent(ax: Any) -> None:
    """No ``<Axes: ...>`` line above the figure when a plot is a cell's last expression: the
    Axes displays as nothing (the figure shows itself, once, as matplotlib figures do in Jupyter)."""
    ax._ipython_display_ = lambda: None


def _axes(ax: Any, size: tuple[float, float]) -> Any:
    if ax is None:
        _fig, ax = _pyplot().subplots(figsize=size, layout="constrained")
    _silent(ax)
    return ax


def _seconds(window: Any) -> float:
    from .metrics import seconds

    return seconds(window, "window")


def _window_text(window: Any) -> str:
    s = _seconds(window)
    for unit, n in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= n and s % n == 0:
            return f"{int(s // n)} {unit}"
    return f"{s:g} s"


def runtime(window: Any = "7D", by: str | None = "name", *, top: int = TOP, ax: Any = None, now: Any = None,
            home: Path | str | None = None) -> Any:
    """Box plot of the runtime (seconds) of jobs that finished within ``window``, one box per
    group (``by``: ``"name"``, ``"kind"``, ``"priority"`` or None), the ``top`` groups with the
    most runs, slowest median at the top.  Boxes span the 25th to 75th percentile with the
    median marked; whiskers reach the 5th and 95th percentiles.  A logarithmic axis when the
    runtimes span two decades or more.

    >>> ax = nbjobs.plot.runtime(window="30D", by="kind")      # doctest: +SKIP
    """
    import numpy as np

    from .metrics import finished_runs

    runs = finished_runs(window, by=by, now=now, home=home)
    runs = runs[runs.runtime_s.notna()]
    ax = _axes(ax, (8, 1.2 + 0.45 * max(1, min(top, runs.group.nunique()))))
    ax.set_title(f"Runtime of finished jobs, last {_window_text(window)}" + (f", by {by}" if by else ""))
    ax.set_xlabel("runtime (s)")
    if runs.empty:
        ax.text(0.5, 0.5, "no finished jobs in this window", transform=ax.transAxes, ha="center", va="center")
        ax.set_yticks([])
        return ax
    chosen = runs.group.value_counts().head(top).index
    data = [(g, runs.runtime_s[runs.group == g].to_numpy()) for g in chosen]
    data.sort(key=lambda item: float(np.median(item[1])))
    ax.boxplot([v for _, v in data], orientation="horizontal", whis=(5, 95), showfliers=False,
               tick_labels=[f"{g} (n={len(v)})" for g, v in data], medianprops={"color": "C1", "linewidth": 2})
    values = runs.runtime_s.to_numpy()
    low = values[values > 0].min() if (values > 0).any() else 0
    if low > 0 and values.max() / low >= 100:
        ax.set_xscale("log")
    ax.grid(axis="x", alpha=0.3)
    return ax


def success_rate(freq: Any = "1h", window: Any = "7D", by: str | None = None, *, objective: float | None = None,
                 top: int = 8, ax: Any = None, now: Any = None, home: Path | str | None = None) -> Any:
    """Success rate (percent) per ``freq`` bucket over ``window``, as computed by `nbjobs.sli`:
    of the jobs that reached a final state in the bucket, the share that succeeded (cancelled
    jobs left out; buckets without such jobs are gaps).  One line per group with ``by`` (the
    ``top`` groups with the most runs), else one line for all jobs; a dashed line marks
    ``objective`` (e.g. 0.99) when given.  Time on the x axis is UTC.

    >>> ax = nbjobs.plot.success_rate(freq="1D", window="30D", objective=0.99)   # doctest: +SKIP
    """
    from .metrics import sli

    frame = sli(window=window, by=by, freq=freq, now=now, home=home)
    ax = _axes(ax, (9, 4))
    if by is None:
        series = {"all jobs": frame}
    else:
        totals = frame.groupby(level=0).runs.sum().sort_values(ascending=False)
        series = {str(g): frame.xs(g, level=0) for g in totals.index[:top]}
    for label, part in series.items():
        x = part.index.tz_convert("UTC").tz_localize(None)
        ax.plot(x, part.success_rate * 100, marker="o", markersize=3, linewidth=1.5, label=label)
    buckets = frame.index if by is None else frame.index.get_level_values(1)
    if len(buckets):  # the window, not the buckets that have runs (one run would span years)
        import pandas as pd

        first, last = buckets.min().tz_convert("UTC").tz_localize(None), buckets.max().tz_convert("UTC").tz_localize(None)
        ax.set_xlim(first, last + pd.Timedelta(seconds=_seconds(freq)))
    if objective is not None:
        ax.axhline(objective * 100, color="C3", linestyle="--", linewidth=1, label=f"objective {objective:.2%}")
    ax.set_ylim(-2, 102)
    ax.set_ylabel("success rate (%)")
    ax.set_xlabel("bucket start (UTC)")
    ax.set_title(f"Success rate of finished jobs per {_window_text(freq)}, last {_window_text(window)}")
    ax.grid(alpha=0.3)
    if len(series) > 1 or objective is not None:
        ax.legend(loc="lower left", fontsize="small")
    ax.tick_params(axis="x", labelrotation=30)
    return ax


def burn(objective: float = 0.99, by: str | None = None, window: Any = "30D", *, top: int = 6, ax: Any = None,
         now: Any = None, home: Path | str | None = None) -> Any:
    """Error-budget burn rates over the last 5m, 30m, 1h, 6h, 24h and 3d (bars, one colour per
    group, as computed by `nbjobs.slo`) with the alert thresholds of the multiwindow,
    multi-burn-rate rules drawn as lines: 14.4 (page, 1h and 5m), 6 (page, 6h and 30m), 1
    (ticket, 3d and 6h).  A burn rate of 1 spends the error budget exactly over the SLO period.
    The title says the alert level.  Windows without finished jobs show no bar.

    >>> ax = nbjobs.plot.burn(objective=0.995, by="name")      # doctest: +SKIP
    """
    import numpy as np

    from .metrics import ALERT_RULES, BURN_WINDOWS, slo

    frame = slo(objective=objective, window=window, by=by, now=now, home=home)
    if by is not None:
        frame = frame.sort_values("runs", ascending=False).head(top)
    ax = _axes(ax, (9, 4))
    windows = list(BURN_WINDOWS)
    x = np.arange(len(windows))
    width = 0.8 / max(1, len(frame))
    for i, (label, row) in enumerate(frame.iterrows()):
        values = [row[f"burn_{w}"] for w in windows]
        ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(values, nan=0.0), width,
               label=f"{label}: {row['alert']}" if by is not None else None)
    for level, long_w, short_w, rate in ALERT_RULES:
        ax.axhline(rate, color="C3" if level == "page" else "C1", linestyle="--", linewidth=1)
        ax.annotate(f"{level} ({long_w} & {short_w}) \u2265 {rate:g}", (1.0, rate), xycoords=("axes fraction", "data"),
                    xytext=(-4, 2), textcoords="offset points", ha="right", va="bottom", fontsize="small",
                    color="C3" if level == "page" else "C1")
    ax.set_xticks(x, windows)
    ax.set_xlabel("window (most recent)")
    ax.set_ylabel("burn rate (\u00d7 sustainable)")
    top_value = float(np.nan_to_num(frame[[f"burn_{w}" for w in windows]].to_numpy(dtype=float)).max(initial=0.0))
    ax.set_ylim(0, max(16.0, top_value * 1.1))
    worst = str(frame["alert"].max()) if len(frame) else "none"
    ax.set_title(f"Error-budget burn, objective {objective:.2%}: alert {worst}")
    ax.grid(axis="y", alpha=0.3)
    if by is not None and len(frame):
        ax.legend(loc="upper left", fontsize="small")
    if not len(frame):
        ax.text(0.5, 0.5, "no finished jobs in the last 3 days", transform=ax.transAxes, ha="center", va="center")
    return ax


__all__ = ["runtime", "success_rate", "burn"]
