"""Dependencies between jobs (``after``): waiting, release on success, dependency_failed cascades,
after_any, refusal of unknown or expired IDs, and real chains / fan-in run by a real worker."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import nbjobs
from nbjobs.errors import BadInput, ExpiredJob, UnknownJob
from nbjobs.job import State
from nbjobs.store import Store

A = "test"


def add(store: Store, after=(), **spec) -> str:
    rec, created = store.insert_job({"kind": "cell", "source": "1", "after": list(after), **spec}, actor=A)
    assert created
    return rec.id


def run_to(store: Store, job_id: str, outcome: str) -> None:
    """Claim ``job_id`` (it must be the next claimable job) and end its attempt with ``outcome``."""
    rec, n = store.claim("w1")
    assert rec.id == job_id
    assert store.finish_attempt(job_id, n, "w1", outcome) is not None


def state(store: Store, job_id: str) -> str:
    return store.get(job_id).state.value


def test_waiting_until_upstream_succeeds_then_queued_in_the_same_transaction(store):
    a = add(store, name="a")
    b = add(store, [a], name="b")
    assert state(store, b) == "waiting"
    assert store.upstream(b) == [a] and store.downstream(a) == [b]
    rec, n = store.claim("w1")
    assert rec.id == a                       # a waiting job is never claimed
    assert store.claim("w1") is None
    store.finish_attempt(a, n, "w1", "succeeded")
    assert state(store, b) == "queued"       # no sweep needed
    ev = store.events(b)
    assert [(e["from_state"], e["to_state"]) for e in ev] == [(None, "waiting"), ("waiting", "queued")]
    assert a[:8] in ev[0]["reason"] and a[:8] in ev[1]["reason"]


def test_chain_failure_cascades_dependency_failed_naming_the_upstream(store):
    a = add(store, name="a")
    b = add(store, [a], name="b")
    c = add(store, [b], name="c")
    run_to(store, a, "error")
    for j in (b, c):
        r = store.get(j)
        assert (r.state, r.reason) == (State.CANCELLED, "dependency_failed")
        assert r.error_type == "DependencyFailed" and r.finished_at is not None
    assert store.get(b).error_message == f"upstream job {a[:8]} (a) ended failed"
    assert store.get(c).error_message == f"upstream job {b[:8]} (b) ended cancelled"
    assert store.claim("w1") is None


@pytest.mark.parametrize("outcome,ended", [("timeout", "timed_out"), ("cancelled", "cancelled")])
def test_timed_out_or_cancelled_upstream_cancels(store, outcome, ended):
    a = add(store, name="a")
    b = add(store, [a])
    run_to(store, a, outcome)
    assert store.get(b).error_message.endswith(f"ended {ended}")


def test_after_any_runs_on_any_ending(store):
    a, ok = add(store, name="a"), add(store, name="ok")
    b = add(store, [a, ok], options={"after_any": True})
    run_to(store, a, "error")
    assert state(store, b) == "waiting"      # ok has not ended yet
    run_to(store, ok, "succeeded")
    assert state(store, b) == "queued"


def test_upstream_already_ended_at_submit(store):
    a = add(store)
    run_to(store, a, "succeeded")
    f = add(store)
    run_to(store, f, "error")
    assert state(store, add(store, [a])) == "queued"
    late = add(store, [a, f])
    assert (state(store, late), store.get(late).reason) == ("cancelled", "dependency_failed")


def test_cancel_of_queued_upstream_and_of_waiting_job(store):
    a = add(store)
    b = add(store, [a])
    c = add(store, [b])
    store.request_cancel(b, A)                # a waiting job can be cancelled ...
    assert (state(store, b), store.get(b).reason) == ("cancelled", "cancelled")
    assert (state(store, c), store.get(c).reason) == ("cancelled", "dependency_failed")  # ... and cascades
    d = add(store, [a])
    store.request_cancel(a, A)
    assert store.get(d).reason == "dependency_failed"


def test_fan_out_and_fan_in_of_ten(store):
    ups = [add(store, name=f"u{i}") for i in range(10)]
    fan_in = add(store, ups, name="join")
    fan_out = [add(store, [ups[0]], name=f"o{i}") for i in range(3)]
    for i, u in enumerate(ups):
        assert state(store, fan_in) == "waiting"
        run_to(store, u, "succeeded")
        if i == 0:
            assert all(state(store, o) == "queued" for o in fan_out)
    assert state(store, fan_in) == "queued"
    assert sorted(store.upstream(fan_in)) == sorted(ups)


def test_unknown_or_self_dependency_refused_and_nothing_written(store):
    a = add(store)
    with pytest.raises(UnknownJob):
        store.insert_job({"kind": "cell", "source": "1", "after": [a, "f" * 32]}, actor=A)
    with pytest.raises(BadInput, match="after itself"):
        store.insert_job({"id": "e" * 32, "kind": "cell", "source": "1", "after": ["e" * 32]}, actor=A)
    assert store.counts()["waiting"] == 0 and len(store.list_jobs()) == 1
    assert store.conn.execute("SELECT count(*) FROM deps").fetchone()[0] == 0


def test_sweep_is_a_safety_net(store):
    a = add(store)
    b = add(store, [a])
    # an upstream that ended without passing through the resolution (a database written by an
    # older nbjobs, or a bug): the periodic sweep still moves the dependent on
    store.conn.execute("UPDATE jobs SET state = 'succeeded', finished_at = 1 WHERE id = ?", (a,))
    assert state(store, b) == "waiting"
    assert store.resolve_waiting(A) == 1
    assert state(store, b) == "queued"
    assert store.resolve_waiting(A) == 0


def test_api_resolves_prefixes_and_refuses_unknown_or_expired(home):
    a = nbjobs.submit("x = 1", start_worker=False)
    b = nbjobs.submit("x = 2", after=a.id[:6], start_worker=False)
    assert b.state == State.WAITING and b._store.upstream(b.id) == [a.id]
    c = nbjobs.submit("x = 3", after=[a, b], after_any=True, start_worker=False)
    assert c.record.options["after_any"] is True
    with pytest.raises(BadInput, match="after_any needs"):
        nbjobs.submit("x = 4", after_any=True, start_worker=False)
    a.cancel()
    nbjobs.prune(0.000001, states=["cancelled"])
    before = len(nbjobs.records(limit=None))
    with pytest.raises(ExpiredJob):
        nbjobs.submit("x = 5", after=[a.id], start_worker=False)
    with pytest.raises(UnknownJob):
        nbjobs.submit("x = 6", after="0" * 32, start_worker=False)
    assert len(nbjobs.records(limit=None)) == before


def test_cli_after_bad_ids_exit_2_nothing_written(home):
    env = dict(os.environ, NBJOBS_HOME=str(home))

    def nbj(*args):
        return subprocess.run([sys.executable, "-m", "nbjobs", *args], env=env, capture_output=True, text=True,
                              timeout=60)
    ok = nbj("run", "-c", "x = 1", "--no-worker")
    a = ok.stdout.strip()
    for args, needle in ((["--after", "abcdef0"], "no job matches"), (["--after", "zz!"], "not a job ID"),
                         (["--after-any"], "after_any needs")):
        r = nbj("run", "-c", "x = 2", "--no-worker", *args)
        assert r.returncode == 2 and needle in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = nbj("run", "-c", "x = 3", "--no-worker", "--after", f"{a[:8]},{a}")
    assert r.returncode == 0
    b = r.stdout.strip()
    show = nbj("show", b)
    assert f"after:      {a[:8]}" in show.stdout and "waiting" in show.stdout
    conn = sqlite3.connect(home / "nbjobs.db")
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 2


def test_migrated_v1_database_takes_dependencies(tmp_path):
    import shutil

    path = tmp_path / "nbjobs.db"
    shutil.copyfile(Path(__file__).parent / "data" / "nbjobs-v1.db", path)
    s = Store(path)
    done = [r.id for r in s.list_jobs(state="succeeded")][0]
    rec, _ = s.insert_job({"kind": "cell", "source": "1", "after": [done]}, actor=A)
    assert rec.state == State.QUEUED      # its upstream succeeded long ago
    s.close()


# --- real worker, real kernels -----------------------------------------------------------------------------
JOB_WAIT = 120


@pytest.mark.slow
def test_chain_a_b_c_passes_results_with_a_real_worker(home, worker, tmp_path):
    a = nbjobs.submit("import nbjobs\nnbjobs.record('x', 20)", name="a")
    b = nbjobs.submit("import nbjobs\nnbjobs.record('y', nbjobs.result(source_job)['x'] + 1)", name="b",
                      parameters={"source_job": a.id}, after=[a])
    # the documented notebook pattern: run_notebook(..., {"source_job": b.id}, after=[b])
    nb = tmp_path / "c.ipynb"
    from support.notebooks import write_notebook

    write_notebook(nb, ["import nbjobs\nnbjobs.record('z', nbjobs.result(source_job)['y'] * 2)"],
                   parameters="source_job = None")
    c = nbjobs.run_notebook(nb, {"source_job": b.id}, after=[b])
    assert c.state == State.WAITING
    c.wait(JOB_WAIT)
    assert c.state == State.SUCCEEDED, c.record.error_message
    assert c.result() == {"z": 42}
    ra, rb, rc = a.record, b.record, c.record
    assert ra.finished_at <= rb.started_at and rb.finished_at <= rc.started_at


@pytest.mark.slow
def test_fan_in_and_failure_with_a_real_worker(home, worker):
    # four upstream jobs keep the kernels (the cost) down; one job after ten is tested on the store
    ups = [nbjobs.submit(f"import nbjobs\nnbjobs.record('v', {i})", name=f"part{i}") for i in range(4)]
    total = nbjobs.submit("import nbjobs\nnbjobs.record('total', sum(nbjobs.result(u)['v'] for u in ups))",
                          name="join", parameters={"ups": [u.id for u in ups]}, after=ups)
    bad = nbjobs.submit("raise ValueError('boom')", name="bad")
    never = nbjobs.submit("x = 1", name="never", after=[ups[0], bad])
    total.wait(JOB_WAIT * 2)
    assert total.state == State.SUCCEEDED, total.record.error_message
    assert total.result() == {"total": 6}
    assert total.record.started_at >= max(u.record.finished_at for u in ups)
    never.wait(JOB_WAIT)
    r = never.record
    assert (r.state, r.reason, r.attempts) == (State.CANCELLED, "dependency_failed", 0)
    assert bad.id[:8] in r.error_message


# --- the magics ------------------------------------------------------------------------------------------------
def test_magics_after_notify_and_the_documented_pattern(home, tmp_path, monkeypatch):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    from support.notebooks import write_notebook
    from support.shell import new_shell, ok

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    shell = new_shell()
    try:
        a = ok(shell, "%%job --name a --no-worker --out x\nx = 20")
        shell.user_ns["a"] = a.id
        b = ok(shell, "%%job --name b --after {a} --notify http://127.0.0.1:9/hook --no-worker\ny = 1")
        rb = b.record
        assert rb.state == State.WAITING and rb.options["notify"] == "http://127.0.0.1:9/hook"
        assert b._store.upstream(b.id) == [a.id]
        write_notebook(tmp_path / "b.ipynb", ["import nbjobs\nnbjobs.record('y', nbjobs.result(source_job)['x'])"],
                       parameters="source_job = None")
        c = ok(shell, f"%job run {tmp_path / 'b.ipynb'} --after $a -p source_job $a --no-worker")
        assert c.record.parameters == {"source_job": a.id} and c.state == State.WAITING
        shell.user_ns["b"] = b
        d = ok(shell, "%%job --after {a},{b.id} --after-any --no-worker\nz = 1")
        assert sorted(d._store.upstream(d.id)) == sorted([a.id, b.id]) and d.record.options["after_any"]
        before = len(nbjobs.records(limit=None))
        for line in ("%%job --after 0000000 --no-worker", "%%job --notify ftp://x --no-worker"):
            result = shell.run_cell(line + "\nq = 1", store_history=True)
            assert isinstance(result.error_in_exec, UsageError) and "\n" not in str(result.error_in_exec)
        assert len(nbjobs.records(limit=None)) == before
    finally:
        InteractiveShell.clear_instance()


def test_retry_of_a_dependency_failed_job_waits_for_its_upstream_again(store):
    a = add(store, name="a")
    b = add(store, [a], name="b")
    run_to(store, a, "error")
    assert store.get(b).reason == "dependency_failed"
    store.retry(b, A)                          # a still failed: b is cancelled again at once
    assert (state(store, b), store.get(b).reason) == ("cancelled", "dependency_failed")
    store.retry(a, A)
    store.retry(b, A)
    assert state(store, b) == "waiting" and store.get(b).error_type is None
    run_to(store, a, "succeeded")
    assert state(store, b) == "queued"
