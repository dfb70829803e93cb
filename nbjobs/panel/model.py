"""The panel's view model, pure and testable without widgets: `RowView` (what a row shows of one
job, as display strings), `diff_rows` (what changed between two renders of a list of rows) and
`PanelModel` (the filtered, newest-first list of records, kept current from changed rows).

>>> from nbjobs.job import JobRecord, State
>>> row_view(JobRecord(id="ab" * 16, name="etl", kind="cell", state=State.QUEUED)).attempt
'-'
"""
from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Sequence

from ..errors import BadInput
from ..job import ACTIVE, RETRYABLE, JobRecord, State, group_state
from ..text import elapsed, error_line, fmt_duration, fmt_time, group_counts_text, value_text

DEFAULT_LIMIT = 20
MAX_LIMIT = 500
#: states whose rows tick (their elapsed time moves with the clock)
TICKING = (State.RUNNING, State.RETRYING)


# --- one row ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowView:
    """What a row (or a receipt) shows of one job, as display strings.  Pure data: `row_view`
    makes it from a record, the clock and the last log line.

    >>> from nbjobs.job import JobRecord, State
    >>> v = row_view(JobRecord(id="ab" * 16, name="train", kind="cell", state=State.RUNNING, started_at=99.0,
    ...                        began_at=100.0, progress_done=2, progress_total=4, retries=2, attempts=1), now=112.0)
    >>> v.progress, v.attempt, v.elapsed, v.ticking
    ('2/4', '1 of 3', '12s', True)
    """

    id: str
    name: str
    kind: str
    state: str
    done: int
    total: int
    attempt: str
    queued: str
    started: str
    elapsed: str
    ticking: bool
    note: str
    note_is_error: bool
    cancel_requested: bool
    output_path: str | None
    #: a group's row (a sweep): its number of jobs (0 for a job), and whether any can be cancelled/retried
    group_size: int = 0
    can_cancel: bool = False
    can_retry: bool = False
    expanded: bool = False
    slow: bool = False                # running past its name's usual runtime (`policy.slow_threshold`)
    report_path: str | None = None    # the HTML report of its latest attempt

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def progress(self) -> str:
        return f"{self.done}/{self.total}" if self.total else "-"

    @property
    def actions(self) -> dict[str, bool]:
        """Which actions make sense now (the others are shown disabled).  A group's row: cancel and
        retry apply to its jobs, ``logs`` expands it to its jobs, ``pull`` is off."""
        if self.group_size:
            return {"cancel": self.can_cancel, "retry": self.can_retry, "logs": True, "pull": False}
        state = State(self.state)
        return {"cancel": state in ACTIVE and not self.cancel_requested, "retry": state in RETRYABLE,
                "logs": self.started != "-", "pull": state == State.SUCCEEDED}


def row_view(r: JobRecord, now: float | None = None, last_line: str = "", wait: str = "") -> RowView:
    """The `RowView` of record ``r`` at time ``now``; ``last_line`` is the log's last line, ``wait``
    why the job waits (`nbjobs.text.wait_reason`).

    The note is the error of a job that did not succeed, else "cancel requested" while a cancel is
    pending, else why it waits, else the last log line while it is active, else the reason of its
    last transition (e.g. "retried") while it is active.  An ended job's note never speaks of a
    wait or a stop that is over.
    """
    now = time.time() if now is None else now
    err = error_line(r)
    active = r.state in ACTIVE
    if err:
        note = err
    elif r.cancel_requested and r.state == State.RUNNING:
        note = "cancel requested"
    elif wait and active:
        note = wait
    elif last_line:
        note = last_line
    else:
        note = r.reason if active and r.reason and r.reason != r.state.value else ""
    ticking = r.state in TICKING and r.started_at is not None
    return RowView(
        id=r.id, name=r.name, kind=r.kind, state=r.state.value, done=r.progress_done, total=r.progress_total,
        attempt=r.attempt_text, queued=fmt_time(r.submitted_at, now),
        started=fmt_time(r.started_at, now), elapsed=fmt_duration(elapsed(r, now)), ticking=ticking,
        note=note, note_is_error=bool(err), cancel_requested=bool(r.cancel_requested),
        output_path=r.output_path, slow=r.slow and r.state == State.RUNNING, report_path=r.report_path)


# --- groups: one row per sweep, expanding to its jobs -----------------------------------------------------
@dataclass(frozen=True)
class GroupRow:
    """What the panel knows of one group: its counts (`Store.group_counts`) and whether it is expanded."""

    id: str
    name: str
    total: int
    states: tuple[tuple[str, int], ...]
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    expanded: bool = False

    @classmethod
    def of(cls, gid: str, counts: dict[str, Any], expanded: bool = False) -> "GroupRow":
        return cls(gid, counts.get("name") or "group", counts["total"], tuple(sorted(counts["states"].items())),
                   counts.get("created_at"), counts.get("started_at"), counts.get("finished_at"), expanded)

    @property
    def state(self) -> State:
        return group_state(dict(self.states))


@dataclass(frozen=True)
class Member:
    """A job shown under its expanded group's row."""

    record: JobRecord

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def state(self) -> State:
        return self.record.state


def group_row_view(g: GroupRow, now: float | None = None) -> RowView:
    """The `RowView` of a group: ``n/N`` jobs ended as its progress, its jobs per state as its note.

    >>> v = group_row_view(GroupRow("cd" * 16, "train", 4, (("running", 1), ("succeeded", 3)), 1.0, 2.0), now=12.0)
    >>> v.progress, v.state, v.note, v.kind, v.actions["logs"], v.elapsed
    ('3/4', 'running', '1 running, 3 succeeded', 'sweep', True, '10s')
    """
    now = time.time() if now is None else now
    states = dict(g.states)
    ended = sum(n for st, n in states.items() if State(st).terminal)
    state = g.state
    active = ended < g.total
    span = None if g.started_at is None else ((now if active else (g.finished_at or now)) - g.started_at)
    bad = any(states.get(x.value) for x in (State.FAILED, State.TIMED_OUT))
    return RowView(
        id=g.id, name=g.name, kind="sweep", state=state.value, done=ended, total=g.total,
        attempt=f"{g.total} jobs", queued=fmt_time(g.created_at, now), started=fmt_time(g.started_at, now),
        elapsed=fmt_duration(span), ticking=active and g.started_at is not None, note=group_counts_text(states),
        note_is_error=bad, cancel_requested=False, output_path=None, group_size=g.total,
        can_cancel=active, can_retry=any(states.get(x.value) for x in RETRYABLE), expanded=g.expanded)


def member_view(r: JobRecord, now: float | None = None, last_line: str = "", wait: str = "") -> RowView:
    """A job's `RowView` under its group's row: named by its parameters (``↳ lr=0.1, depth=3``)."""
    v = row_view(r, now, last_line, wait)
    label = ", ".join(f"{k}={value_text(val, 16)}" for k, val in r.parameters.items()) or r.name
    return replace(v, name="\u21b3 " + label)


def group_items(records: Sequence[JobRecord], groups: dict[str, dict[str, Any]], expanded: Iterable[str] = (),
                members: dict[str, Sequence[JobRecord]] | None = None) -> list[Any]:
    """The panel's rows from its records: the jobs of a group (``groups``: `Store.group_counts`) fold
    into one `GroupRow` where the group's newest job would be; an expanded group is followed by its
    jobs (``members``, in the sweep's order) as `Member` rows.  Other jobs stay `JobRecord` rows.

    >>> a = JobRecord(id="a" * 32, name="x", kind="cell", state=State.QUEUED, group_id="g" * 32)
    >>> b = JobRecord(id="b" * 32, name="x", kind="cell", state=State.QUEUED, group_id="g" * 32)
    >>> c = JobRecord(id="c" * 32, name="y", kind="cell", state=State.QUEUED)
    >>> counts = {"g" * 32: {"total": 2, "states": {"queued": 2}, "name": "x"}}
    >>> [type(i).__name__ for i in group_items([a, c, b], counts)]
    ['GroupRow', 'JobRecord']
    >>> [type(i).__name__ for i in group_items([a, c, b], counts, ["g" * 32], {"g" * 32: [a, b]})]
    ['GroupRow', 'Member', 'Member', 'JobRecord']
    """
    expanded = set(expanded)
    out: list[Any] = []
    seen: set[str] = set()
    for r in records:
        gid = r.group_id
        if gid is None or gid not in groups:
            out.append(r)
            continue
        if gid in seen:
            continue
        seen.add(gid)
        out.append(GroupRow.of(gid, groups[gid], gid in expanded))
        if gid in expanded:
            out += [Member(m) for m in (members or {}).get(gid, ())]
    return out


def item_view(item: Any, now: float | None = None, last_line: str = "", wait: str = "") -> RowView:
    """The `RowView` of any panel row: a job, a group or a job under its group (``wait``: why a
    job waits, `nbjobs.text.wait_reason`)."""
    if isinstance(item, GroupRow):
        return group_row_view(item, now)
    if isinstance(item, Member):
        return member_view(item.record, now, last_line, wait)
    return row_view(item, now, last_line, wait)


#: the panel's columns, in order, with their headings
COLUMNS: dict[str, str] = {
    "id": "ID", "name": "name", "kind": "kind", "state": "state", "progress": "cells", "attempt": "attempt",
    "queued": "queued", "started": "started", "elapsed": "elapsed", "note": "last line / error"}
#: the receipt's columns (the same cells, fewer of them)
RECEIPT_COLUMNS = ("state", "name", "id", "kind", "progress", "attempt", "elapsed", "note")
ACTIONS = ("cancel", "retry", "logs", "pull")


@dataclass
class RowsDiff:
    """What changed between two renders of a list of rows (see `diff_rows`)."""

    added: list[str]
    removed: list[str]
    changed: dict[str, dict[str, Any]]
    order: list[str] | None  # the new order of IDs, if membership or order changed

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.order is not None)


def diff_rows(old: dict[str, dict[str, Any]], old_order: Sequence[str], new: dict[str, dict[str, Any]],
              new_order: Sequence[str]) -> RowsDiff:
    """Compare two renders: rows added and removed, the entries that changed in kept rows, and
    the new order when it differs.

    >>> diff_rows({"a": {"state": "q"}}, ["a"], {"a": {"state": "r"}, "b": {"state": "q"}}, ["b", "a"])
    RowsDiff(added=['b'], removed=[], changed={'a': {'state': 'r'}}, order=['b', 'a'])
    """
    added = [i for i in new_order if i not in old]
    removed = [i for i in old_order if i not in new]
    changed: dict[str, dict[str, Any]] = {}
    for i in new_order:
        before = old.get(i)
        if before is not None and before is not new[i]:
            delta = {k: val for k, val in new[i].items() if before.get(k) != val}
            if delta:
                changed[i] = delta
    order = list(new_order) if list(new_order) != list(old_order) else None
    return RowsDiff(added, removed, changed, order)


# --- the panel's list ----------------------------------------------------------------------------------
def parse_states(state: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """A state filter: None or ``"all"`` for every state, ``"active"`` for the unfinished ones,
    one state, or several (a list or ``"failed,timed_out"``).

    >>> parse_states("active")
    ('waiting', 'queued', 'running', 'retrying')
    >>> parse_states("failed,timed_out"), parse_states("all")
    (('failed', 'timed_out'), None)
    """
    if state is None:
        return None
    items = state.split(",") if isinstance(state, str) else list(state)
    out: list[str] = []
    for s in items:
        s = str(s).strip()
        if s in ("", "all"):
            return None
        group = [x.value for x in State if x in ACTIVE] if s == "active" else [s]
        for g in group:
            try:
                value = State(g).value
            except ValueError:
                raise BadInput(f"unknown state {g!r}; use all, active or one of: "
                               f"{', '.join(x.value for x in State)}") from None
            if value not in out:
                out.append(value)
    return tuple(out) or None


def _key(r: JobRecord) -> tuple[float, str]:
    return (-(r.submitted_at or 0.0), r.id)


class PanelModel:
    """The panel's rows: jobs matching the filters, newest first, at most ``limit``.  Pure: it is
    kept current from changed records (`apply`) and says when it must be re-read (`query`).

    >>> from nbjobs.job import JobRecord, State
    >>> m = PanelModel(state="running", limit=2)
    >>> a = JobRecord(id="a" * 32, name="a", kind="cell", state=State.RUNNING, submitted_at=1.0)
    >>> m.reset([a]); [r.name for r in m.records]
    ['a']
    >>> b = JobRecord(id="b" * 32, name="b", kind="cell", state=State.RUNNING, submitted_at=2.0)
    >>> m.apply([b]), [r.name for r in m.records]          # a new job: on top, no re-read needed
    (False, ['b', 'a'])
    >>> done = JobRecord(id="a" * 32, name="a", kind="cell", state=State.SUCCEEDED, submitted_at=1.0)
    >>> m.apply([done]), [r.name for r in m.records]       # left the filter: re-read to backfill
    (True, ['b'])
    """

    def __init__(self, state: str | Iterable[str] | None = None, name: str | None = None,
                 tag: str | None = None, limit: int = DEFAULT_LIMIT):
        self.set_filters(state, name, tag, limit)
        self.records: list[JobRecord] = []

    def set_filters(self, state: str | Iterable[str] | None = None, name: str | None = None,
                    tag: str | None = None, limit: int = DEFAULT_LIMIT) -> None:
        self.states = parse_states(state)
        self.name = (name or "").strip() or None
        self.tag = (tag or "").strip() or None
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
            raise BadInput(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
        self.limit = limit

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def matches(self, r: JobRecord) -> bool:
        """The store's filter, in Python: state in the set, name equal or matching a glob
        (case-sensitive, like SQLite's GLOB), tag among the job's tags."""
        if self.states is not None and r.state.value not in self.states:
            return False
        if self.name is not None:
            if any(c in self.name for c in "*?["):
                if not fnmatch.fnmatchcase(r.name, self.name):
                    return False
            elif r.name != self.name:
                return False
        if self.tag is not None and self.tag not in (r.tags or []):
            return False
        return True

    def reset(self, records: Iterable[JobRecord]) -> None:
        self.records = sorted((r for r in records if self.matches(r)), key=_key)[: self.limit]

    def apply(self, changed: Iterable[JobRecord]) -> bool:
        """Fold changed records in: update rows shown, add new matching rows that belong in the
        first ``limit``, drop rows that no longer match.  Returns True when the list must be
        re-read (a row left it, so one below the cut may now belong in it)."""
        rows = {r.id: r for r in self.records}
        last = _key(self.records[-1]) if self.records else None
        full = len(self.records) >= self.limit
        requery = False
        for r in changed:
            if self.matches(r):
                if r.id in rows or not full or last is None or _key(r) < last:
                    rows[r.id] = r
            elif r.id in rows:
                del rows[r.id]
                requery = True
        self.records = sorted(rows.values(), key=_key)[: self.limit]
        return requery

    def query(self, records: Callable[..., list[JobRecord]]) -> list[JobRecord]:
        """Read the rows afresh with ``records`` (`nbjobs.api.records` for a home).  Several states
        are read one state at a time (each an indexed newest-first read) and merged."""
        if self.states is not None and len(self.states) > 1:
            got = [r for s in self.states for r in records(state=s, name=self.name, tag=self.tag, limit=self.limit)]
        else:
            got = records(state=list(self.states) if self.states else None, name=self.name, tag=self.tag,
                          limit=self.limit)
        return sorted(got, key=_key)[: self.limit]

    def describe(self) -> str:
        parts = [f"state {', '.join(self.states)}" if self.states else "all states"]
        if self.name:
            parts.append(f"name {self.name}")
        if self.tag:
            parts.append(f"tag {self.tag}")
        return ", ".join(parts) + f", newest {self.limit}"

