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

import random
from dataclasses import dataclass

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


def decide(outcome: str, failures: int, retries: int, **backoff_args: float) -> Decision:
    """The job's next state after an attempt ended with ``outcome``.

    ``failures`` counts failed attempts including this one; ``retries`` is the job's budget
    (max attempts - 1).  Released attempts (a stopping worker) never reach this function.
    """
    if outcome not in OUTCOME_STATE:
        raise ValueError(f"unknown attempt outcome {outcome!r}")
    if outcome in RETRY_ON and failures <= retries:
        return Decision(State.RETRYING.value, outcome, backoff(failures, **backoff_args))
    return Decision(OUTCOME_STATE[outcome].value, outcome)
