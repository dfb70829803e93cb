"""What the metrics functions take and share: durations (`seconds`), points in time (`epoch`),
states and groupings (checked), the store of a home, and the column types of the frames.
"""
from __future__ import annotations

import math
import time
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .. import config, policy
from ..errors import BadInput
from ..job import State
from ..store import Store, open_store

#: every state, in lifecycle order: the categories of the ``state`` column
STATES: tuple[str, ...] = tuple(s.value for s in State)
STATE_DTYPE = pd.CategoricalDtype(list(STATES))
#: final states, in the order of the SLI columns
FINAL: tuple[str, ...] = ("succeeded", "failed", "timed_out", "cancelled")
_I = {s: i for i, s in enumerate(STATES)}                 # state -> code used by Store.outcome_rows
_TEXT: Any = "str" if int(pd.__version__.split(".")[0]) >= 3 else object
_TS = "datetime64[ns, UTC]"


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


def _check_by(by: str | None) -> None:
    """The grouping of `sli`, `slo` and `finished_runs`: a column of `Store.outcome_rows`, or None."""
    if by is not None and by not in Store.OUTCOME_GROUPS:
        raise BadInput(f"cannot group by {by!r}; use one of {', '.join(Store.OUTCOME_GROUPS)} or None")
