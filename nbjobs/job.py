"""The job record, its lifecycle states and the rules for job IDs.

The lifecycle's decisions are pure functions here, which the store applies: `check_transition`
(every state change the store makes is checked by it) and `dependency_outcome` (what a waiting
job does once its upstream jobs move).

The lifecycle (see docs/architecture.md)::

    waiting -> queued -> running -> succeeded | failed | timed_out | cancelled
                           |  ^
                           v  |  (backoff elapsed)
                         retrying

>>> check_transition(State.QUEUED, State.RUNNING)
>>> State.SUCCEEDED.terminal
True
"""
from __future__ import annotations

import enum
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from .errors import BadInput, IllegalTransition


class State(str, enum.Enum):
    """Where a job is in its life.  The value is what SQLite stores."""

    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        return self not in TERMINAL


TERMINAL = frozenset({State.SUCCEEDED, State.FAILED, State.TIMED_OUT, State.CANCELLED})
ACTIVE = frozenset(set(State) - TERMINAL)
#: states a worker may claim from (retrying only once its backoff has elapsed)
CLAIMABLE = (State.QUEUED, State.RETRYING)
#: states `retry` accepts
RETRYABLE = (State.FAILED, State.TIMED_OUT, State.CANCELLED)

TRANSITIONS: dict[State, frozenset[State]] = {
    State.WAITING: frozenset({State.QUEUED, State.CANCELLED}),
    State.QUEUED: frozenset({State.RUNNING, State.CANCELLED}),
    # running -> queued: a stopping worker released the job, or its lease was reclaimed
    State.RUNNING: frozenset({State.SUCCEEDED, State.FAILED, State.TIMED_OUT, State.CANCELLED,
                              State.RETRYING, State.QUEUED}),
    State.RETRYING: frozenset({State.RUNNING, State.CANCELLED}),
    State.SUCCEEDED: frozenset(),
    # manual retry (re-drive); a job with upstream jobs waits for them again
    State.FAILED: frozenset({State.QUEUED, State.WAITING}),
    State.TIMED_OUT: frozenset({State.QUEUED, State.WAITING}),
    State.CANCELLED: frozenset({State.QUEUED, State.WAITING}),
}

#: the legal moves as ``(old, new)`` values: `check_transition`'s fast path
_LEGAL = frozenset((old.value, new.value) for old, targets in TRANSITIONS.items() for new in targets)
#: the values of `TERMINAL` (a state read from SQLite is its value)
TERMINAL_VALUES = frozenset(s.value for s in TERMINAL)


def check_transition(old: State | str, new: State | str) -> None:
    """Raise `IllegalTransition` unless the lifecycle allows ``old -> new``.

    >>> check_transition("succeeded", "running")
    Traceback (most recent call last):
    ...
    nbjobs.errors.IllegalTransition: a succeeded job cannot become running
    """
    if (old, new) in _LEGAL:  # a State is a str: its value and the member hash alike
        return
    old, new = State(old), State(new)
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"a {old} job cannot become {new}")


def sources_of(new: State | str) -> tuple[str, ...]:
    """All states from which ``new`` may be entered (used to guard SQL updates)."""
    new = State(new)
    return tuple(s.value for s, targets in TRANSITIONS.items() if new in targets)


# --- dependencies ----------------------------------------------------------------------------
#: upstream states that cancel the jobs waiting for them (unless they run ``after_any``)
ENDED_BADLY = frozenset({State.FAILED, State.TIMED_OUT, State.CANCELLED})


@dataclass(frozen=True)
class DependencyOutcome:
    """What a waiting job does next: keep waiting (``state`` None), run (queued) or be cancelled."""

    state: State | None
    reason: str | None = None   # the job's reason: ``dependency_failed`` when cancelled
    message: str = ""           # what the event (and, when cancelled, the error message) says


def dependency_outcome(upstream: Iterable[tuple[str, str | None, State | str]],
                       after_any: bool = False) -> DependencyOutcome:
    """Decide a waiting job's fate from its upstream jobs, given as ``(id, name, state)`` in a set order.

    It runs (``queued``) once every upstream job succeeded (with ``after_any``: once every one
    ended, however); it is cancelled with reason ``dependency_failed``, naming the first upstream
    job in the given order that failed, timed out or was cancelled (never with ``after_any``);
    otherwise it keeps waiting.

    >>> dependency_outcome([("8f3a2c11" * 4, "etl", "succeeded"), ("0b7e" * 8, "fit", "running")])
    DependencyOutcome(state=None, reason=None, message='')
    >>> dependency_outcome([("8f3a2c11" * 4, "etl", "failed")]).message
    'upstream job 8f3a2c11 (etl) ended failed'
    >>> dependency_outcome([("8f3a2c11" * 4, "etl", "failed")], after_any=True).state
    <State.QUEUED: 'queued'>
    """
    ups = [(uid, name, State(state)) for uid, name, state in upstream]
    if not after_any:
        for uid, name, state in ups:
            if state in ENDED_BADLY:
                return DependencyOutcome(State.CANCELLED, "dependency_failed",
                                         f"upstream job {short_id(uid)} ({name}) ended {state}")
    if all(state == State.SUCCEEDED or (after_any and state.terminal) for _, _, state in ups):
        return DependencyOutcome(State.QUEUED, None, f"upstream {', '.join(short_id(uid) for uid, _, _ in ups)} ended")
    return DependencyOutcome(None)


# --- groups ------------------------------------------------------------------------------------
def group_state(states: dict[str, int]) -> State:
    """One state for a group from its jobs per state: the most active one while any job is active
    (running, retrying, queued, waiting), else the worst ending (failed, timed_out, cancelled),
    else succeeded.

    >>> group_state({"succeeded": 3, "running": 1}), group_state({"succeeded": 3, "failed": 1})
    (<State.RUNNING: 'running'>, <State.FAILED: 'failed'>)
    """
    for s in (State.RUNNING, State.RETRYING, State.QUEUED, State.WAITING, State.FAILED, State.TIMED_OUT,
              State.CANCELLED):
        if states.get(s.value):
            return s
    return State.SUCCEEDED


def limit_reason(key: str, running: int, max_running: int) -> str:
    """Why a queued job with a concurrency key waits, when its key is at its limit.

    >>> limit_reason("nightly", 1, 1)
    'queued: 1 of max 1 running for key nightly'
    >>> limit_reason("group:" + "ab" * 16, 2, 2)
    'queued: 2 of max 2 running in group abababab (--max-parallel)'
    """
    if key.startswith("group:"):
        return f"queued: {running} of max {max_running} running in group {short_id(key[6:])} (--max-parallel)"
    return f"queued: {running} of max {max_running} running for key {key}"


# --- IDs -----------------------------------------------------------------------------------
ID_LEN = 32
SHORT_LEN = 8
_PREFIX_RE = re.compile(r"^[0-9a-f]{1,32}$")


def new_id() -> str:
    """A new job ID: UUID4 as 32 lowercase hex digits, never sequential (what ``uuid.uuid4().hex``
    gives, without building a `uuid.UUID`)."""
    b = bytearray(os.urandom(16))
    b[6] = b[6] & 0x0F | 0x40  # version 4
    b[8] = b[8] & 0x3F | 0x80  # RFC 4122 variant
    return b.hex()


def short_id(job_id: str) -> str:
    """The first 8 hex digits, as shown in tables (any unique prefix is accepted back)."""
    return job_id[:SHORT_LEN]


def normalize_prefix(text: str) -> str:
    """Validate a job ID or unique prefix given by a user; dashes (UUID form) are allowed.

    >>> normalize_prefix("8F3A-2C")
    '8f3a2c'
    """
    p = str(text).strip().lower().replace("-", "")
    if not _PREFIX_RE.match(p):
        raise BadInput(f"'{text}' is not a job ID: use the hex ID (or a unique prefix) shown by `nbjobs ls`")
    return p


def code_hash(kind: str, notebook: str | None = None, source: str | None = None) -> str:
    """sha256 of a cell job's source or of a notebook file's bytes (first 16 hex digits).

    >>> code_hash("cell", source="1 + 1")
    '72fce59447a01f48'
    """
    if kind == "cell":
        data = (source or "").encode()
    else:
        with open(notebook, "rb") as f:  # type: ignore[arg-type]
            data = f.read()
    return hashlib.sha256(data).hexdigest()[:16]


# --- the record --------------------------------------------------------------------------------
KINDS = ("notebook", "cell")
#: the tags of the cells nbjobs wraps a cell job's code in (`nbjobs.runner.build_cell_notebook`):
#: not the user's cells, so progress does not count them and a copy for the user leaves them out
HELPER_TAGS = frozenset({"nbjobs-parameters", "nbjobs-inputs", "nbjobs-origin", "nbjobs-outputs"})


@dataclass
class JobRecord:
    """One row of the ``jobs`` table, decoded.  Read-only snapshot; ask the store for fresh ones."""

    id: str
    name: str
    kind: str
    state: State
    reason: str | None = None
    priority: int = 0
    tags: list[str] = field(default_factory=list)
    notebook: str | None = None
    source: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    kernel: str | None = None
    cwd: str | None = None
    retries: int = 0
    timeout: float | None = None
    idem_key: str | None = None
    attempts: int = 0
    failures: int = 0
    infra_failures: int = 0
    submitted_at: float = 0.0
    run_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    began_at: float | None = None
    budget_from: int = 0
    worker_id: str | None = None
    lease_until: float | None = None
    cancel_requested: int = 0
    progress_done: int = 0
    progress_total: int = 0
    error_type: str | None = None
    error_message: str | None = None
    error_cell: int | None = None
    error_traceback: str | None = None
    code_hash: str | None = None
    output_path: str | None = None
    submitted_by: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    acked_at: float | None = None
    #: the group (a sweep) the job belongs to, if any
    group_id: str | None = None
    #: per-name limit: at most ``max_running`` running jobs share this key
    concurrency_key: str | None = None
    max_running: int | None = None
    slow_at: float | None = None        # when the current attempt was flagged slow (`policy.slow_threshold`)
    slow_after: float | None = None     # ... and the threshold it ran past, seconds
    report_path: str | None = None      # the HTML report of the latest attempt (``--report html``)
    resources: dict[str, float] = field(default_factory=dict)

    @property
    def dead_letter(self) -> bool:
        """Failed or timed out with no retry left, and nobody has retried or acknowledged it."""
        return self.state in (State.FAILED, State.TIMED_OUT) and self.acked_at is None

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @property
    def slow(self) -> bool:
        """Its current (or last) attempt ran past its name's usual runtime (see `policy.slow_threshold`)."""
        return self.slow_at is not None

    @property
    def max_attempts(self) -> int:
        """The number of the last attempt the retry policy allows now: the attempts made before
        the last manual retry (``budget_from``; a manual retry starts the budget afresh), plus
        the job's own ``retries`` + 1, plus those lost to infrastructure failures so far
        (re-queued without charging the job)."""
        return self.budget_from + self.retries + 1 + self.infra_failures

    @property
    def attempt_text(self) -> str:
        """The attempt as a user reads it: ``2 of 3`` while the policy allows more than one
        attempt, ``2`` when it does not (a single attempt, or one a user retried by hand), ``-``
        before the first.

        >>> JobRecord(id="a" * 32, name="x", kind="cell", state=State.RUNNING, attempts=1, retries=2).attempt_text
        '1 of 3'
        >>> JobRecord(id="a" * 32, name="x", kind="cell", state=State.RUNNING, attempts=2, budget_from=1).attempt_text
        '2'
        """
        if not self.attempts:
            return "-"
        limit = self.max_attempts
        return f"{self.attempts} of {limit}" if limit - self.budget_from > 1 else str(self.attempts)

    @property
    def runtime(self) -> float | None:
        """Seconds the latest attempt has run the job's code: from its first cell of the job's
        own code to its end (to ``now`` while it runs: None here, see `nbjobs.text.elapsed`).
        None before that, and for an attempt that ended before reaching the code."""
        if self.began_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.began_at

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["state"] = self.state.value
        return d
