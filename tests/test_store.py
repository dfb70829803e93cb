"""The SQLite store (nbjobs/store/): schema and migrations, IDs, the queue, and user actions.

Real database files in tmp_path; the races use real OS processes (multiprocessing, spawn).
"""
from __future__ import annotations

import calendar
import importlib.util
import json
import multiprocessing
import os
import shutil
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from nbjobs import config
from nbjobs.errors import AmbiguousJob, BadInput, ExpiredJob, IllegalTransition, StoreError, UnknownJob
from nbjobs.job import State
from nbjobs.store import MIGRATIONS, SCHEMA_VERSION, Store

DATA = Path(__file__).parent / "data"
ACTOR = "test"


def add(store: Store, **spec) -> str:
    """Insert a cell job; returns its ID."""
    rec, created = store.insert_job({"kind": "cell", "source": "1 + 1", **spec}, actor=ACTOR)
    assert created
    return rec.id


def rows(store: Store, sql: str, *params) -> list[dict]:
    return [dict(r) for r in store.conn.execute(sql, params).fetchall()]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_processes(target, args_list: list[tuple], timeout: float = 60) -> None:
    """Run ``target(*args, barrier)`` in one spawned OS process per ``args``; all must exit 0.

    The barrier (with a timeout) lines them up so they really race; processes are daemons and
    are killed at the deadline, so a crashed racer fails the test instead of hanging it.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(args_list), timeout=20)
    procs = [ctx.Process(target=target, args=(*args, barrier), daemon=True) for args in args_list]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    assert [p.exitcode for p in procs] == [0] * len(procs)


# --- schema ---------------------------------------------------------------------------------------
def test_new_database_schema_and_pragmas(tmp_path):
    home = tmp_path / "a" / "home"  # neither folder exists yet
    s = Store(home / "nbjobs.db")
    assert s.version == SCHEMA_VERSION == len(MIGRATIONS) >= 3
    assert s.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert s.conn.execute("PRAGMA busy_timeout").fetchone()[0] == int(config.BUSY_TIMEOUT * 1000)
    tables = {r["name"] for r in rows(s, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"jobs", "attempt_log", "event_log", "outputs", "workers", "expired", "settings", "deps", "schedules",
                      "schedule_events", "outbox", "leases", "groups",
                      # v8: the search index (FTS5) and its shadow tables
                      "jobs_fts", "jobs_fts_data", "jobs_fts_idx", "jobs_fts_docsize", "jobs_fts_config",
                      # v14: what the index rows of jobs whose text changed hold, until re-indexed
                      "jobs_fts_stale"}
    # v15: the history is read through views with the old tables' names and columns
    assert {r["name"] for r in rows(s, "SELECT name FROM sqlite_master WHERE type = 'view'")} == {"attempts", "events"}
    add(s)  # a write, so the WAL file exists
    assert mode_of(home / "nbjobs.db") == 0o600
    assert mode_of(home / "nbjobs.db-wal") == 0o600
    assert mode_of(home) == 0o700
    assert mode_of(home.parent) == 0o700
    s.close()
    # a second open is a no-op migration
    s2 = Store(home / "nbjobs.db")
    assert s2.version == SCHEMA_VERSION and s2.migrate() == SCHEMA_VERSION
    assert len(s2.list_jobs()) == 1
    s2.close()


def test_existing_home_is_made_private(tmp_path):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    os.chmod(home, 0o755)
    Store(home / "nbjobs.db").close()
    assert mode_of(home) == 0o700


def test_foreign_keys_are_enforced(store):
    with pytest.raises(sqlite3.IntegrityError):  # no job has seq 999
        store.conn.execute("INSERT INTO attempt_log (job, number, started_at) VALUES (999, 1, 0)")
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute("INSERT INTO event_log (job, id, at, to_state) VALUES (999, 1, 0, 'queued')")


def test_insert_defaults(store):
    rec, created = store.insert_job({"kind": "notebook", "notebook": "/x/a.ipynb", "parameters": {"n": 7},
                                     "tags": ["t1", "t2"], "retries": 2, "timeout": 9.5, "priority": 3,
                                     "options": {"o": 1}}, actor="api:me")
    assert created
    assert len(rec.id) == 32 and rec.state is State.QUEUED
    assert rec.name == "job" and rec.parameters == {"n": 7} and rec.tags == ["t1", "t2"]
    assert (rec.retries, rec.timeout, rec.priority, rec.options) == (2, 9.5, 3, {"o": 1})
    assert rec.attempts == 0 and rec.failures == 0 and rec.submitted_by == "api:me"
    assert rec.run_at == rec.submitted_at and rec.started_at is None
    ev = store.events(rec.id)
    assert [(e["from_state"], e["to_state"], e["reason"], e["actor"]) for e in ev] == \
        [(None, "queued", "submitted", "api:me")]


# --- get / resolve ----------------------------------------------------------------------------------
A_ID = "ab" + "00" * 15
B_ID = "ab" + "11" * 15


def test_resolve_unique_prefix(store):
    a = add(store, id=A_ID, name="first")
    b = add(store, id=B_ID, name="second")
    assert store.resolve(A_ID) == a == A_ID
    assert store.resolve("ab0") == A_ID
    assert store.resolve("AB1-1") == B_ID  # case and dashes as in a UUID
    assert store.resolve(" ab11111111 ") == B_ID
    assert store.get(B_ID).name == "second"


def test_resolve_ambiguous_prefix_names_both(store):
    add(store, id=A_ID, name="first")
    add(store, id=B_ID, name="second")
    with pytest.raises(AmbiguousJob) as info:
        store.resolve("ab")
    msg = str(info.value)
    assert "'ab' matches several jobs" in msg
    assert "ab000000 (first)" in msg and "ab111111 (second)" in msg
    assert "give more characters" in msg


def test_resolve_unknown(store):
    add(store, id=A_ID)
    with pytest.raises(UnknownJob) as info:
        store.resolve("abc")
    assert "no job matches 'abc'" in str(info.value) and "nbjobs ls" in str(info.value)
    with pytest.raises(UnknownJob):
        store.get("f" * 32)
    with pytest.raises(UnknownJob):
        store.request_cancel("f" * 32, ACTOR)
    with pytest.raises(BadInput):
        store.resolve("not-hex!")


def test_expired_id_says_expired_with_the_date(store):
    expired_at = calendar.timegm((2024, 3, 5, 12, 0, 0))
    old = "cd" * 16
    store.conn.execute("INSERT INTO expired (id, name, state, submitted_at, expired_at) VALUES (?,?,?,?,?)",
                       (old, "nightly", "succeeded", expired_at - 86400 * 30, expired_at))
    for call in (lambda: store.resolve("cdcd"), lambda: store.resolve(old), lambda: store.get(old),
                 lambda: store.retry(old, ACTOR)):
        with pytest.raises(ExpiredJob) as info:
            call()
        msg = str(info.value)
        assert "expired on 2024-03-05" in msg
        assert msg.startswith("job cdcdcdcd (nightly, succeeded)")
    with pytest.raises(UnknownJob):  # a different prefix is just unknown
        store.resolve("cdce")


# --- idempotency ---------------------------------------------------------------------------------------
def test_same_idempotency_key_returns_the_existing_job(store):
    first, created1 = store.insert_job({"kind": "cell", "source": "a", "idem_key": "k1", "name": "one"}, ACTOR)
    second, created2 = store.insert_job({"kind": "cell", "source": "b", "idem_key": "k1", "name": "two"}, ACTOR)
    assert (created1, created2) == (True, False)
    assert second.id == first.id and second.name == "one" and second.source == "a"
    assert rows(store, "SELECT count(*) AS n FROM jobs")[0]["n"] == 1
    assert len(store.events(first.id)) == 1
    other, created3 = store.insert_job({"kind": "cell", "source": "c", "idem_key": "k2"}, ACTOR)
    assert created3 and other.id != first.id
    # no key: never deduplicated
    add(store, source="a")
    add(store, source="a")
    assert rows(store, "SELECT count(*) AS n FROM jobs")[0]["n"] == 4


def _insert_same_key(path: str, n: int, out: str, barrier) -> None:
    s = Store(path)
    same, rounds = [], []
    barrier.wait()
    for i in range(n):  # the same key, n times
        rec, created = s.insert_job({"kind": "cell", "source": f"x = {i}", "idem_key": "the-key"}, "racer")
        same.append([rec.id, created])
    for i in range(n):  # n rounds, each a fresh key that every process submits at the same moment
        barrier.wait()
        rec, created = s.insert_job({"kind": "cell", "source": "y", "idem_key": f"round-{i}"}, "racer")
        rounds.append([f"round-{i}", rec.id, created])
    Path(out).write_text(json.dumps({"same": same, "rounds": rounds}))
    s.close()


def test_idempotency_key_across_processes(store, tmp_path):
    outs = [tmp_path / f"idem-{i}.json" for i in range(4)]
    run_processes(_insert_same_key, [(str(store.path), 50, str(o)) for o in outs])
    results = [json.loads(o.read_text()) for o in outs]
    same = [r for res in results for r in res["same"]]
    assert len(same) == 200
    assert len({job_id for job_id, _ in same}) == 1
    assert sum(created for _, created in same) == 1
    assert rows(store, "SELECT count(*) AS n FROM jobs WHERE idem_key = 'the-key'")[0]["n"] == 1

    rounds = [r for res in results for r in res["rounds"]]
    assert len(rounds) == 200
    for i in range(50):
        got = [(job_id, created) for key, job_id, created in rounds if key == f"round-{i}"]
        assert len(got) == 4
        assert len({job_id for job_id, _ in got}) == 1  # all four processes got the same job
        assert sum(created for _, created in got) == 1  # and exactly one of them created it
    assert rows(store, "SELECT count(*) AS n FROM jobs")[0]["n"] == 51
    assert rows(store, "SELECT count(*) AS n FROM events")[0]["n"] == 51


def _open_new_databases(paths: list[str], out: str, barrier) -> None:
    results = []
    for path in paths:
        barrier.wait()
        try:
            s = Store(path)
            results.append([s.version, s.conn.execute("PRAGMA journal_mode").fetchone()[0]])
            s.close()
        except Exception as exc:  # report, do not die: the parent shows what went wrong
            results.append([type(exc).__name__, str(exc)])
    Path(out).write_text(json.dumps(results))


def test_processes_opening_a_new_database_at_once(tmp_path):
    """Several processes creating the same new database (e.g. a worker and a CLI on a fresh home)
    all get a migrated WAL database; none fails with 'database is locked'."""
    paths = [str(tmp_path / f"home{i}" / "nbjobs.db") for i in range(12)]
    outs = [tmp_path / f"open-{i}.json" for i in range(4)]
    run_processes(_open_new_databases, [(paths, str(o)) for o in outs])
    results = [r for o in outs for r in json.loads(o.read_text())]
    assert results == [[SCHEMA_VERSION, "wal"]] * 48
    for path in paths:
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# --- claim ------------------------------------------------------------------------------------------
def test_claim_order_priority_then_submission_time(store):
    # IDs sort opposite to submission order, so ordering by ID would fail this test
    ids = {}
    for n, (name, prio) in enumerate([("a", 0), ("b", 5), ("c", 0), ("d", 5), ("e", -1), ("f", 0)]):
        ids[name] = add(store, id=f"{15 - n:x}" * 32, name=name, priority=prio)
        time.sleep(0.002)
    order = []
    while (claimed := store.claim("w1")) is not None:
        rec, number = claimed
        assert number == 1 and rec.state is State.RUNNING and rec.worker_id == "w1"
        order.append(rec.name)
    assert order == ["b", "d", "a", "c", "f", "e"]


def test_claim_records_attempt_and_event(store):
    job = add(store, kernel="python3", code_hash="abc")
    now = time.time()
    rec, number = store.claim("w1", lease=30, pid=4321, now=now)
    assert rec.id == job and number == 1
    assert rec.lease_until == pytest.approx(now + 30) and rec.started_at == pytest.approx(now)
    assert rec.attempts == 1
    [att] = store.attempts(job)
    assert (att["number"], att["worker_id"], att["pid"], att["outcome"], att["kernel"], att["code_hash"]) == \
        (1, "w1", 4321, "running", "python3", "abc")
    ev = store.events(job)[-1]
    assert (ev["from_state"], ev["to_state"], ev["reason"], ev["actor"]) == ("queued", "running", "attempt 1",
                                                                             "worker:w1")
    assert store.claim("w2") is None  # nothing else is queued


def test_finish_and_claim_writes_what_finish_then_claim_write(store):
    """One transaction ends the held attempt and claims the next job: the same job, attempt and event
    rows as `finish_attempt` then `claim`, at one moment; a stale end still frees the slot."""
    a, b, c = add(store, name="a"), add(store, name="b", kernel="python3"), add(store, name="c")
    rec, n = store.claim("w1", lease=30)
    state, (nxt, m) = store.finish_and_claim(a, n, "w1", "succeeded", output_path="/runs/a.ipynb", log_tail="ok\n",
                                             outputs=[{"name": "x", "kind": "json", "value": "1"}], lease=30, pid=77)
    assert (state, nxt.id, m, nxt.state, nxt.worker_id) == ("succeeded", b, 1, State.RUNNING, "w1")
    done = store.get(a)
    assert done.state is State.SUCCEEDED and done.output_path == "/runs/a.ipynb"
    assert rows(store, "SELECT log_tail FROM jobs WHERE id = ?", a) == [{"log_tail": "ok\n"}]
    assert [o["name"] for o in store.outputs(a)] == ["x"]
    [att_a], [att_b] = store.attempts(a), store.attempts(b)
    assert att_a["outcome"] == "succeeded"
    assert (att_b["outcome"], att_b["pid"], att_b["kernel"]) == ("running", 77, "python3")
    end, claimed = store.events(a)[-1], store.events(b)[-1]
    assert (end["from_state"], end["to_state"], claimed["from_state"], claimed["to_state"]) == \
        ("running", "succeeded", "queued", "running")
    assert end["at"] == claimed["at"] == att_b["started_at"] == att_a["finished_at"]  # one transaction, one moment
    # a late end (another worker holds the job now) is ignored, and the slot still gets the next job
    state, (nxt, m) = store.finish_and_claim(b, m, "w-late", "succeeded")
    assert (state, nxt.id, nxt.worker_id) == (None, c, "w-late")
    assert store.get(b).state is State.RUNNING and store.get(b).worker_id == "w1"
    state, claimed = store.finish_and_claim(c, 1, "w-late", "error", error={"type": "E", "message": "m"})
    assert (state, claimed) == ("failed", None)  # nothing left to claim
    assert [e["to_state"] for e in store.events(c)] == ["queued", "running", "failed"]


def test_claim_passes_over_jobs_whose_resources_nobody_offers(store):
    gpu = add(store, name="gpu", resources={"GPU": 1.0})
    plain = add(store, name="plain")
    assert store.get(gpu).resources == {"GPU": 1.0} and store.get(plain).resources == {}
    rec, _ = store.claim("local")  # offers nothing (the local executor): the older GPU job is passed over
    assert rec.id == plain
    assert store.claim("local") is None and store.get(gpu).state is State.QUEUED and store.get(gpu).attempts == 0
    assert store.claim("dask", offers=[{"GPU": 0.5}, {"MEM": 8.0}]) is None
    rec, number = store.claim("dask", offers=[{}, {"GPU": 2.0, "MEM": 8.0}])
    assert (rec.id, number, rec.resources) == (gpu, 1, {"GPU": 1.0})


def test_retrying_job_waits_for_its_run_at(store):
    job = add(store, retries=1)
    t0 = time.time()
    rec, n = store.claim("w1", lease=10, now=t0)
    assert store.finish_attempt(job, n, "w1", "error", error={"type": "ValueError", "message": "boom"}) == "retrying"
    rec = store.get(job)
    assert rec.state is State.RETRYING and rec.failures == 1 and rec.reason == "error"
    assert rec.error_type == "ValueError" and rec.error_message == "boom"
    assert store.claim("w2", now=rec.run_at - 0.01) is None
    claimed = store.claim("w2", now=rec.run_at)
    assert claimed is not None and claimed[1] == 2 and claimed[0].worker_id == "w2"
    assert store.events(job)[-1]["from_state"] == "retrying"


def test_retrying_job_in_the_future_is_not_claimable(store):
    job = add(store, retries=1)
    t0 = time.time()
    store.claim("w1", lease=10, now=t0)
    assert store.reclaim_expired("reaper", now=t0 + 3600) == [(job, "retrying")]
    run_at = store.get(job).run_at
    assert run_at >= t0 + 3600
    later = add(store, name="later")
    rec, _ = store.claim("w2")  # the retrying job is not due: the newer queued job goes first
    assert rec.id == later
    assert store.claim("w2") is None
    assert store.claim("w2", now=t0 + 1800) is None
    rec, number = store.claim("w2", now=run_at + 0.001)
    assert rec.id == job and number == 2


# --- THE RACE -------------------------------------------------------------------------------------------
def _race_worker(path: str, worker_id: str, out: str, merged: bool, barrier) -> None:
    """Claim and finish until the queue is empty; ``merged``: as the worker does, each end and the
    next claim in one transaction (`Store.finish_and_claim`), else two calls."""
    s = Store(path)
    claimed, states = [], []
    barrier.wait()
    got = s.claim(worker_id)
    while got is not None:
        rec, number = got
        claimed.append([rec.id, number])
        # the job's run, as in a worker: the write lock is free meanwhile (without it one process
        # can take the lock back at every commit, before the others' busy handlers retry)
        time.sleep(0.001)
        if merged:
            state, got = s.finish_and_claim(rec.id, number, worker_id, "succeeded")
        else:
            state, got = s.finish_attempt(rec.id, number, worker_id, "succeeded"), s.claim(worker_id)
        states.append(state)
    Path(out).write_text(json.dumps({"claimed": claimed, "states": states}))
    s.close()


@pytest.mark.slow
def test_race_500_jobs_4_processes_each_claimed_exactly_once(store, tmp_path):
    ids = [add(store, name=f"job{i}") for i in range(500)]
    outs = [tmp_path / f"race-{i}.json" for i in range(4)]
    run_processes(_race_worker, [(str(store.path), f"w{i}", str(o), i % 2 == 0) for i, o in enumerate(outs)])
    results = [json.loads(o.read_text()) for o in outs]
    claimed = [job_id for r in results for job_id, _ in r["claimed"]]
    assert len(claimed) == 500
    assert sorted(claimed) == sorted(ids)  # every job claimed, none twice
    assert {n for r in results for _, n in r["claimed"]} == {1}
    assert {s for r in results for s in r["states"]} == {"succeeded"}
    assert sum(1 for r in results if r["claimed"]) >= 2  # the processes really competed

    assert store.counts()["succeeded"] == 500
    assert sum(store.counts().values()) == 500
    att = rows(store, "SELECT job_id, number, outcome, worker_id FROM attempts")
    assert len(att) == 500
    assert {a["number"] for a in att} == {1} and {a["outcome"] for a in att} == {"succeeded"}
    assert len({a["job_id"] for a in att}) == 500
    who = {job_id: f"w{i}" for i, r in enumerate(results) for job_id, _ in r["claimed"]}
    assert all(who[a["job_id"]] == a["worker_id"] for a in att)
    ev = rows(store, "SELECT job_id, from_state, to_state FROM events ORDER BY id")
    assert len(ev) == 1500
    per_job: dict[str, list] = {}
    for e in ev:
        per_job.setdefault(e["job_id"], []).append((e["from_state"], e["to_state"]))
    assert len(per_job) == 500
    assert all(seq == [(None, "queued"), ("queued", "running"), ("running", "succeeded")]
               for seq in per_job.values())


# --- finishing, fencing, reclaim ------------------------------------------------------------------------
def test_finish_attempt_success_records_outputs(store):
    job = add(store)
    rec, n = store.claim("w1")
    state = store.finish_attempt(job, n, "w1", "succeeded", output_path="/runs/x/attempt-1.ipynb",
                                 outputs=[{"name": "answer", "kind": "json", "value": "42", "size": 2,
                                           "type_name": "builtins.int"}])
    assert state == "succeeded"
    rec = store.get(job)
    assert rec.state is State.SUCCEEDED and rec.reason is None and rec.worker_id is None
    assert rec.finished_at is not None and rec.output_path == "/runs/x/attempt-1.ipynb"
    [out] = store.outputs(job)
    assert (out["name"], out["kind"], out["value"], out["attempt"]) == ("answer", "json", "42", 1)
    [att] = store.attempts(job)
    assert att["outcome"] == "succeeded" and att["finished_at"] is not None
    # the same attempt cannot finish twice
    assert store.finish_attempt(job, n, "w1", "error") is None
    assert store.get(job).state is State.SUCCEEDED


def test_error_without_retries_fails(store):
    job = add(store, retries=0)
    _, n = store.claim("w1")
    err = {"type": "ZeroDivisionError", "message": "division by zero", "cell": 3, "traceback": "tb"}
    assert store.finish_attempt(job, n, "w1", "error", error=err) == "failed"
    rec = store.get(job)
    assert (rec.state, rec.reason, rec.failures) == (State.FAILED, "error", 1)
    assert (rec.error_type, rec.error_message, rec.error_cell, rec.error_traceback) == \
        ("ZeroDivisionError", "division by zero", 3, "tb")
    assert store.attempts(job)[0]["error_cell"] == 3


def test_timeout_outcome(store):
    job = add(store)
    _, n = store.claim("w1")
    assert store.finish_attempt(job, n, "w1", "timeout") == "timed_out"
    assert store.get(job).reason == "timeout"


def test_unknown_outcome_changes_nothing(store):
    job = add(store)
    _, n = store.claim("w1")
    with pytest.raises(ValueError, match="unknown attempt outcome"):
        store.finish_attempt(job, n, "w1", "exploded")
    rec = store.get(job)
    assert rec.state is State.RUNNING and rec.worker_id == "w1"
    assert store.attempts(job)[0]["outcome"] == "running"


def test_late_finish_after_reclaim_is_ignored(store):
    job = add(store, retries=1)
    t0 = time.time()
    _, n = store.claim("A", lease=30, now=t0)
    assert store.reclaim_expired("reaper", now=t0 + 10) == []  # lease still valid
    assert store.reclaim_expired("reaper", now=t0 + 31) == [(job, "retrying")]
    [att] = store.attempts(job)
    assert att["outcome"] == "worker_lost" and att["error_type"] == "WorkerLost"
    assert "worker A stopped heartbeating" in att["error_message"]
    rec = store.get(job)
    # the system's failure, not the job's: re-queued on the infrastructure budget, retries untouched
    assert (rec.state, rec.reason, rec.failures, rec.infra_failures, rec.worker_id) == \
        (State.RETRYING, "worker_lost", 0, 1, None)
    assert "infrastructure failure 1, not charged to the job" in store.events(job)[-1]["reason"]
    ev = store.events(job)[-1]
    assert (ev["from_state"], ev["to_state"], ev["actor"]) == ("running", "retrying", "reaper")

    # A comes back late: its result is ignored and changes nothing
    assert store.finish_attempt(job, n, "A", "succeeded", outputs=[{"name": "x", "kind": "json", "value": "1"}]) \
        is None
    rec = store.get(job)
    assert rec.state is State.RETRYING and (rec.failures, rec.infra_failures) == (0, 1)
    assert store.attempts(job)[0]["outcome"] == "worker_lost"
    assert store.outputs(job) == []

    # B takes it over; A's stale result still does not count, B's does
    _, n2 = store.claim("B", now=rec.run_at + 1)
    assert n2 == 2
    assert store.finish_attempt(job, n, "A", "succeeded") is None
    assert store.finish_attempt(job, n2, "A", "succeeded") is None  # right number, wrong worker
    assert store.get(job).state is State.RUNNING and store.get(job).worker_id == "B"
    assert store.finish_attempt(job, n2, "B", "succeeded") == "succeeded"
    assert [a["outcome"] for a in store.attempts(job)] == ["worker_lost", "succeeded"]


def test_reclaim_without_retries_requeues_until_the_infrastructure_budget_is_spent(store):
    job = add(store, retries=0)
    t0 = time.time()
    for n in range(1, 4):  # the default budget: 3 re-queues that do not touch retries
        _, number = store.claim("A", lease=5, now=t0)
        assert number == n
        assert store.reclaim_expired("reaper", now=t0 + 6) == [(job, "retrying")]
        assert (store.get(job).failures, store.get(job).infra_failures) == (0, n)
        t0 = store.get(job).run_at
    store.claim("A", lease=5, now=t0)
    assert store.reclaim_expired("reaper", now=t0 + 6) == [(job, "failed")]
    assert "infrastructure budget of 3 spent" in store.events(job)[-1]["reason"]
    assert [d.id for d in store.dead_letters()] == [job]
    rec = store.get(job)
    assert (rec.state, rec.reason, rec.error_type) == (State.FAILED, "worker_lost", "WorkerLost")
    assert rec.finished_at is not None
    assert [a["outcome"] for a in store.attempts(job)] == ["worker_lost"] * 4
    assert store.finish_attempt(job, 4, "A", "succeeded") is None
    assert store.get(job).state is State.FAILED


def test_heartbeat_keeps_the_lease(store):
    job = add(store)
    store.claim("A", lease=1)
    before = store.get(job).lease_until
    time.sleep(0.01)
    assert store.heartbeat("A", lease=100) == 1
    assert store.get(job).lease_until > before + 90
    assert store.reclaim_expired("reaper", now=time.time() + 50) == []
    assert store.heartbeat("nobody") == 0


# --- cancel / retry / release -------------------------------------------------------------------------
def test_cancel_queued_is_immediate(store):
    job = add(store)
    assert store.request_cancel(job, "me") == "cancelled"
    rec = store.get(job)
    assert (rec.state, rec.reason, rec.cancel_requested) == (State.CANCELLED, "cancelled", 1)
    assert rec.finished_at is not None
    assert store.claim("w1") is None
    ev = store.events(job)[-1]
    assert (ev["from_state"], ev["to_state"], ev["actor"]) == ("queued", "cancelled", "me")


def test_cancel_running_is_a_request(store):
    job = add(store, retries=3)
    _, n = store.claim("w1")
    assert store.cancel_requests("w1") == []
    assert store.request_cancel(job, "me") == "running"
    assert store.request_cancel(job, "me") == "running"  # asking twice records one request
    rec = store.get(job)
    assert rec.state is State.RUNNING and rec.cancel_requested == 1
    assert store.cancel_requests("w1") == [job]
    assert store.cancel_requests("w2") == []
    assert [e["reason"] for e in store.events(job)].count("cancel requested") == 1
    # the worker stops the kernel; whatever error that gives, the job ends cancelled (not retried)
    assert store.finish_attempt(job, n, "w1", "error") == "cancelled"
    rec = store.get(job)
    assert (rec.state, rec.reason, rec.failures) == (State.CANCELLED, "cancelled", 0)
    assert store.attempts(job)[0]["outcome"] == "cancelled"


def test_cancel_running_that_succeeds_anyway_stays_succeeded(store):
    job = add(store)
    _, n = store.claim("w1")
    store.request_cancel(job, "me")
    assert store.finish_attempt(job, n, "w1", "succeeded") == "succeeded"


def test_cancel_retrying_is_immediate(store):
    job = add(store, retries=2)
    _, n = store.claim("w1")
    store.finish_attempt(job, n, "w1", "error")
    assert store.request_cancel(job, "me") == "cancelled"
    assert store.get(job).state is State.CANCELLED


@pytest.mark.parametrize("outcome,state", [("succeeded", "succeeded"), ("error", "failed"),
                                           ("timeout", "timed_out")])
def test_cancel_finished_job_is_illegal(store, outcome, state):
    job = add(store)
    _, n = store.claim("w1")
    store.finish_attempt(job, n, "w1", outcome)
    events_before = len(store.events(job))
    with pytest.raises(IllegalTransition, match=f"already {state}; there is nothing to cancel"):
        store.request_cancel(job, "me")
    assert store.get(job).state.value == state
    assert len(store.events(job)) == events_before


def test_retry_failed_job_continues_attempt_numbers(store):
    job = add(store, retries=0)
    _, n = store.claim("w1")
    assert store.finish_attempt(job, n, "w1", "error", error={"type": "E", "message": "m"}) == "failed"
    store.retry(job, "me")
    rec = store.get(job)
    assert (rec.state, rec.reason, rec.failures, rec.finished_at) == (State.QUEUED, "retried", 0, None)
    assert store.events(job)[-1]["from_state"] == "failed" and store.events(job)[-1]["to_state"] == "queued"
    rec, n2 = store.claim("w2")
    assert rec.id == job and n2 == 2 and rec.attempts == 2
    assert [a["number"] for a in store.attempts(job)] == [1, 2]
    assert store.finish_attempt(job, n2, "w2", "succeeded") == "succeeded"
    rec = store.get(job)
    assert rec.state is State.SUCCEEDED and rec.error_type is None


def test_retry_cancelled_job(store):
    job = add(store)
    store.request_cancel(job, "me")
    store.retry(job, "me")
    rec = store.get(job)
    assert rec.state is State.QUEUED and rec.cancel_requested == 0
    assert store.claim("w1")[1] == 1


@pytest.mark.parametrize("setup,message", [
    ("succeeded", "is succeeded, so it cannot be retried (it succeeded; submit it again to rerun)"),
    ("queued", "is queued, so it cannot be retried (wait for it to end)"),
    ("running", "is running, so it cannot be retried (wait for it to end)"),
])
def test_retry_illegal(store, setup, message):
    job = add(store)
    if setup != "queued":
        _, n = store.claim("w1")
        if setup == "succeeded":
            store.finish_attempt(job, n, "w1", "succeeded")
    with pytest.raises(IllegalTransition, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.retry(job, "me")
    assert store.get(job).state.value == setup


def test_release_requeues_without_counting_a_failure(store):
    job = add(store, retries=2)
    _, n1 = store.claim("w1")
    store.finish_attempt(job, n1, "w1", "error")
    rec, n2 = store.claim("w1", now=store.get(job).run_at)
    assert n2 == 2 and rec.failures == 1
    assert store.release(job, n2, "w2") is False  # not w2's job
    assert store.release(job, n1, "w1") is False  # an old attempt
    assert store.release(job, n2, "w1", why="worker stopping") is True
    rec = store.get(job)
    assert (rec.state, rec.reason, rec.failures, rec.worker_id) == (State.QUEUED, "released", 1, None)
    assert [a["outcome"] for a in store.attempts(job)] == ["error", "released"]
    ev = store.events(job)[-1]
    assert (ev["from_state"], ev["to_state"], ev["reason"]) == ("running", "queued", "worker stopping")
    assert store.release(job, n2, "w1") is False  # only once
    _, n3 = store.claim("w3")
    assert n3 == 3
    assert store.finish_attempt(job, n2, "w1", "succeeded") is None  # the released attempt is fenced off


# --- every state change is checked against the lifecycle -------------------------------------------------
def test_a_state_change_the_lifecycle_forbids_raises_and_writes_nothing(store):
    job = add(store)
    _, n = store.claim("w1")
    assert store.finish_attempt(job, n, "w1", "succeeded") == "succeeded"
    before = rows(store, "SELECT * FROM jobs"), rows(store, "SELECT * FROM events")
    with pytest.raises(IllegalTransition, match="a succeeded job cannot become running"):
        with store._tx() as conn:
            store._move(conn, job, State.SUCCEEDED, State.RUNNING, "forced", ACTOR, time.time())
    assert (rows(store, "SELECT * FROM jobs"), rows(store, "SELECT * FROM events")) == before
    with store._tx() as conn:  # a legal move of a job no longer in ``old``: nothing written, False
        assert store._move(conn, job, State.RUNNING, State.QUEUED, "late", ACTOR, time.time()) is False
    assert (rows(store, "SELECT * FROM jobs"), rows(store, "SELECT * FROM events")) == before


def test_only_the_checked_helper_writes_a_job_state():
    """Every ``UPDATE jobs SET ... state = ...`` of the store is in `RecordsMixin._move` (records.py),
    which checks `job.check_transition` and records the event; the other modules call it."""
    import ast
    import re

    import nbjobs.store

    writers = set()
    for path in Path(nbjobs.store.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else \
                "".join(v.value for v in node.values if isinstance(v, ast.Constant)) \
                if isinstance(node, ast.JoinedStr) else ""
            for sets in re.findall(r"UPDATE jobs SET (.*?)(?: WHERE|$)", text, re.S):
                if re.search(r"(^|,)\s*state\s*=", sets):
                    writers.add((path.name, sets.split(",")[0]))
    assert writers == {("records.py", "state = ?")}


# --- listing ---------------------------------------------------------------------------------------------
def test_list_jobs_filters_newest_first(store):
    ids = {}
    for name, tags in [("train-a", ["ml"]), ("eval", ["ml", "nightly"]), ("train-b", []), ("report", ["nightly"])]:
        ids[name] = add(store, name=name, tags=tags)
        time.sleep(0.002)
    _, n = store.claim("w1")  # train-a
    store.finish_attempt(ids["train-a"], n, "w1", "succeeded")
    _, n = store.claim("w1")  # eval
    store.finish_attempt(ids["eval"], n, "w1", "error")
    store.request_cancel(ids["report"], "me")

    names = lambda recs: [r.name for r in recs]  # noqa: E731
    assert names(store.list_jobs()) == ["report", "train-b", "eval", "train-a"]
    assert names(store.list_jobs(limit=2)) == ["report", "train-b"]
    assert names(store.list_jobs(limit=None)) == ["report", "train-b", "eval", "train-a"]
    assert names(store.list_jobs(state="queued")) == ["train-b"]
    assert names(store.list_jobs(state=["succeeded", "failed"])) == ["eval", "train-a"]
    assert names(store.list_jobs(state=[State.CANCELLED])) == ["report"]
    assert names(store.list_jobs(name="train*")) == ["train-b", "train-a"]
    assert names(store.list_jobs(name="train")) == []  # no wildcard: exact
    assert names(store.list_jobs(name="eval")) == ["eval"]
    assert names(store.list_jobs(tag="ml")) == ["eval", "train-a"]
    assert names(store.list_jobs(tag="nightly")) == ["report", "eval"]
    assert names(store.list_jobs(tag="m")) == []  # a tag matches whole
    assert names(store.list_jobs(state="failed", tag="ml", name="e*")) == ["eval"]
    with pytest.raises(ValueError):
        store.list_jobs(state="done")

    assert store.counts() == {"waiting": 0, "queued": 1, "running": 0, "retrying": 0, "succeeded": 1,
                              "failed": 1, "timed_out": 0, "cancelled": 1}


def test_counts_of_an_empty_store(store):
    assert store.counts() == {s.value: 0 for s in State}


def test_workers(store):
    store.register_worker("w1", concurrency=2)
    store.register_worker("w2", concurrency=1, autostarted=True)
    assert [w["id"] for w in store.live_workers()] == ["w1", "w2"]
    store.worker_stopped("w1")
    live = store.live_workers()
    assert [w["id"] for w in live] == ["w2"] and live[0]["autostarted"] == 1 and live[0]["pid"] == os.getpid()
    assert store.live_workers(lease=-1) == []  # a heartbeat older than the lease is not live


# --- broken stores ---------------------------------------------------------------------------------------
def test_corrupt_database_says_move_it_aside(tmp_path):
    path = tmp_path / "nbjobs.db"
    junk = os.urandom(8192)
    path.write_bytes(junk)
    with pytest.raises(StoreError) as info:
        Store(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "is not a readable nbjobs database" in msg and "move it aside" in msg
    assert path.read_bytes() == junk  # left as it was


def test_database_from_a_newer_nbjobs(tmp_path):
    path = tmp_path / "nbjobs.db"
    s = Store(path)
    add(s, name="kept")
    s.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    s.close()
    with pytest.raises(StoreError) as info:
        Store(path)
    msg = str(info.value)
    assert str(path) in msg and f"schema {SCHEMA_VERSION + 5}" in msg
    assert "upgrade nbjobs" in msg and "pip install -U nbjobs" in msg
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 5
    assert conn.execute("SELECT name FROM jobs").fetchall() == [("kept",)]


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_home_that_is_not_writable(tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(StoreError) as info:
            Store(parent / "home" / "nbjobs.db")
        assert "set NBJOBS_HOME to a folder you can write" in str(info.value)
        assert str(parent / "home") in str(info.value)
    finally:
        parent.chmod(0o700)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_database_file_that_is_not_writable(tmp_path):
    path = tmp_path / "nbjobs.db"
    Store(path).close()
    path.chmod(0o400)
    try:
        with pytest.raises(StoreError, match="cannot read and write"):
            Store(path)
    finally:
        path.chmod(0o600)


# --- migration from a v1 database -----------------------------------------------------------------------
def _load_fixture_module():
    spec = importlib.util.spec_from_file_location("make_v1_db", DATA / "make_v1_db.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dump(path: Path, tables) -> dict[str, list[dict]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    # v14 clusters events and attempts by job (no rowid): an order both versions have
    order = {"events": "id", "attempts": "job_id, number"}
    out = {t: [dict(r) for r in conn.execute(f"SELECT * FROM {t} ORDER BY {order.get(t, 'rowid')}")] for t in tables}
    conn.close()
    return out


def test_migrates_a_v1_database(tmp_path):
    v1 = _load_fixture_module()
    fixture = DATA / "nbjobs-v1.db"
    path = tmp_path / "home" / "nbjobs.db"
    path.parent.mkdir()
    shutil.copyfile(fixture, path)
    fixture_bytes = fixture.read_bytes()

    before = _dump(path, v1.TABLES)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 1
    assert before == v1.TABLES  # the fixture holds what make_v1_db.py wrote
    assert len(before["jobs"]) == 2 and len(before["events"]) == 4 and len(before["outputs"]) == 2

    s = Store(path)
    assert s.version == SCHEMA_VERSION
    after = _dump(path, v1.TABLES)
    # every row kept, values unchanged; columns added by later versions hold their defaults
    assert {t: [{k: r[k] for k in before_rows[0]} for r in after[t]] for t, before_rows in before.items()
            if before_rows} == {t: r for t, r in before.items() if r}
    assert [r["acked_at"] for r in after["jobs"]] == [None, None]
    assert [r["resources"] for r in after["jobs"]] == [None, None]  # v9: they need no resources
    assert rows(s, "SELECT name FROM sqlite_master WHERE name = 'expired'") == [{"name": "expired"}]
    assert rows(s, "SELECT count(*) AS n FROM expired") == [{"n": 0}]
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    done = s.get(v1.DONE)
    assert (done.name, done.state, done.tags, done.parameters, done.attempts) == \
        ("daily-report", State.SUCCEEDED, ["reports", "daily"], {"day": "2023-11-14", "n": 7}, 1)
    assert done.runtime == pytest.approx(11.75)  # an attempt from before v9: its claim stands for its beginning
    assert [o["name"] for o in s.outputs(v1.DONE)] == ["table", "total"]
    assert s.attempts(v1.DONE)[0]["versions"] == {"python": "3.11.7", "papermill": "2.6.0"}
    assert s.resolve("5d0c") == v1.DONE
    assert s.resolve("9A1B") == v1.QUEUED
    dup, created = s.insert_job({"kind": "notebook", "notebook": "x", "idem_key": "daily-2023-11-14"}, ACTOR)
    assert (dup.id, created) == (v1.DONE, False)  # the v1 idempotency key still holds

    # the queue works on the migrated file
    rec, n = s.claim("w-new")
    assert (rec.id, n, rec.name, rec.source) == (v1.QUEUED, 1, "train-model", v1.JOBS[1]["source"])
    assert s.finish_attempt(v1.QUEUED, n, "w-new", "succeeded",
                            outputs=[{"name": "r", "kind": "json", "value": "45"}]) == "succeeded"
    assert [e["to_state"] for e in s.events(v1.QUEUED)] == ["queued", "running", "succeeded"]
    assert s.counts()["succeeded"] == 2
    new_id = add(s, name="after-migration")
    assert s.get(new_id).state is State.QUEUED
    s.close()

    s2 = Store(path)  # reopening: already current, nothing to do
    assert s2.version == SCHEMA_VERSION and s2.counts()["succeeded"] == 2 and s2.counts()["queued"] == 1
    s2.close()
    assert fixture.read_bytes() == fixture_bytes  # the committed fixture is never touched


def _home_before(path: Path, migration) -> sqlite3.Connection:
    """A database at the version before ``migration`` (an entry of MIGRATIONS), in an open transaction."""
    from nbjobs.store.connection import apply_migrations

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    apply_migrations(conn, 0, MIGRATIONS.index(migration))
    return conn


def test_migration_turns_the_kernel_warm_flag_into_the_kernel_path(tmp_path):
    """v12: an older home's attempts keep how their kernel came (1: warm, 0: cold, NULL: unknown), and the
    search index follows a change of an indexed value, not an UPDATE that leaves it as it was."""
    path = tmp_path / "nbjobs.db"
    from nbjobs.store.schema import migrate_v12_kernel_path

    conn = _home_before(path, migrate_v12_kernel_path)
    job = "a" * 32
    conn.execute("INSERT INTO jobs (id, name, kind, state, submitted_at, run_at, updated_at) "
                 "VALUES (?, 'old', 'cell', 'succeeded', 1, 1, 1)", (job,))
    conn.executemany("INSERT INTO attempts (job_id, number, started_at, kernel_warm) VALUES (?,?,?,?)",
                     [(job, 1, 1.0, 1), (job, 2, 2.0, 0), (job, 3, 3.0, None)])
    conn.execute("COMMIT")
    conn.close()
    s = Store(path)
    assert s.version == SCHEMA_VERSION
    assert [(a["number"], a["kernel_path"]) for a in s.attempts(job)] == [(1, "warm"), (2, "cold"), (3, None)]
    assert "kernel_warm" not in s.attempts(job)[0]
    fts = "SELECT count(*) AS n FROM jobs_fts WHERE jobs_fts MATCH ?"
    s.conn.execute("UPDATE jobs SET error_message = NULL, name = 'old' WHERE id = ?", (job,))  # nothing changes
    assert rows(s, "SELECT count(*) AS n FROM jobs_fts_stale") == [{"n": 0}]  # (v14: kept for re-indexing)
    assert rows(s, fts, "old") == [{"n": 1}]
    s.conn.execute("UPDATE jobs SET name = 'renamed' WHERE id = ?", (job,))
    assert s.index_pending() == 1
    assert rows(s, fts, "old") == [{"n": 0}] and rows(s, fts, "renamed") == [{"n": 1}]
    s.close()


def test_migration_v14_keeps_a_v13_homes_events_attempts_and_search(tmp_path):
    """v14: events and attempts rebuilt clustered by job, every row and value kept; the search index
    (built and kept by v13's triggers) still finds the old jobs, and follows their later changes."""
    from nbjobs.store.schema import migrate_v14_lean_queue

    path = tmp_path / "nbjobs.db"
    conn = _home_before(path, migrate_v14_lean_queue)
    done, failed = "d" * 32, "f" * 32
    for job, state, emsg in ((done, "succeeded", None), (failed, "failed", "wombat exploded")):
        conn.execute("INSERT INTO jobs (id, name, kind, state, tags, submitted_at, run_at, updated_at, finished_at, "
                     "attempts, error_message) VALUES (?, ?, 'cell', ?, '[\"legacy\"]', 1, 1, 2, 2, 1, ?)",
                     (job, f"old-{state}", state, emsg))
        conn.execute("INSERT INTO attempts (job_id, number, worker_id, started_at, finished_at, outcome, log_tail, "
                     "kernel_path) VALUES (?, 1, 'w-old', 1.5, 2, ?, 'old tail', 'forked')",
                     (job, "succeeded" if state == "succeeded" else "error"))
    conn.executemany("INSERT INTO events (id, job_id, at, from_state, to_state, reason, actor) VALUES (?,?,?,?,?,?,?)",
                     [(7, done, 1, None, "queued", "submitted", "a"), (9, failed, 1, None, "queued", "submitted", "a"),
                      (12, done, 1.5, "queued", "running", "attempt 1", "w"),
                      (13, failed, 1.5, "queued", "running", "attempt 1", "w"),
                      (20, done, 2, "running", "succeeded", "attempt 1: succeeded", "w"),
                      (21, failed, 2, "running", "failed", "attempt 1: error", "w")])
    conn.execute("COMMIT")
    events_before = [tuple(r) for r in conn.execute("SELECT * FROM events ORDER BY id")]
    attempts_before = [tuple(r) for r in conn.execute("SELECT * FROM attempts ORDER BY job_id")]
    conn.close()

    s = Store(path)
    assert s.version == SCHEMA_VERSION
    assert [tuple(r) for r in s.conn.execute("SELECT * FROM events ORDER BY id")] == events_before
    assert [tuple(r) for r in s.conn.execute("SELECT * FROM attempts ORDER BY job_id")] == attempts_before
    for table in ("event_log", "attempt_log"):  # v15 moved v14's tables, keyed by the job's seq
        sql = s.conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
        assert "WITHOUT ROWID" in sql and "REFERENCES jobs (seq) ON DELETE CASCADE" in sql
    assert [e["id"] for e in s.events(done)] == [7, 12, 20]
    assert sorted(r.name for r in s.search("legacy")) == ["old-failed", "old-succeeded"]  # v13's index rows
    assert s.index_pending() == 0                                           # nothing to add: all indexed
    assert [r.name for r in s.search("wombat")] == ["old-failed"]
    s.retry(failed, ACTOR)                                  # an old indexed job changes: the index follows
    rec, n = s.claim("w-new")
    assert (rec.id, n) == (failed, 2) and s.finish_attempt(failed, 2, "w-new", "succeeded") == "succeeded"
    assert s.search("wombat") == [] and [r.name for r in s.search("legacy")][:2]
    assert [e["id"] for e in s.events(failed)] == [9, 13, 21, 22, 23, 24]  # ids go on within the job
    new = add(s, name="fresh", tags=["legacy"])
    assert len(s.search("legacy")) == 3
    s.prune([done], ACTOR)                                  # deletes cascade through the new tables
    assert rows(s, "SELECT count(*) AS n FROM events WHERE job_id = ?", done) == [{"n": 0}]
    assert rows(s, "SELECT count(*) AS n FROM attempts WHERE job_id = ?", done) == [{"n": 0}]
    assert sorted(r.id for r in s.search("legacy")) == sorted([failed, new])
    assert s.conn.execute("INSERT INTO jobs_fts (jobs_fts) VALUES ('integrity-check')")
    assert s.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    s.close()


def test_migration_v15_keys_history_by_seq_and_keeps_every_row(tmp_path):
    """v15: jobs rebuilt with ``seq`` (its old rowid), history moved to ``event_log`` and
    ``attempt_log`` and read through views as before; the outputs and dependencies that reference
    jobs are not cascaded away by the rebuild; a VACUUM keeps each row with its job; deleting a job
    still takes its history with it."""
    from nbjobs.store.schema import migrate_v15_history_by_seq

    path = tmp_path / "nbjobs.db"
    conn = _home_before(path, migrate_v15_history_by_seq)
    ids = [c * 32 for c in "abcd"]
    for i, job in enumerate(ids):
        conn.execute("INSERT INTO jobs (id, name, kind, state, submitted_at, run_at, updated_at) "
                     "VALUES (?, ?, 'cell', 'queued', ?, ?, ?)", (job, f"j{i}", i, i, i))
        conn.execute("INSERT INTO events (job_id, id, at, to_state, reason) VALUES (?, 1, ?, 'queued', 'submitted')", (job, i))
    conn.execute("DELETE FROM events WHERE job_id = ?", (ids[1],))  # (the cascade, by hand in this transaction)
    conn.execute("DELETE FROM jobs WHERE id = ?", (ids[1],))  # a gap in the rowids
    for job in (ids[2], ids[3]):
        conn.execute("UPDATE jobs SET state = 'failed', attempts = 1, finished_at = 9 WHERE id = ?", (job,))
        conn.execute("INSERT INTO attempts (job_id, number, worker_id, started_at, outcome) VALUES (?, 1, 'w', 5, 'error')",
                     (job,))
    conn.execute("INSERT INTO outputs (job_id, name, kind, value, recorded_at) VALUES (?, 'x', 'scalar', '1', 1)", (ids[2],))
    conn.execute("INSERT INTO deps (job_id, upstream_id) VALUES (?, ?)", (ids[3], ids[2]))
    conn.execute("COMMIT")
    rowid = dict(conn.execute("SELECT id, rowid FROM jobs").fetchall())
    tables = ("events", "attempts", "outputs", "deps")
    before = {t: sorted(map(tuple, conn.execute(f"SELECT * FROM {t}"))) for t in tables}
    assert [len(before[t]) for t in tables] == [3, 2, 1, 1]
    conn.close()

    s = Store(path)
    assert s.version == SCHEMA_VERSION
    assert dict(s.conn.execute("SELECT id, seq FROM jobs").fetchall()) == rowid
    assert {t: sorted(map(tuple, s.conn.execute(f"SELECT * FROM {t}"))) for t in tables} == before
    assert s.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1  # back on after the migration
    rec, n = s.claim("w2")  # the one queued job
    assert rec.id == ids[0] and s.finish_attempt(rec.id, n, "w2", "succeeded") == "succeeded"
    assert [e["to_state"] for e in s.events(rec.id)] == ["queued", "running", "succeeded"]
    s.conn.execute("VACUUM")  # keeps INTEGER PRIMARY KEYs (it may renumber implicit rowids)
    after = {t: sorted(map(tuple, s.conn.execute(f"SELECT * FROM {t}"))) for t in tables}
    assert (after["outputs"], after["deps"]) == (before["outputs"], before["deps"])
    assert [a for a in after["attempts"] if a[0] != ids[0]] == before["attempts"]  # ids[0]'s attempt is new
    assert [(e["job_id"], e["to_state"]) for e in map(dict, s.conn.execute("SELECT * FROM events"))
            if e["job_id"] != ids[0]] == [(ids[2], "queued"), (ids[3], "queued")]
    assert s.prune([ids[2]], ACTOR) == 1  # its events, attempt and output go with it
    assert [rows(s, f"SELECT count(*) AS n FROM {t} WHERE job_id = ?", ids[2]) for t in ("events", "attempts", "outputs")] == \
        [[{"n": 0}]] * 3
    assert s.conn.execute("SELECT count(*) FROM event_log").fetchone()[0] == 4  # ids[0]: 3, ids[3]: 1
    assert s.conn.execute("PRAGMA foreign_key_check").fetchall() == []
    s.close()


def test_the_writes_of_v14_code_still_land_in_the_v15_history(store):
    """A worker still running the code of v14 when a newer nbjobs migrates its home writes to
    ``events`` and ``attempts``, now views: their INSTEAD OF triggers put its rows in the logs.
    The statements are v14's own (`records._event`, `queue._ATTEMPT_INSERT`, the end of an attempt)."""
    job = add(store, name="old-code")
    conn = store.conn
    conn.execute("INSERT INTO events (job_id, id, at, from_state, to_state, reason, actor) VALUES "
                 "(?1, (SELECT COALESCE(MAX(id), 0) + 1 FROM events WHERE job_id = ?1), ?2, ?3, ?4, ?5, ?6)",
                 (job, 5.0, "queued", "running", "attempt 1", "worker:old"))
    conn.execute("INSERT INTO attempts (job_id, number, worker_id, host, pid, started_at, kernel, code_hash) "
                 "VALUES (?,?,?,?,?,?,?,?)", (job, 1, "old", "h", 42, 5.0, "python3", None))
    conn.execute("UPDATE attempts SET finished_at = ?, outcome = ?, error_type = ?, log_tail = ? "
                 "WHERE job_id = ? AND number = ?", (6.0, "error", "ValueError", "boom", job, 1))
    conn.execute("INSERT INTO events (job_id, at, to_state) VALUES (?, 7.0, 'failed')", (job,))  # id left out
    assert [(e["id"], e["to_state"], e["actor"]) for e in store.events(job)] == \
        [(1, "queued", ACTOR), (2, "running", "worker:old"), (3, "failed", None)]
    [a] = store.attempts(job)
    assert (a["number"], a["worker_id"], a["pid"], a["outcome"], a["error_type"], a["log_tail"], a["finished_at"]) == \
        (1, "old", 42, "error", "ValueError", "boom", 6.0)
    with pytest.raises(sqlite3.IntegrityError):  # an unknown job: no seq, refused
        conn.execute("INSERT INTO attempts (job_id, number, started_at) VALUES ('nope', 1, 0)")
    assert conn.execute("SELECT count(*) FROM attempt_log").fetchone()[0] == 1
