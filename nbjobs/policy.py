"""Retry and backoff policy: what happens to a job after a failed attempt.

Backoff is exponential with *full jitter* (AWS architecture blog, "Exponential Backoff And
Jitter"): the n-th retry waits ``uniform(0, min(cap, base * factor**(n-1)))`` seconds.

A job fails only when its own code fails.  Outcomes in `INFRA` (the worker lost, the runner host
died, a kernel that failed to start or died before the job's first cell) are the system's: the
job is re-queued on a budget of its own (`INFRA_RETRIES`, a per-job option and a home setting),
not counted against ``retries``, and fails (a dead letter) only once that budget is spent.

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
    "kernel_lost": State.FAILED,
    "timeout": State.TIMED_OUT,
    "cell_timeout": State.TIMED_OUT,
    "cancelled": State.CANCELLED,
}
#: the system's failures, not the job's: the worker lost (its lease expired, or its runner host
#: ended the attempt when it stopped renewing), the runner process died, the kernel failed to start
#: or died before the job's first cell
INFRA = frozenset({"worker_lost", "runner_died", "kernel_lost"})
#: outcomes that may be retried (a cancel never is)
RETRY_ON = frozenset({"error", "kernel_died", "timeout", "cell_timeout"}) | INFRA
#: the user's words for `retry_on` and the outcomes each covers (a kernel that died while the job's
#: code ran counts as error; ``lost`` lets ``retries`` cover infrastructure failures once the
#: infrastructure budget is spent)
RETRY_CLASSES = {
    "error": frozenset({"error", "kernel_died"}),
    "timeout": frozenset({"timeout", "cell_timeout"}),
    "lost": INFRA,
}
#: infrastructure re-queues per job (``infra_retries`` option, home setting ``infra_retries``)
INFRA_RETRIES = 3
#: their backoff: quick, since nothing is wrong with the job (``uniform(0, min(30, 0.5 * 2**(n-1)))``)
INFRA_BACKOFF = {"base": 0.5, "factor": 2.0, "cap": 30.0}


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
    state: str               # the job's next state
    reason: str              # why (the outcome)
    delay: float = 0.0       # seconds before the next attempt may start (retrying only)
    failures: int = 0        # the job's failed attempts charged to its ``retries``, this one included
    infra_failures: int = 0  # the job's infrastructure failures, this one included
    infra: bool = False      # re-queued on the infrastructure budget (not charged to the job)


def decide(outcome: str, failures: int, retries: int, retry_on: Iterable[str] | None = None, *,
           infra_failures: int = 0, infra_retries: int = INFRA_RETRIES, **backoff_args: Any) -> Decision:
    """The job's next state after an attempt ended with ``outcome``.

    ``failures`` counts the failed attempts charged to the job *before* this one; ``retries`` is
    the job's budget (max attempts - 1); ``retry_on`` limits which kinds of failure retry
    (default: all of `RETRY_CLASSES`).  ``infra_failures`` counts the job's earlier
    infrastructure failures (`INFRA`); while they number at most ``infra_retries`` with this one,
    the job is re-queued without charging ``retries``; after that such a failure is charged like
    any other and retried only if ``retry_on`` covers ``lost``.  Released attempts (a stopping
    worker) never reach this function.

    >>> decide("timeout", failures=0, retries=3, retry_on=["error"]).state
    'timed_out'
    >>> d = decide("worker_lost", failures=0, retries=0)
    >>> d.state, d.failures, d.infra_failures, d.infra
    ('retrying', 0, 1, True)
    >>> decide("kernel_lost", failures=0, retries=0, infra_failures=3).state   # the budget is spent
    'failed'
    """
    if outcome not in OUTCOME_STATE:
        raise ValueError(f"unknown attempt outcome {outcome!r}")
    if outcome in INFRA:
        infra_failures += 1
        if infra_failures <= infra_retries:
            return Decision(State.RETRYING.value, outcome, backoff(infra_failures, **INFRA_BACKOFF),
                            failures, infra_failures, infra=True)
    if outcome in RETRY_ON:
        failures += 1
    retryable = RETRY_ON if retry_on is None else frozenset().union(*(RETRY_CLASSES[c] for c in retry_on))
    if outcome in retryable and failures <= retries:
        return Decision(State.RETRYING.value, outcome, backoff(failures, **backoff_args), failures, infra_failures)
    return Decision(OUTCOME_STATE[outcome].value, outcome, 0.0, failures, infra_failures)


def check_infra_retries(value: Any, what: str = "infra_retries") -> int:
    """An infrastructure budget: a whole number from 0 to 100.

    >>> check_infra_retries("5")
    5
    """
    try:
        number = int(value)
        if number != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise BadInput(f"{what} must be a whole number of re-queues (e.g. 3), not {value!r}") from None
    if not 0 <= number <= 100:
        raise BadInput(f"{what} must be from 0 to 100, not {number}")
    return number


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


# --- notifications: which state changes a webhook is sent for ----------------------------------------
#: the values of ``--notify-on`` (and ``notify-default --on``)
NOTIFY_ON = ("end", "all", "failure")
#: the endings ``--notify-on failure`` announces: a job that failed or timed out (a dead letter)
FAILURE_STATES = frozenset({"failed", "timed_out"})


def check_notify_on(value: Any, what: str = "notify_on") -> str:
    """A ``notify_on`` value, or `BadInput` saying which ones exist.

    >>> check_notify_on("failure")
    'failure'
    """
    if value not in NOTIFY_ON:
        raise BadInput(f"{what} must be 'end' (final states), 'all' (every state change) or 'failure' (only "
                       f"failed and timed-out jobs), not {value!r}")
    return value


def notify_wanted(on: str | None, state: str, terminal: bool) -> bool:
    """Whether a webhook set to ``on`` (None: ``end``) is sent when a job enters ``state``.

    >>> [notify_wanted("failure", s, True) for s in ("succeeded", "failed", "timed_out", "cancelled")]
    [False, True, True, False]
    >>> notify_wanted(None, "running", False), notify_wanted("all", "running", False)
    (False, True)
    """
    if on == "all":
        return True
    if on == "failure":
        return state in FAILURE_STATES
    return terminal


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


# --- slow runs -----------------------------------------------------------------------------------------
#: a running attempt is slow past SLOW_FACTOR x the SLOW_QUANTILE of its name's last SLOW_HISTORY
#: successful runtimes, given at least SLOW_MIN_RUNS of them, and never before SLOW_FLOOR seconds
SLOW_FACTOR = 2.0
SLOW_QUANTILE = 0.95
SLOW_HISTORY = 20
SLOW_MIN_RUNS = 10
SLOW_FLOOR = 1.0


def quantile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by numpy's default ``'linear'`` method (position
    ``(n - 1) * q`` of the sorted values, interpolated), without numpy.

    >>> quantile([1, 2, 3, 4], 0.5), quantile([5.0], 0.95)
    (2.5, 5.0)
    """
    v = sorted(float(x) for x in values)
    if not v:
        raise ValueError("quantile of no values")
    pos = (len(v) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def slow_threshold(runtimes: Iterable[float], factor: float = SLOW_FACTOR, q: float = SLOW_QUANTILE,
                   min_runs: int = SLOW_MIN_RUNS, floor: float = SLOW_FLOOR) -> float | None:
    """Seconds after which a running attempt is *slow*, from the runtimes of its name's last
    successful runs (newest first; the first `SLOW_HISTORY` count): ``factor`` x their ``q``
    quantile, at least ``floor``; None (never slow) with fewer than ``min_runs`` of them.

    >>> slow_threshold([3.0] * 9) is None, slow_threshold([3.0] * 10), slow_threshold([0.1] * 12)
    (True, 6.0, 1.0)
    """
    recent = [float(r) for r in list(runtimes)[:SLOW_HISTORY] if r is not None and r >= 0]
    if len(recent) < min_runs:
        return None
    return max(floor, factor * quantile(recent, q))


# --- placement by resources --------------------------------------------------------------------------------
_RESOURCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def check_resources(value: Any) -> dict[str, float]:
    """The resources a job needs, from ``"GPU=1,MEM=64e9"``, a list of such strings (a repeated
    ``--resources``) or a dict; {} for none.  Bad input is one line that shows the form.

    >>> check_resources("GPU=1,MEM=64e9")
    {'GPU': 1.0, 'MEM': 64000000000.0}
    >>> check_resources(None)
    {}
    """
    if value is None or value == "" or value == []:
        return {}
    items: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    else:
        texts = [value] if isinstance(value, str) else list(value)
        for text in texts:
            if not isinstance(text, str):
                raise BadInput(f"resources must look like GPU=1,MEM=64e9, not {text!r}")
            for part in filter(None, (p.strip() for p in text.split(","))):
                name, eq, amount = part.partition("=")
                if not eq:
                    raise BadInput(f"resource {part!r} has no amount; write NAME=AMOUNT, e.g. --resources GPU=1,MEM=64e9")
                items.append((name.strip(), amount.strip()))
    out: dict[str, float] = {}
    for name, amount in items:
        if not isinstance(name, str) or not _RESOURCE_NAME.match(name):
            raise BadInput(f"resource name {name!r} is not a name like GPU or MEM; write NAME=AMOUNT, e.g. GPU=1")
        try:
            number = float(amount)
        except (TypeError, ValueError):
            raise BadInput(f"resource {name} needs a number, not {amount!r}; e.g. {name}=1 or MEM=64e9") from None
        if not math.isfinite(number) or number <= 0:
            raise BadInput(f"resource {name} must be a positive number, not {amount!r}")
        out[name] = number
    return out


def fits(needs: dict[str, float] | None, offers: Iterable[dict[str, float]] | None) -> bool:
    """Whether a job that needs ``needs`` can run on one of the places ``offers`` describes (each a
    Dask worker's declared resources).  No needs: anywhere; ``offers`` None: anything is offered.

    >>> fits({"GPU": 1}, [{}, {"GPU": 2}]), fits({"GPU": 1, "MEM": 8}, [{"GPU": 1}, {"MEM": 16}])
    (True, False)
    >>> fits({"GPU": 1}, [])  # the local executor offers none
    False
    """
    if not needs:
        return True
    if offers is None:
        return True
    return any(all(float(offer.get(k, 0)) >= v for k, v in needs.items()) for offer in offers)
