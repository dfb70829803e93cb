"""Retry and backoff policy: what happens to a job after a failed attempt.

Backoff is exponential with *full jitter* (AWS architecture blog, "Exponential Backoff And
Jitter"): the n-th retry waits ``uniform(0, min(cap, base * factor**(n-1)))`` seconds.

>>> import random; random.seed(1)
>>> 0 <= backoff(3, base=1, factor=2, cap=60) <= 4
True
>>> decide(outcome="error", failures=1, retries=2).state
'retrying'
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any, Iterable

from .errors import BadInput
from .job import State

BACKOFF_BASE = 1.0
BACKOFF_FACTOR = 2.0
BACKOFF_CAP = 300.0

#: attempt outcomes and the final job state each leads to when no retry is left
OUTCOME_STATE = {
    "succeeded": State.SUCCEEDED,
    "error": State.FAILED,
    "kernel_died": State.FAILED,
    "runner_died": State.FAILED,
    "worker_lost": State.FAILED,
    "timeout": State.TIMED_OUT,
    "cancelled": State.CANCELLED,
}
#: outcomes that may be retried (a cancel never is)
RETRY_ON = frozenset({"error", "kernel_died", "runner_died", "worker_lost", "timeout"})
#: the user's words for `retry_on` and the outcomes each covers (kernel death counts as error)
RETRY_CLASSES = {
    "error": frozenset({"error", "kernel_died", "runner_died"}),
    "timeout": frozenset({"timeout"}),
    "lost": frozenset({"worker_lost"}),
}


def backoff(n: int, base: float = BACKOFF_BASE, factor: float = BACKOFF_FACTOR,
            cap: float = BACKOFF_CAP, jitter: str = "full") -> float:
    """Seconds to wait before retry number ``n`` (1-based)."""
    ceiling = min(cap, base * factor ** max(0, n - 1))
    if jitter == "full":
        return random.uniform(0, ceiling)
    if jitter == "none":
        return ceiling
    raise ValueError(f"unknown jitter {jitter!r}; use 'full' or 'none'")


@dataclass(frozen=True)
class Decision:
    state: str          # the job's next state
    reason: str         # why (the outcome)
    delay: float = 0.0  # seconds before the next attempt may start (retrying only)


def decide(outcome: str, failures: int, retries: int, retry_on: Iterable[str] | None = None,
           **backoff_args: Any) -> Decision:
    """The job's next state after an attempt ended with ``outcome``.

    ``failures`` counts failed attempts including this one; ``retries`` is the job's budget
    (max attempts - 1); ``retry_on`` limits which kinds of failure retry (default: all of
    `RETRY_CLASSES`).  Released attempts (a stopping worker) never reach this function.

    >>> decide("timeout", failures=1, retries=3, retry_on=["error"]).state
    'timed_out'
    """
    if outcome not in OUTCOME_STATE:
        raise ValueError(f"unknown attempt outcome {outcome!r}")
    retryable = RETRY_ON if retry_on is None else frozenset().union(*(RETRY_CLASSES[c] for c in retry_on))
    if outcome in retryable and failures <= retries:
        return Decision(State.RETRYING.value, outcome, backoff(failures, **backoff_args))
    return Decision(OUTCOME_STATE[outcome].value, outcome)


def check_retry_options(retry_on: Iterable[str] | str | None = None, base: Any = None, factor: Any = None,
                        cap: Any = None, jitter: str | None = None) -> dict[str, Any]:
    """Validate per-job retry options; returns what to store in the job's options (only what was given).

    >>> check_retry_options("error,timeout", base=2)
    {'retry_on': ['error', 'timeout'], 'backoff': {'base': 2.0}}
    """
    out: dict[str, Any] = {}
    if retry_on is not None:
        names = [n.strip() for n in retry_on.split(",")] if isinstance(retry_on, str) else list(retry_on)
        bad = [n for n in names if n not in RETRY_CLASSES]
        if bad or not names:
            raise BadInput(f"retry-on {','.join(map(str, bad)) or '(empty)'} is unknown; use any of "
                           f"{', '.join(RETRY_CLASSES)} separated by commas")
        out["retry_on"] = list(dict.fromkeys(names))
    backoff_opts: dict[str, Any] = {}
    for name, value, lo, hi in (("base", base, 0.0, 86400.0), ("factor", factor, 1.0, 100.0),
                                ("cap", cap, 0.0, 7 * 86400.0)):
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise BadInput(f"backoff {name} must be a number, not {value!r}") from None
        if not math.isfinite(number) or not lo <= number <= hi:
            raise BadInput(f"backoff {name} must be from {lo:g} to {hi:g}, not {value}")
        backoff_opts[name] = number
    if jitter is not None:
        if jitter not in ("full", "none"):
            raise BadInput(f"jitter must be 'full' or 'none', not {jitter!r}")
        backoff_opts["jitter"] = jitter
    if backoff_opts:
        out["backoff"] = backoff_opts
    return out


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(text: Any, what: str = "duration") -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or a plain number of seconds.

    >>> parse_duration("30d"), parse_duration("1.5h"), parse_duration(90)
    (2592000.0, 5400.0, 90.0)
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        m = _DURATION_RE.match(str(text))
        if not m:
            raise BadInput(f"{what} {text!r} is not a duration; write it like 30d, 12h, 90m, 45s or 2w")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not math.isfinite(seconds) or seconds <= 0 or seconds > 100 * 365 * 86400:
        raise BadInput(f"{what} must be more than 0 and at most 100 years, not {text!r}")
    return seconds
