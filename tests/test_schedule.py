"""Cron schedules (nbjobs/schedule.py): parsing, time zones and DST, the firer with an injected
clock (a simulated day, 200 slots raced by two firers, misfire after downtime, overlap), the
firer lease, and real worker processes firing and taking over the lease."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import pytest

import nbjobs
from support.cli import nbj_here
from support.procs import start_worker, stop_worker, wait_for
from nbjobs import schedule as sch
from nbjobs.errors import BadInput
from nbjobs.job import State
from nbjobs.store import Store
from support.loaders import lease_holder


def utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


T0 = utc(2026, 1, 5, 0, 0)   # a Monday, no DST anywhere near


def add(name="s", cron="0 * * * *", now=T0, **kw) -> dict:
    kw.setdefault("start_worker", False)
    return nbjobs.schedule_add(name, cron, code=kw.pop("code", "x = 1"), now=now, **kw)


def jobs_of(store: Store, name: str) -> list:
    return sorted((r for r in store.list_jobs(limit=None) if r.options.get("schedule") == name),
                  key=lambda r: (r.options.get("slot") or 0, r.submitted_at))


def actions(store: Store, name: str) -> list[str]:
    return [e["action"] for e in reversed(store.schedule_events(name, 10_000))]


# --- parsing and bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("kw,needle", [
    (dict(cron="61 * * * *"), "is not valid"),
    (dict(cron="0 0 * * * *"), "has 6 fields, not 5"),
    (dict(cron="@fortnightly"), "alias '@fortnightly' is unknown"),
    (dict(cron="0 0 30 2 *"), "never fires"),
    (dict(tz="Mars/Olympus_Mons"), "time zone 'Mars/Olympus_Mons' is unknown"),
    (dict(tz="../etc/passwd"), "is unknown"),
    (dict(name="two words"), "is not usable"),
    (dict(misfire="sometimes"), "misfire policy 'sometimes' is unknown"),
    (dict(overlap="pile"), "overlap policy 'pile' is unknown"),
    (dict(notify="ftp://example.com/x"), "must start with http:// or https://"),
    (dict(notify="http://"), "has no host"),
    (dict(notify="http://example.com:99999/"), "malformed"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(home, kw, needle):
    add("exists")
    args = dict(name="new", cron="0 * * * *")
    args.update(kw)
    with pytest.raises(BadInput, match=needle) as info:
        add(args.pop("name"), args.pop("cron"), **args)
    assert "\n" not in str(info.value)
    assert [s["name"] for s in nbjobs.schedules()] == ["exists"]


def test_existing_name_refused(home):
    add("daily")
    with pytest.raises(BadInput, match="a schedule named 'daily' exists"):
        add("daily", "@daily")
    assert nbjobs.schedule_show("daily")["cron"] == "0 * * * *"


def test_cli_bad_input_exit_2_and_verbs(home, tmp_path):
    env = dict(os.environ, NBJOBS_HOME=str(home))

    def nbj(*args):
        return subprocess.run([sys.executable, "-m", "nbjobs", *args], env=env, capture_output=True, text=True,
                              timeout=60)
    ok = nbj("schedule", "add", "hourly", "@hourly", "-c", "x = 1", "--tz", "Europe/Berlin", "--no-worker")
    assert ok.returncode == 0 and "next:" in ok.stdout, ok.stderr
    for args in (["schedule", "add", "hourly", "@hourly", "-c", "x = 1", "--no-worker"],
                 ["schedule", "add", "b", "99 * * * *", "-c", "x = 1", "--no-worker"],
                 ["schedule", "add", "c", "@daily", "-c", "x = 1", "--tz", "Nowhere/City", "--no-worker"],
                 ["run", "-c", "x = 1", "--notify", "mailto:me@example.com", "--no-worker"],
                 ["schedule", "pause", "nope"]):
        r = nbj_here(*args, home=home)  # the CLI's entry point in this process (tests/support/cli.py)
        assert r.returncode == 2 and r.stderr.startswith("nbjobs: error: ") and r.stderr.count("\n") == 1, r
    conn = sqlite3.connect(home / "nbjobs.db")
    assert conn.execute("SELECT count(*) FROM schedules").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
    ls = nbj("schedule", "ls")
    assert "hourly" in ls.stdout and ls.stdout.count("CET") == 3    # the next three run times
    assert nbj("schedule", "pause", "hourly").returncode == 0
    assert "(paused)" in nbj("schedule", "show", "hourly").stdout
    assert nbj("schedule", "resume", "hourly").returncode == 0
    job_id = nbj("schedule", "run-now", "hourly", "--no-worker").stdout.strip()
    assert "schedule:   hourly (run-now)" in nbj("show", job_id).stdout
    assert nbj("schedule", "rm", "hourly").returncode == 0
    assert "no schedules" in nbj("schedule", "ls").stdout
    for action in ("add", "ls", "show", "pause", "resume", "rm", "run-now"):
        h = nbj_here("schedule", action, "--help", home=home)
        assert h.returncode == 0 and "example:" in h.stdout


def test_aliases_and_next_three_in_a_zone(home):
    d = add("berlin", "@daily", tz="Europe/Berlin")
    # T0 is 01:00 in Berlin: the next local midnight is the next day's
    assert d["next_local"] == ["2026-01-06 00:00 CET", "2026-01-07 00:00 CET", "2026-01-08 00:00 CET"]
    assert d["next"][0] == utc(2026, 1, 5, 23, 0)
    assert sch.next_fires("@hourly", "UTC", T0, 2) == [T0 + 3600, T0 + 7200]
    assert sch.next_fires("*/15 9-17 * * 1-5", "UTC", T0, 1) == [utc(2026, 1, 5, 9, 0)]
    assert sch.check_cron("@Weekly") == "@weekly"


# --- DST -------------------------------------------------------------------------------------------------
NY = "America/New_York"


def test_spring_forward_missing_time_fires_once_shifted_by_the_gap():
    # 2025-03-09: New York clocks jump 02:00 EST -> 03:00 EDT; 02:30 does not exist that day
    slots = sch.next_fires("30 2 * * *", NY, utc(2025, 3, 8, 0, 0), 3)
    assert [sch.fmt_slot(t, NY) for t in slots] == ["2025-03-08 02:30 EST", "2025-03-09 03:30 EDT",
                                                    "2025-03-10 02:30 EDT"]
    assert slots[1] == utc(2025, 3, 9, 7, 30)
    # Berlin, 2025-03-30: 02:00 CET -> 03:00 CEST
    berlin = sch.next_fires("30 2 * * *", "Europe/Berlin", utc(2025, 3, 29, 12, 0), 2)
    assert berlin == [utc(2025, 3, 30, 1, 30), utc(2025, 3, 31, 0, 30)]


def test_fall_back_repeated_time_fires_once_at_its_first_occurrence():
    # 2025-11-02: New York clocks go back 02:00 EDT -> 01:00 EST; 01:30 happens twice
    slots = sch.next_fires("30 1 * * *", NY, utc(2025, 11, 1, 12, 0), 3)
    assert [sch.fmt_slot(t, NY) for t in slots] == ["2025-11-02 01:30 EDT", "2025-11-03 01:30 EST",
                                                    "2025-11-04 01:30 EST"]
    # the firer after the first 01:30 (say at the second 01:15) does not fire it again
    assert sch.next_fire("30 1 * * *", NY, utc(2025, 11, 2, 6, 15)) == utc(2025, 11, 3, 6, 30)


@pytest.mark.parametrize("day,hours", [((2025, 3, 9), 23), ((2025, 11, 2), 25), ((2025, 6, 1), 24)])
def test_half_hourly_over_dst_days_is_strictly_increasing(day, hours):
    start = datetime(*day, tzinfo=sch._zone(NY)).timestamp()
    end = datetime(*day, tzinfo=sch._zone(NY)).timestamp() + hours * 3600
    slots = sch.slots_between("*/30 * * * *", NY, start - 1, end - 1)
    assert slots == sorted(set(slots))
    assert slots[0] == start
    # each wall-clock time of the day fires once: 23 h -> 46 slots, 25 h -> 48 (the repeated hour
    # fires once), 24 h -> 48
    assert len(slots) == {23: 46, 25: 48, 24: 48}[hours]


def test_simulated_spring_forward_day_fires_each_slot_once(store):
    # 2025-03-09 in New York, midnight EST to midnight EDT: 23 hours, so 23 fires of "30 * * * *"
    add("ny", "30 * * * *", now=utc(2025, 3, 9, 5, 0), tz=NY, overlap="allow")
    t = utc(2025, 3, 9, 5, 0)
    while t < utc(2025, 3, 10, 4, 0):
        t += 60
        sch.tick(store, "w1", now=t)
    slots = [r.options["slot"] for r in jobs_of(store, "ny")]
    assert slots == sorted(set(slots)) and len(slots) == 23 and "misfire_skipped" not in actions(store, "ny")


# --- the firer with an injected clock --------------------------------------------------------------------
def test_fires_each_slot_of_a_simulated_day(store):
    add("q", "*/15 * * * *", overlap="allow")
    t = T0
    fired = {}
    while t < T0 + 86400:
        t += 60
        for name, ids in sch.tick(store, "w1", now=t).items():
            fired.setdefault(name, []).extend(ids)
    jobs = jobs_of(store, "q")
    assert len(jobs) == len(fired["q"]) == 96
    assert [r.options["slot"] for r in jobs] == [T0 + 900 * k for k in range(1, 97)]
    assert {r.idem_key for r in jobs} == {f"schedule:q:{int(T0 + 900 * k)}" for k in range(1, 97)}
    assert all(r.name == "q" and r.state == State.QUEUED for r in jobs)
    assert actions(store, "q") == ["added"] + ["fired"] * 96
    assert nbjobs.schedule_show("q")["fires"] == 96


@pytest.mark.parametrize("use_lease", [False, True])
def test_two_firers_racing_for_200_slots_fire_each_once(home, use_lease):
    add("race", "* * * * *", overlap="allow")
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def firer(holder: str) -> None:
        s = Store(home / "nbjobs.db")
        try:
            for k in range(1, 401):          # one shared simulated clock: every half minute of 200 minutes,
                barrier.wait(30)             # both firers tick at the same instant
                sch.tick(s, holder, now=T0 + 30 * k, use_lease=use_lease, lease=0.0 if not use_lease else 600)
        except BaseException as exc:  # noqa: reported below
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=firer, args=(f"w{i}",)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors
    s = Store(home / "nbjobs.db")
    jobs = jobs_of(s, "race")
    assert len(jobs) == 200
    assert [r.options["slot"] for r in jobs] == [T0 + 60 * k for k in range(1, 201)]
    assert actions(s, "race").count("fired") == 200 and "duplicate" not in actions(s, "race")
    s.close()


@pytest.mark.parametrize("policy,cap,slots,action", [
    ("skip", 10, [], "misfire_skipped"),
    ("once", 10, [5], "misfire_once"),
    ("all", 10, [1, 2, 3, 4, 5], "misfire_all"),
    ("all", 3, [3, 4, 5], "misfire_capped"),
])
def test_misfire_policies_after_simulated_downtime(store, policy, cap, slots, action):
    add("m", "0 * * * *", misfire=policy, misfire_cap=cap, overlap="allow")
    # nothing ran from T0 to 5 h 10 min: five hourly slots were missed
    fired = sch.tick(store, "w1", now=T0 + 5 * 3600 + 600)
    assert [r.options["slot"] for r in jobs_of(store, "m")] == [T0 + 3600 * k for k in slots]
    assert len(fired.get("m", [])) == len(slots)
    ev = store.schedule_events("m")[0]
    assert ev["action"] == action and "5 missed slot(s)" in ev["detail"]
    # the next slot fires normally, on time
    sch.tick(store, "w1", now=T0 + 6 * 3600 + 5)
    assert jobs_of(store, "m")[-1].options["slot"] == T0 + 6 * 3600
    assert actions(store, "m")[-1] == "fired"


def test_long_downtime_of_every_minute_schedule(store):
    add("busy", "* * * * *", misfire="all", misfire_cap=2, overlap="allow")
    now = T0 + 30 * 86400
    sch.tick(store, "w1", now=now)         # 30 days down: 43200 slots, the newest one on time
    # the on-time slot, and the newest two (the cap) of the missed ones
    assert [r.options["slot"] for r in jobs_of(store, "busy")] == [now - 120, now - 60, now]
    assert "+ missed slot(s)" in store.schedule_events("busy")[0]["detail"]


def test_overlap_skip_queue_allow(store):
    for name, overlap in (("skip", "skip"), ("queue", "queue"), ("allow", "allow")):
        add(name, "0 * * * *", overlap=overlap)
    sch.tick(store, "w1", now=T0 + 3600 + 1)            # first fire of each: nothing else runs
    sch.tick(store, "w1", now=T0 + 7200 + 1)            # second: the first is still queued
    assert len(jobs_of(store, "skip")) == 1 and actions(store, "skip")[-1] == "overlap_skipped"
    assert len(jobs_of(store, "allow")) == 2 and jobs_of(store, "allow")[1].state == State.QUEUED
    first, second = jobs_of(store, "queue")
    assert second.state == State.WAITING and store.upstream(second.id) == [first.id]
    assert second.options["after_any"] is True
    # the previous fire ends (failed, even): the queued one runs; skip fires again next slot
    targets = {first.id, jobs_of(store, "skip")[0].id}
    while targets:                                       # run jobs (as failures) until both ended
        rec, n = store.claim("w1")
        store.finish_attempt(rec.id, n, "w1", "error")
        if rec.id == first.id:
            assert store.get(second.id).state == State.QUEUED
        targets.discard(rec.id)
    sch.tick(store, "w1", now=T0 + 3 * 3600 + 1)
    assert len(jobs_of(store, "skip")) == 2


def test_pause_resume_run_now_rm(store):
    add("p", "0 * * * *", overlap="allow")
    nbjobs.schedule_pause("p")
    assert sch.tick(store, "w1", now=T0 + 3 * 3600) == {}
    assert nbjobs.schedule_show("p")["next"] == []
    nbjobs.schedule_resume("p")               # resumes from the real now: paused slots never fire
    assert "misfire_skipped" not in actions(store, "p") and jobs_of(store, "p") == []
    job = nbjobs.schedule_run_now("p", start_worker=False)
    r = job.record
    assert (r.options["schedule"], r.options["slot"], r.idem_key, r.state) == ("p", None, None, State.QUEUED)
    assert nbjobs.schedule_show("p")["last_job_id"] == job.id
    assert actions(store, "p") == ["added", "paused", "resumed", "fired"]
    nbjobs.schedule_rm("p")
    assert nbjobs.schedules() == [] and job.record.state == State.QUEUED   # its jobs stay
    with pytest.raises(BadInput, match="no schedule named 'p'"):
        nbjobs.schedule_show("p")


def test_firer_lease_one_holder_and_takeover(store):
    add("l", "0 * * * *", overlap="allow")
    assert store.take_lease("firer", "A", 10, now=T0 + 3590)
    assert sch.tick(store, "B", now=T0 + 3595, lease=10) == {}           # A holds it (until + 3600 ...)
    assert store.take_lease("firer", "A", 10, now=T0 + 3599)             # ... renewed by A (until + 3609)
    assert sch.tick(store, "B", now=T0 + 3605, lease=10) == {}           # the slot at + 3600 is A's to fire
    assert list(sch.tick(store, "B", now=T0 + 3611, lease=10)) == ["l"]  # A died: B takes over
    assert lease_holder(store, "firer", now=T0 + 3612) == "B"
    assert not store.take_lease("firer", "A", 10, now=T0 + 3612)


def test_pure_plans():
    assert sch.misfire_plan([10.0], [], 0, "skip") == ([10.0], [])
    fires, notes = sch.misfire_plan([10.0], [5.0], 1, "once")
    assert fires == [10.0] and notes[0][1] == "misfire_coalesced"
    assert sch.overlap_plan("queue", False, 3) == ["fire", "queue", "queue"]
    assert sch.overlap_plan("allow", True, 2) == ["fire", "fire"]
    assert sch.overlap_plan("skip", False, 0) == []


# --- real worker processes -------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_workers_fire_and_take_over_the_firer_lease(home):
    env = {"NBJOBS_FIRER_LEASE": "1.5"}
    w1 = start_worker(home, env=env)
    w2 = start_worker(home, env=env)
    s = Store(home / "nbjobs.db")
    try:
        assert lease_holder(s, "firer") is None         # no schedules: nobody fires, no lease writes
        nbjobs.schedule_add("yearly", "@yearly", code="x = 1", start_worker=False)
        holder = wait_for(lambda: lease_holder(s, "firer"), 30, "a firer")
        workers = {w["id"]: w["pid"] for w in s.live_workers()}
        assert holder in workers
        first, other = (w1, w2) if workers[holder] == w1.pid else (w2, w1)
        os.kill(first.pid, signal.SIGKILL)        # the firer dies without a word
        first.wait(30)
        new = wait_for(lambda: (h := lease_holder(s, "firer")) not in (None, holder) and h, 30, "a new firer")
        assert workers[new] == other.pid
        # a schedule whose last hour was missed: misfire=once fires one job at once, which the worker runs
        nbjobs.schedule_add("catchup", "* * * * *", code="import nbjobs\nnbjobs.record('ok', 1)",
                            now=time.time() - 3600, start_worker=False)
        job_id = wait_for(lambda: nbjobs.schedule_show("catchup")["last_job_id"], 30, "the catch-up fire")
        job = nbjobs.get(job_id).wait(120)
        assert job.state == State.SUCCEEDED and job.result() == {"ok": 1}
        events = nbjobs.schedule_show("catchup")["events"]
        done = {e["action"] for e in events}
        # the missed hour ran once: alone (misfire_once) or with the on-time slot (misfire_coalesced)
        assert done >= {"added", "fired"} and done & {"misfire_once", "misfire_coalesced"}
        assert "59 missed slot(s)" in " ".join(e["detail"] or "" for e in events) or \
            "60 missed slot(s)" in " ".join(e["detail"] or "" for e in events)
    finally:
        s.close()
        for w in (w1, w2):
            stop_worker(w)


def test_job_schedule_magic(home, tmp_path, monkeypatch):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    from support.shell import new_shell, ok

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    shell = new_shell()
    try:
        shown = ok(shell, '%job schedule add cells "*/5 * * * *" -c "x = 1" --tz Europe/Berlin --overlap queue '
                          '--no-worker')
        assert "name:       cells" in repr(shown) and "overlap: queue" in repr(shown)
        assert "cells" in repr(ok(shell, "%job schedule ls"))
        job = ok(shell, "%job schedule run-now cells --no-worker")
        assert job.record.options["schedule"] == "cells" and job.record.source == "x = 1"
        assert "(paused)" in repr(ok(shell, "%job schedule pause cells"))
        for line in ('%job schedule add bad "0 0 * *" -c "x = 1" --no-worker', "%job schedule show nope",
                     '%job schedule add cells "@daily" -c "x = 1" --no-worker'):
            result = shell.run_cell(line, store_history=True)
            assert isinstance(result.error_in_exec, UsageError) and "\n" not in str(result.error_in_exec), line
        assert [s["name"] for s in nbjobs.schedules()] == ["cells"]
        ok(shell, "%job schedule rm cells")
        assert nbjobs.schedules() == []
    finally:
        InteractiveShell.clear_instance()
