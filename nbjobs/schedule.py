"""Cron schedules: when they fire, what a missed or overlapping fire does, and the firer.

A schedule is a cron expression (standard 5 fields, or ``@hourly`` ``@daily`` ``@midnight``
``@weekly`` ``@monthly`` ``@yearly`` ``@annually``) in an IANA time zone plus the spec of the job
each fire submits.  **Each fire is an ordinary job** whose idempotency key is
``schedule:NAME:SLOT`` (SLOT: the fire time, epoch seconds), so the same slot can never make two
jobs, whatever restarts or races happen.  The firer (`tick`) runs inside workers: one worker of a
home at a time holds the ``firer`` lease (SQLite, `Store.take_lease`); when it dies another takes
over after `FIRER_LEASE` seconds.  Every decision moves the schedule's ``last_slot`` by a
compare-and-set in the transaction that inserts the jobs, so even two firers racing (say, a lease
handover) cannot fire a slot twice or lose one.

Time zones and DST.  Schedules follow the wall clock of their zone:

- a wall time that does not exist (the spring-forward gap; ``30 2 * * *`` in America/New_York on
  2025-03-09) fires once, shifted by the gap: at 03:30 local (07:30 UTC);
- a wall time that happens twice (fall back; ``30 1 * * *`` in America/New_York on 2025-11-02)
  fires once, at its first occurrence (01:30 EDT, 05:30 UTC).

The slot inside the notebook: a fired job whose notebook has a ``parameters`` cell (a cell job
always has one) gets `SLOT_PARAMETER` (``nbjobs_scheduled_for``), its slot in ISO 8601 with the
zone's offset, so a nightly report knows which day it reports.  `backfill` runs given past slots,
each with its own slot time and the slot's idempotency key (a slot never runs twice, however
often it is backfilled or whether it fired).

Missed slots (no worker ran, the machine slept): a slot is *late* when the firer sees it more
than `MISFIRE_GRACE` seconds after its time.  The misfire policy decides: ``skip`` (record them,
run nothing), ``once`` (run one job for the newest missed slot), ``all`` (run each missed slot,
the newest ``misfire_cap`` of them).  Overlap (the previous fire is still active): ``skip``
(recorded), ``queue`` (the new fire waits for the previous one to end, via a dependency) or
``allow``.

>>> next_fires("30 2 * * *", "America/New_York", after=1741410000.0, n=2)   # 2025-03-08 05:00 UTC
[1741419000.0, 1741505400.0]
>>> [fmt_slot(t, "America/New_York") for t in _]
['2025-03-08 02:30 EST', '2025-03-09 03:30 EDT']
>>> misfire_plan([], [300.0, 200.0, 100.0], 3, "once", cap=10)
([300.0], [(300.0, 'misfire_once', '3 missed slot(s) (misfire=once): ran one job for the newest')])
"""
from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timedelta
from typing import Any, Iterable

from .errors import BadInput

MISFIRE_POLICIES = ("skip", "once", "all")
OVERLAP_POLICIES = ("skip", "queue", "allow")
ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
#: seconds after its time a slot still counts as on time (a busy or starting firer)
MISFIRE_GRACE = 60.0
#: default cap of ``misfire="all"``: at most this many missed slots run after downtime
MISFIRE_CAP = 10
#: seconds the firer lease lasts without renewal (a dead firer is replaced after this)
FIRER_LEASE = float(os.environ.get("NBJOBS_FIRER_LEASE", "10"))
#: most missed slots counted one by one (more are reported as "N+")
COUNT_LIMIT = 5000
LEASE_NAME = "firer"


# --- validation -------------------------------------------------------------------------------------------
def check_cron(expr: Any) -> str:
    """A valid cron expression, normalized (single spaces; aliases lower case), or `BadInput`.

    >>> check_cron(" */15  9-17 * * 1-5 ")
    '*/15 9-17 * * 1-5'
    >>> check_cron("61 * * * *")
    Traceback (most recent call last):
    ...
    nbjobs.errors.BadInput: cron expression '61 * * * *' is not valid; write 5 fields (minute hour day-of-month month day-of-week) like '30 2 * * *', or an alias like @daily
    """
    if not isinstance(expr, str) or not expr.strip():
        raise BadInput("give a cron expression like '30 2 * * *' (minute hour day-of-month month day-of-week) "
                       "or an alias like @daily")
    text = " ".join(expr.split())
    hint = ("write 5 fields (minute hour day-of-month month day-of-week) like '30 2 * * *', "
            "or an alias like @daily")
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise BadInput(f"cron alias {text!r} is unknown; use one of {', '.join(ALIASES)}")
        return text.lower()
    if len(text.split(" ")) != 5:
        raise BadInput(f"cron expression {expr.strip()!r} has {len(text.split(' '))} fields, not 5; {hint}")
    croniter = _croniter()
    try:
        ok = croniter.is_valid(text)
    except Exception:  # noqa: croniter raises assorted errors on odd input
        ok = False
    if not ok:
        raise BadInput(f"cron expression {expr.strip()!r} is not valid; {hint}")
    return text


def check_tz(name: Any) -> str:
    """An IANA time zone name (``Europe/Berlin``, ``UTC``), or `BadInput`.

    >>> check_tz("Europe/Berlin")
    'Europe/Berlin'
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(name, str) or not name.strip():
        raise BadInput("give a time zone by its IANA name, like Europe/Berlin or UTC")
    try:
        ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadInput(f"time zone {name!r} is unknown; use an IANA name like Europe/Berlin, "
                       "America/New_York or UTC") from None
    return name.strip()


def check_policy(kind: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise BadInput(f"{kind} policy {value!r} is unknown; use one of {', '.join(allowed)}")
    return value


def check_name(name: Any) -> str:
    """Schedule names: letters, digits, ``-``, ``_``, ``.``; at most 64 characters."""
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise BadInput(f"schedule name {name!r} is not usable; use letters, digits, '-', '_' or '.' "
                       "(at most 64 characters), like daily-report")
    return name


def _croniter():
    from croniter import croniter  # imported on first use: `import nbjobs` stays light

    return croniter


# --- next fire times --------------------------------------------------------------------------------------
def _zone(tz: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(tz)


def _local(t: float, zone) -> datetime:
    return datetime.fromtimestamp(t, zone).replace(tzinfo=None)


def _utc(naive: datetime, zone) -> float:
    return naive.replace(tzinfo=zone, fold=0).timestamp()


def _exists(naive: datetime, zone) -> bool:
    return _local(_utc(naive, zone), zone) == naive


def _offset(t: float, zone) -> float:
    return datetime.fromtimestamp(t, zone).utcoffset().total_seconds()


def next_fire(cron: str, tz: str, after: float) -> float:
    """The first slot strictly after ``after`` (epoch seconds), by the rules in the module doc.

    Wall-clock candidates come from croniter on naive local times and are mapped to UTC with
    ``fold=0`` (a missing time shifts forward by the gap, a repeated one takes its first
    occurrence); only near a spring-forward gap is more than one candidate compared.
    """
    zone = _zone(tz)
    croniter = _croniter()
    back = max(0.0, _offset(after, zone) - _offset(after - 3 * 3600, zone))  # a recent spring forward
    it = croniter(cron, _local(after, zone) - timedelta(seconds=back + 60))
    while True:
        n = it.get_next(datetime)
        u = _utc(n, zone)
        if u <= after:
            continue
        if _exists(n, zone):
            return u
        best, limit = u, n + timedelta(hours=2)  # in a gap: a later wall time may map earlier
        while True:
            n2 = it.get_next(datetime)
            if n2 > limit:
                return best
            u2 = _utc(n2, zone)
            if after < u2 < best:
                best = u2


def next_fires(cron: str, tz: str, after: float, n: int = 3) -> list[float]:
    """The next ``n`` slots after ``after``."""
    out: list[float] = []
    t = after
    for _ in range(n):
        t = next_fire(cron, tz, t)
        out.append(t)
    return out


def slots_between(cron: str, tz: str, after: float, until: float, limit: int = COUNT_LIMIT) -> list[float]:
    """Slots ``s`` with ``after < s <= until``, oldest first, at most ``limit`` of them."""
    out: list[float] = []
    t = after
    while len(out) < limit:
        t = next_fire(cron, tz, t)
        if t > until:
            break
        out.append(t)
    return out


def newest_slots(cron: str, tz: str, after: float, until: float, k: int) -> list[float]:
    """The newest ``k`` slots in ``(after, until]``, newest first (for long downtimes: walks
    back from ``until`` in growing windows instead of counting every slot from ``after``)."""
    if k <= 0 or until <= after:
        return []
    span = 3600.0
    while True:
        lo = max(after, until - span)
        found = slots_between(cron, tz, lo, until, limit=10 ** 6)
        if len(found) >= k or lo == after:
            return found[::-1][:k]
        span *= 4


def fmt_slot(t: float, tz: str) -> str:
    """``2025-03-09 03:30 EDT``: a slot in its schedule's zone."""
    return datetime.fromtimestamp(t, _zone(tz)).strftime("%Y-%m-%d %H:%M %Z")


# --- the decisions (pure) ------------------------------------------------------------------------------------
def misfire_plan(on_time: list[float], late_newest_first: list[float], late_count: int, policy: str,
                 cap: int = MISFIRE_CAP, more: bool = False) -> tuple[list[float], list[tuple[float, str, str]]]:
    """Which slots to fire now, oldest first, and the notes to record ``(slot, action, detail)``.

    ``on_time`` slots always fire.  ``late_newest_first`` holds the newest missed slots (at least
    ``cap`` of them when there are that many), ``late_count`` how many were missed in all
    (``more``: at least that many).

    >>> misfire_plan([], [300.0, 200.0, 100.0], 3, "all", cap=2)[0]
    [200.0, 300.0]
    >>> misfire_plan([400.0], [300.0], 1, "skip")
    ([400.0], [(300.0, 'misfire_skipped', '1 missed slot(s) skipped (misfire=skip)')])
    """
    fires = list(on_time)
    notes: list[tuple[float, str, str]] = []
    if not late_count or not late_newest_first:
        return fires, notes
    count = f"{late_count}{'+' if more else ''} missed slot(s)"
    newest = late_newest_first[0]
    if policy == "skip":
        notes.append((newest, "misfire_skipped", f"{count} skipped (misfire=skip)"))
    elif policy == "once":
        if on_time:
            notes.append((newest, "misfire_coalesced", f"{count} covered by the on-time run (misfire=once)"))
        else:
            fires.insert(0, newest)
            notes.append((newest, "misfire_once", f"{count} (misfire=once): ran one job for the newest"))
    elif policy == "all":
        chosen = sorted(late_newest_first[:max(0, cap)])
        fires = chosen + fires
        skipped = late_count - len(chosen)
        if skipped > 0 or more:
            notes.append((chosen[0] if chosen else newest, "misfire_capped",
                          f"{count}: ran the newest {len(chosen)} (misfire=all, cap {cap}); "
                          f"{skipped}{'+' if more else ''} older skipped"))
        elif chosen:
            notes.append((newest, "misfire_all", f"{count}: ran each (misfire=all)"))
    else:
        raise ValueError(f"unknown misfire policy {policy!r}")
    return fires, notes


def overlap_plan(policy: str, previous_active: bool, n: int) -> list[str]:
    """What each of ``n`` fires (oldest first) does: ``fire``, ``queue`` (wait for the previous
    fire to end) or ``skip``, when the previous fire is (or is not) still active.  Fires of the
    same tick overlap each other too.

    >>> overlap_plan("skip", True, 2), overlap_plan("skip", False, 2), overlap_plan("queue", True, 2)
    (['skip', 'skip'], ['fire', 'skip'], ['queue', 'queue'])
    """
    if policy == "allow":
        return ["fire"] * n
    if policy == "skip":
        return ["skip"] * n if previous_active else ["fire"] + ["skip"] * (n - 1) if n else []
    if policy == "queue":
        return ["queue"] * n if previous_active else ["fire"] + ["queue"] * (n - 1) if n else []
    raise ValueError(f"unknown overlap policy {policy!r}")


# --- the firer -----------------------------------------------------------------------------------------------
def idem_key(name: str, slot: float) -> str:
    return f"schedule:{name}:{int(slot)}"


#: the parameter that tells a fired job its slot (ISO 8601 in the schedule's zone)
SLOT_PARAMETER = "nbjobs_scheduled_for"


def slot_iso(t: float, tz: str) -> str:
    """A slot as ISO 8601 with its zone's offset, as `SLOT_PARAMETER` carries it.

    >>> slot_iso(1741505400.0, "America/New_York")
    '2025-03-09T03:30:00-04:00'
    """
    return datetime.fromtimestamp(t, _zone(tz)).isoformat(timespec="seconds")


def takes_parameters(spec: dict[str, Any]) -> bool:
    """Whether the job of ``spec`` has a parameters cell: a cell job always does; a notebook job
    when a cell of its notebook is tagged ``parameters`` (read now: the notebook may have changed
    since the schedule was added; an unreadable one gets none and fails on its own)."""
    if spec.get("kind") != "notebook":
        return True
    import json

    try:
        with open(spec["notebook"], encoding="utf-8") as f:
            cells = json.load(f).get("cells") or []
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return False
    return any("parameters" in ((c.get("metadata") or {}).get("tags") or []) for c in cells if isinstance(c, dict))


def job_spec(schedule: dict[str, Any], slot: float | None, now: float | None = None) -> dict[str, Any]:
    """The spec of the job one fire submits: the schedule's spec, linked to it (``options``
    ``schedule`` and ``slot``) with the slot's idempotency key (none for run-now).  When the job
    has a parameters cell it gets `SLOT_PARAMETER`, the slot in ISO 8601 with its zone (run-now:
    ``now``), so a nightly report knows which day it reports."""
    spec = dict(schedule["spec"])
    spec["options"] = dict(spec.get("options") or {}, schedule=schedule["name"], slot=slot)
    spec["name"] = spec.get("name") or schedule["name"]
    spec["idem_key"] = idem_key(schedule["name"], slot) if slot is not None else None
    if takes_parameters(spec):
        when = slot if slot is not None else (time.time() if now is None else now)
        spec["parameters"] = dict(spec.get("parameters") or {}, **{SLOT_PARAMETER: slot_iso(when, schedule["tz"])})
    return spec


def plan(schedule: dict[str, Any], now: float, previous_active: bool,
         grace: float = MISFIRE_GRACE) -> tuple[float | None, list[tuple[float, dict[str, Any]]], list]:
    """Everything one tick does for one schedule: ``(new_last_slot, fires, notes)``; nothing due
    gives ``(None, [], [])``."""
    from .job import new_id

    cron, tz, last = schedule["cron"], schedule["tz"], schedule["last_slot"]
    first = next_fire(cron, tz, last)
    if first > now:
        return None, [], []
    cutoff = max(last, now - grace)
    on_time = slots_between(cron, tz, cutoff, now)
    late_count, more, late = 0, False, []
    if first <= cutoff:
        counted = slots_between(cron, tz, last, cutoff)
        late_count, more = len(counted), len(counted) >= COUNT_LIMIT
        k = max(1, int(schedule["misfire_cap"]))
        late = counted[::-1][:k] if not more else newest_slots(cron, tz, last, cutoff, k)
    slots, notes = misfire_plan(on_time, late, late_count, schedule["misfire"], int(schedule["misfire_cap"]), more)
    new_last = max(on_time[-1] if on_time else last, late[0] if late else last)
    actions = overlap_plan(schedule["overlap"], previous_active, len(slots))
    fires: list[tuple[float, dict[str, Any]]] = []
    previous = schedule.get("last_job_id")
    for slot, action in zip(slots, actions):
        if action == "skip":
            notes.append((slot, "overlap_skipped", "the previous fire is still active (overlap=skip)"))
            continue
        spec = job_spec(schedule, slot)
        spec["id"] = new_id()
        if action == "queue" and previous:
            spec["after"] = [previous]
            spec["options"]["after_any"] = True
            spec["note"] = f"queued after {previous[:8]} (overlap=queue)"
        fires.append((slot, spec))
        previous = spec["id"]
    return new_last, fires, notes


def fire_due(store, schedule: dict[str, Any], now: float, actor: str, grace: float = MISFIRE_GRACE) -> list[str]:
    """Fire what is due of one schedule at ``now``.  Returns the new job IDs ([] when nothing
    was due or another firer got there first)."""
    previous_active = store.job_active(schedule.get("last_job_id"))
    new_last, fires, notes = plan(schedule, now, previous_active, grace)
    if new_last is None:
        return []
    return store.fire_schedule(schedule["name"], schedule["last_slot"], new_last, fires, notes, actor, now) or []


def tick(store, holder: str, now: float | None = None, *, use_lease: bool = True,
         lease: float = FIRER_LEASE, grace: float = MISFIRE_GRACE) -> dict[str, list[str]]:
    """One round of the firer: take (or renew) the home's firer lease, then fire every due,
    unpaused schedule.  ``now`` is injectable (tests simulate days in milliseconds).  Returns
    ``{schedule: [new job IDs]}`` for the schedules that fired.

    >>> tick(store, "worker-1", now=time.time())   # doctest: +SKIP
    {'daily-report': ['8f3a2c...']}
    """
    now = time.time() if now is None else now
    active = [s for s in store.list_schedules() if not s["paused"]]
    if not active:  # nothing to fire: no lease write (a home without schedules sees no writes at all)
        return {}
    if use_lease and not store.take_lease(LEASE_NAME, holder, lease, now):
        return {}
    out: dict[str, list[str]] = {}
    for schedule in active:
        try:
            ids = fire_due(store, schedule, now, f"schedule:{holder}", grace)
        except Exception as exc:  # noqa: one broken schedule must not stop the others
            print(f"nbjobs firer: schedule {schedule['name']}: {type(exc).__name__}: {exc}", file=sys.stderr,
                  flush=True)
            continue
        if ids:
            out[schedule["name"]] = ids
    return out


def run_now(store, name: str, actor: str) -> str:
    """Submit one job of schedule ``name`` now, outside its slots (no idempotency key); the
    schedule's ``last_slot`` does not move.  Returns the job ID."""
    from .job import new_id

    schedule = store.get_schedule(name)
    spec = job_spec(schedule, None)
    spec["id"] = new_id()
    spec["note"] = "run-now"
    ids = store.fire_schedule(name, None, None, [(None, spec)], [], actor)
    return ids[0]


# --- backfill -------------------------------------------------------------------------------------------------
#: most slots one backfill runs unless told otherwise
BACKFILL_LIMIT = 100


def parse_when(text: Any, tz: str, what: str, end: bool = False) -> float:
    """Epoch seconds of a ``--from``/``--to`` value: ``2025-03-01`` (a day in the schedule's zone: its
    start, or with ``end`` its last instant, so a day given as ``--to`` is included), an ISO 8601
    time (``2025-03-01T06:30``, in the schedule's zone unless it has an offset) or epoch seconds.

    >>> parse_when("2025-03-09", "America/New_York", "--from")
    1741496400.0
    >>> round(parse_when("2025-03-09", "UTC", "--to", end=True) - parse_when("2025-03-09", "UTC", "--from"), 3)
    86399.999
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    value = str(text).strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{what} {text!r} is not a date or time; write it like 2025-03-01 or 2025-03-01T06:30 "
                       "(in the schedule's time zone unless it has an offset like +01:00)") from None
    day_only = len(value) == 10
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_zone(tz))
    if day_only and end:
        nxt = (parsed.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=parsed.tzinfo)
        return nxt.timestamp() - 0.001
    return parsed.timestamp()


def backfill_slots(schedule: dict[str, Any], start: float, end: float, now: float,
                   limit: int = BACKFILL_LIMIT) -> list[float]:
    """The schedule's slots ``start <= slot <= end``, oldest first; `BadInput` for a range that ends
    in the future, is empty the wrong way round, or holds more than ``limit`` slots."""
    if end < start:
        raise BadInput("--to is before --from; give the earlier time first")
    if end > now:
        raise BadInput("backfill runs past slots only; give a --to that is not later than now")
    slots = slots_between(schedule["cron"], schedule["tz"], start - 1e-6, end, limit=limit + 1)
    if len(slots) > limit:
        raise BadInput(f"more than {limit} slots of {schedule['cron']!r} lie in that range; narrow it, or raise "
                       f"--limit to run them all")
    return slots


def backfill(store, name: str, start: float, end: float, actor: str, now: float | None = None,
             limit: int = BACKFILL_LIMIT) -> list[tuple[float, str, bool]]:
    """Run the past slots ``start <= slot <= end`` of schedule ``name``, each a job with its own
    slot time (`SLOT_PARAMETER`) and the slot's idempotency key, like a fire's: a slot that fired or
    was backfilled before gets no second job, so a backfill can be repeated.  The schedule's
    ``last_slot`` does not move.  Returns ``(slot, job ID, created)`` per slot, oldest first."""
    from .job import new_id

    now = time.time() if now is None else now
    schedule = store.get_schedule(name)
    fires = []
    for slot in backfill_slots(schedule, start, end, now, limit):
        spec = job_spec(schedule, slot)
        spec["id"] = new_id()
        spec["note"] = "backfill"
        fires.append((slot, spec))
    return store.backfill_schedule(name, fires, actor, now) if fires else []


# --- text: nbjobs/text.py (re-exported here, where they were) ------------------------------------------------
from .text import schedule_text, schedules_table  # noqa: E402


__all__ = ["check_cron", "check_tz", "check_name", "next_fire", "next_fires", "slots_between", "misfire_plan",
           "overlap_plan", "plan", "fire_due", "tick", "run_now", "fmt_slot", "slot_iso", "SLOT_PARAMETER",
           "takes_parameters", "job_spec", "backfill", "backfill_slots", "parse_when", "MISFIRE_POLICIES",
           "OVERLAP_POLICIES", "schedule_text", "schedules_table"]
