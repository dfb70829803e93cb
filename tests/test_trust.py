"""Trust under load: a job fails only when its own code fails.

Real workers, runner hosts and kernels throughout.  What the system does wrong (a kernel that
cannot start, a worker stopped past its lease, a worker auto-started beside an explicit one)
is retried by the system, recorded, and never charged to the job; kills reach only processes
nbjobs started, through `nbjobs.procs.Proc`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import nbjobs
from nbjobs import kernels, policy
from nbjobs.procs import Proc
from nbjobs.store import Store
from support.procs import start_worker, stop_worker, wait_for

JOB_WAIT = 90


# --- Proc: a kill cannot outlive its process --------------------------------------------------------------
def test_a_proc_signals_its_process_and_never_a_stranger_with_its_pid():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        ref = Proc.of(child.pid)
        assert ref is not None and ref.alive() and Proc.load(ref.dump()) == ref
        # the same pid with another start time is another process (as after pids wrapped): untouched
        stranger = Proc(child.pid, ref.start + 1)
        assert stranger.kill() is False and not stranger.alive()
        assert child.poll() is None
        assert ref.kill() is True  # its group too: it leads one (start_new_session)
        assert child.wait(10) == -signal.SIGKILL
        assert not ref.alive() and ref.kill() is False  # reaped: the pid may be anyone's now
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


# --- the policy: infrastructure failures have a budget of their own (no SQL) --------------------------------
@pytest.mark.parametrize("outcome", sorted(policy.INFRA))
def test_infrastructure_failures_are_requeued_without_charging_retries(outcome):
    infra = 0
    for n in range(1, policy.INFRA_RETRIES + 1):
        d = policy.decide(outcome, failures=0, retries=0, infra_failures=infra)
        assert (d.state, d.infra, d.failures, d.infra_failures) == ("retrying", True, 0, n)
        assert 0 <= d.delay <= policy.INFRA_BACKOFF["cap"]
        infra = d.infra_failures
    spent = policy.decide(outcome, failures=0, retries=0, infra_failures=infra)
    assert (spent.state, spent.infra, spent.failures) == ("failed", False, 1)
    # once the budget is spent, `retries` may cover it (default retry_on covers lost) ...
    assert policy.decide(outcome, failures=0, retries=1, infra_failures=infra).state == "retrying"
    # ... unless retry_on leaves `lost` out
    assert policy.decide(outcome, failures=0, retries=1, retry_on=["error"], infra_failures=infra).state == "failed"
    assert policy.decide(outcome, failures=0, retries=0, infra_retries=0).state == "failed"


@pytest.mark.parametrize("outcome, state", [("error", "failed"), ("kernel_died", "failed"),
                                            ("timeout", "timed_out"), ("cell_timeout", "timed_out")])
def test_the_jobs_own_failures_are_charged(outcome, state):
    d = policy.decide(outcome, failures=0, retries=0, infra_failures=0)
    assert (d.state, d.failures, d.infra_failures, d.infra) == (state, 1, 0, False)


# --- a kernel that cannot start explains itself, is not charged, and stops a worker from burning the queue ---
@pytest.fixture
def broken_kernel(tmp_path, monkeypatch) -> str:
    """The name of an installed kernelspec (for this test) whose kernel prints a line and exits
    before it serves anything."""
    base = tmp_path / "jupyter"
    spec = base / "kernels" / "nbjobs-broken"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", "import sys; print('cannot bind: the port is taken', flush=True); sys.exit(3)",
                 "-f", "{connection_file}"],
        "display_name": "broken", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(base), os.environ.get("JUPYTER_PATH", "")]))
    kernels._cache.clear()  # the installed names are cached for a few seconds
    yield "nbjobs-broken"
    kernels._cache.clear()


def test_a_kernel_that_dies_at_start_is_lost_not_failed_and_says_why(home, broken_kernel):
    name = broken_kernel
    w = start_worker(home, "--no-warm")
    try:
        job = nbjobs.submit("x = 1", name="never-starts", kernel=name, infra_retries=1,
                            backoff={"base": 0.1}, start_worker=False)
        job.wait(JOB_WAIT)
    finally:
        stop_worker(w)
    r = job.record
    # the budget of 1 re-queue was spent: failed with the infrastructure reason, a dead letter
    assert (r.state, r.reason, r.failures, r.infra_failures) == (nbjobs.State.FAILED, "kernel_lost", 1, 2), r
    attempts = job.attempts()
    assert [a["outcome"] for a in attempts] == ["kernel_lost", "kernel_lost"]
    # the kernel's last words are in the attempt's error
    assert all("cannot bind: the port is taken" in a["error_message"] for a in attempts), attempts[0]["error_message"]
    assert [d.id for d in nbjobs.dead_letters()] == [job.id]
    shown = subprocess.run([sys.executable, "-m", "nbjobs", "show", job.id], capture_output=True, text=True).stdout
    assert shown.count("[infrastructure: re-queued, not charged]") == 2, shown


def test_a_worker_whose_kernels_keep_failing_stops_claiming_and_says_why(home, broken_kernel):
    name = broken_kernel
    w = start_worker(home, "--no-warm")
    try:
        jobs = [nbjobs.submit(f"x = {i}", name=f"doomed-{i}", kernel=name, infra_retries=0, start_worker=False)
                for i in range(7)]
        wait_for(lambda: sum(j.state == nbjobs.State.FAILED for j in jobs) >= 5, JOB_WAIT, "five kernels lost")
        note = wait_for(lambda: nbjobs.summary()["worker_notes"], 10, "the worker to say why it stopped")
        assert "kernels in a row failed to start" in note[0] and "not claiming until" in note[0]
        listing = subprocess.run([sys.executable, "-m", "nbjobs", "ls"], capture_output=True, text=True).stdout
        assert "note: " in listing and "failed to start" in listing
        states = [j.state for j in jobs]
        # the other jobs keep their budget: still queued, not burnt
        assert states.count(nbjobs.State.FAILED) == 5 and states.count(nbjobs.State.QUEUED) == 2, states
    finally:
        out = stop_worker(w)
    assert "not claiming until" in out


# --- a worker stopped past its lease: exactly one kernel runs the job -------------------------------------------
_TICKING = """\
import os, pathlib, time
ticks = pathlib.Path({ticks!r})
first = not pathlib.Path({marker!r}).exists()
pathlib.Path({marker!r}).write_text(str(os.getpid()))
for _ in range(40 if first else 5):
    with open(ticks, "a") as f:
        f.write(f"{{os.getpid()}} {{time.time()}}\\n")
    time.sleep(0.1)
"""


def _heartbeat(home: Path, pid: int) -> float:
    store = Store(home / "nbjobs.db")
    try:
        return store.conn.execute("SELECT heartbeat_at FROM workers WHERE pid = ?", (pid,)).fetchone()[0]
    finally:
        store.close()


def test_sigstop_past_the_lease_never_runs_the_job_twice(home, tmp_path):
    ticks, marker = tmp_path / "ticks", tmp_path / "marker"
    lease = {"NBJOBS_LEASE_SECONDS": "2"}
    w1 = start_worker(home, env=lease)
    w2 = None
    try:
        job = nbjobs.submit(_TICKING.format(ticks=str(ticks), marker=str(marker)), name="stalled",
                            start_worker=False)
        wait_for(lambda: ticks.exists() and ticks.read_text().count("\n") >= 3, JOB_WAIT, "attempt 1 to tick")
        first_kernel = int(marker.read_text())
        os.kill(w1.pid, signal.SIGSTOP)
        # its runner host hears no renewal and kills attempt 1's kernel before the lease expires
        wait_for(lambda: not Proc.of(first_kernel), 10, "the stalled worker's kernel to be fenced")
        w2 = start_worker(home, env=lease)
        job.wait(JOB_WAIT)
        beat = _heartbeat(home, w1.pid)
        os.kill(w1.pid, signal.SIGCONT)  # it resumes: its late result must change nothing
        wait_for(lambda: _heartbeat(home, w1.pid) > beat, 10, "the resumed worker to heartbeat again")
    finally:
        os.kill(w1.pid, signal.SIGCONT)
        stop_worker(w1)
        if w2 is not None:
            stop_worker(w2)
    r = job.record
    assert r.state == nbjobs.State.SUCCEEDED, r.error_message
    a1, a2 = job.attempts()[:2]
    assert a1["outcome"] == "worker_lost" and a2["outcome"] == "succeeded"
    assert (r.failures, r.infra_failures) == (0, 1)
    # exactly one kernel ran the job at any time: attempt 1's ticks all end before attempt 2's begin
    by_pid: dict[int, list[float]] = {}
    for line in ticks.read_text().splitlines():
        pid, at = line.split()
        by_pid.setdefault(int(pid), []).append(float(at))
    assert len(by_pid) == 2, by_pid.keys()
    (p1, t1), (p2, t2) = sorted(by_pid.items(), key=lambda kv: kv[1][0])
    assert p1 == first_kernel and max(t1) < min(t2), (max(t1), min(t2))
    assert len(t1) < 40  # attempt 1 was cut short, not left to finish beside attempt 2


# --- an auto-started worker never takes work from an explicit one ---------------------------------------------
@pytest.mark.dask
def test_jobs_submitted_as_a_dask_worker_starts_all_run_on_dask(home, tmp_path):
    pytest.importorskip("distributed")
    env = {k: v for k, v in os.environ.items() if k != "NBJOBS_HOME"}
    sched_file = tmp_path / "scheduler.json"
    cluster = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                                 "--scheduler-file", str(sched_file)], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    worker = None
    try:
        wait_for(lambda: sched_file.exists() and sched_file.stat().st_size, 60, "the dask scheduler")
        address = json.loads(sched_file.read_text())["address"]
        cluster.append(subprocess.Popen(["dask", "worker", address, "--nthreads", "2", "--no-dashboard"],
                                        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        worker = subprocess.Popen([sys.executable, "-m", "nbjobs", "worker", "--executor", "dask", "--scheduler",
                                   address], env=dict(os.environ, NBJOBS_HOME=str(home)),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # at once, before that worker has even imported nbjobs: each submit may auto-start a local worker
        jobs = [nbjobs.submit(f"import nbjobs\nnbjobs.record('i', {i})", name=f"on-dask-{i}") for i in range(4)]
        nbjobs.wait([j.id for j in jobs], timeout=180)
        store = Store(home / "nbjobs.db")
        try:
            rows = [dict(r) for r in store.conn.execute("SELECT id, executor, autostarted, note FROM workers")]
        finally:
            store.close()
    finally:
        if worker is not None:
            stop_worker(worker)
        for proc in reversed(cluster):
            proc.terminate()
            proc.wait(30)
    assert [j.state for j in jobs] == [nbjobs.State.SUCCEEDED] * 4, [(j.state, j.record.error_message) for j in jobs]
    explicit = [r["id"] for r in rows if not r["autostarted"]]
    assert len(explicit) == 1 and rows[[r["id"] for r in rows].index(explicit[0])]["executor"].startswith("dask")
    ran_on = {a["worker_id"] for j in jobs for a in j.attempts()}
    assert ran_on == set(explicit), rows


def _children(pid: int, needle: bytes) -> list[int]:
    """Live children of ``pid`` whose command line contains ``needle``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) == pid and needle in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


def test_a_resumed_worker_ends_the_attempt_it_lost_at_once(home, tmp_path):
    """Worker *and* runner hosts stopped (the host cannot fence): the kernel runs on, unowned; the
    moment the worker resumes it sees the job taken over and kills that attempt."""
    ticks, marker = tmp_path / "ticks", tmp_path / "marker"
    lease = {"NBJOBS_LEASE_SECONDS": "2"}
    w1 = start_worker(home, env=lease)
    w2 = None
    stopped: list[int] = []
    try:
        job = nbjobs.submit(_TICKING.format(ticks=str(ticks), marker=str(marker)), name="frozen",
                            start_worker=False)
        wait_for(lambda: ticks.exists() and ticks.read_text().count("\n") >= 3, JOB_WAIT, "attempt 1 to tick")
        first_kernel = Proc.of(int(marker.read_text()))
        stopped = [w1.pid, *_children(w1.pid, b"nbjobs.runner")]
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        w2 = start_worker(home, env=lease)
        wait_for(lambda: len(job.attempts()) == 2, JOB_WAIT, "another worker to take the job over")
        assert first_kernel.alive()  # nobody left to stop it while its worker and host are frozen
        os.kill(w1.pid, signal.SIGCONT)  # the worker alone resumes; its host stays frozen
        wait_for(lambda: not first_kernel.alive(), 10, "the resumed worker to end the attempt it lost")
        job.wait(JOB_WAIT)
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        out = stop_worker(w1)
        if w2 is not None:
            stop_worker(w2)
    assert job.state == nbjobs.State.SUCCEEDED
    assert [a["outcome"] for a in job.attempts()] == ["worker_lost", "succeeded"]
    assert "was reclaimed after our lease expired; ending its attempt here" in out, out


def test_kernel_socket_folders_of_dead_processes_are_swept_and_live_ones_kept(tmp_path):
    """Kernels listen on Unix sockets in ``$TMPDIR/nbjobs-k<pid>.<start>``; a process that starts
    kernels removes the folders of processes that died without cleaning up, never a live one's,
    and many such processes starting at once do not trip over each other's sweeps."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_ref = Proc.of(dead.pid)
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live_ref = Proc.of(live.pid)
        folders = {}
        for name, ref in (("dead", dead_ref), ("live", live_ref)):
            if ref is None:  # the short-lived child ended before we looked: make up a dead identity
                ref = Proc(dead.pid, 1)
            folders[name] = tmp_path / f"nbjobs-k{ref.pid}.{ref.start}"
            folders[name].mkdir()
            (folders[name] / "1-1").write_text("")
        code = "from nbjobs import kernels; print(kernels._socket_prefix())"
        env = dict(os.environ, TMPDIR=str(tmp_path))
        starters = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True,
                                     stderr=subprocess.PIPE) for _ in range(4)]
        results = [p.communicate(timeout=60) for p in starters]
        assert [p.returncode for p in starters] == [0] * 4, results
        assert not folders["dead"].exists() and folders["live"].exists()
        assert all(out.startswith(str(tmp_path / "nbjobs-k")) for out, _ in results)
    finally:
        live.kill()
        live.wait()
