"""The worker (nbjobs/worker.py) as a real process: signals, crashes, dead kernels, concurrency, timeouts."""
from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

import nbjobs
from support.procs import start_worker, stop_worker, wait_for as _wait_for
from nbjobs.store import Store

pytestmark = pytest.mark.slow

JOB_WAIT = 60




def _marker_code(marker: Path, sleep: float) -> str:
    """The first attempt creates ``marker`` and sleeps; a later attempt finds it and finishes at once."""
    return textwrap.dedent(f"""\
        import os, pathlib, time, nbjobs
        marker = pathlib.Path({str(marker)!r})
        first = not marker.exists()
        if first:
            marker.write_text(str(os.getpid()))
            time.sleep({sleep})
        nbjobs.record('first', first)
        """)


def _alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _job_processes(job_id: str) -> list[int]:
    """Kernels of ``job_id``: processes whose environment names the job (the runner sets it for them)."""
    found = []
    needle = f"NBJOBS_JOB_ID={job_id}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in env and _alive(int(entry)):
            found.append(int(entry))
    return found


def _worker_row(home: Path, pid: int) -> dict:
    s = Store(home / "nbjobs.db")
    try:
        [row] = s.conn.execute("SELECT * FROM workers WHERE pid = ?", (pid,)).fetchall()
        return dict(row)
    finally:
        s.close()


def test_sigterm_releases_running_job_and_next_worker_finishes_it(home, tmp_path):
    marker = tmp_path / "term-marker"
    w1 = start_worker(home, "--grace", "1")
    try:
        job = nbjobs.submit(_marker_code(marker, 30), name="term", start_worker=False)
        _wait_for(marker.exists, JOB_WAIT, "the first attempt's cell to start")
        kernel_pid = int(marker.read_text())
        assert job.state == nbjobs.State.RUNNING
        w1.send_signal(signal.SIGTERM)  # how soon it stops: benchmarks/bench_stop.py
        w1.wait(15)
    finally:
        out = stop_worker(w1)
    assert w1.returncode == 0, out
    r = job.record
    assert r.state == nbjobs.State.QUEUED and r.reason == "released"
    assert r.worker_id is None and r.failures == 0 and r.attempts == 1
    [a1] = job.attempts()
    assert a1["outcome"] == "released" and a1["finished_at"] is not None
    assert _worker_row(home, w1.pid)["state"] == "stopped"
    _wait_for(lambda: not _alive(kernel_pid), 10, "the released attempt's kernel to exit")

    w2 = start_worker(home)
    try:
        job.wait(JOB_WAIT)
    finally:
        stop_worker(w2)
    r = job.record
    assert r.state == nbjobs.State.SUCCEEDED, r.error_message
    assert [(a["number"], a["outcome"]) for a in job.attempts()] == [(1, "released"), (2, "succeeded")]
    assert job.attempts()[1]["pid"] == w2.pid
    assert job.result() == {"first": False}


def test_sigkill_worker_lease_expires_and_another_worker_reruns(home, tmp_path):
    marker = tmp_path / "kill-marker"
    lease = {"NBJOBS_LEASE_SECONDS": "2"}
    w1 = start_worker(home, env=lease)
    try:
        job = nbjobs.submit(_marker_code(marker, 30), name="kill", start_worker=False)  # no retries: not needed
        _wait_for(marker.exists, JOB_WAIT, "the first attempt's cell to start")
        kernel_pid = int(marker.read_text())
        runner_pid = int(_wait_for(lambda: job.attempts()[0]["versions"].get("pid"), 10, "the runner's pid"))
        assert _alive(kernel_pid) and _alive(runner_pid)
        assert set(_job_processes(job.id)) <= {kernel_pid}  # a warm kernel's environment does not name the job
        w1.kill()
        w1.wait(10)
    finally:
        stop_worker(w1)

    # the orphans of the killed worker must not keep running attempt 1 next to attempt 2 (how soon
    # they go: benchmarks/bench_stop.py)
    _wait_for(lambda: not _alive(runner_pid) and not _alive(kernel_pid), 10,
              "the killed worker's runner and kernel to exit")

    w2 = start_worker(home, env=lease)
    try:
        job.wait(JOB_WAIT)
    finally:
        stop_worker(w2)
    r = job.record
    assert r.state == nbjobs.State.SUCCEEDED, r.error_message
    a1, a2 = job.attempts()
    assert a1["outcome"] == "worker_lost" and a1["error_type"] == "WorkerLost"
    assert a1["pid"] == w1.pid and a2["pid"] == w2.pid
    assert a2["outcome"] == "succeeded"
    assert (r.failures, r.infra_failures, r.attempts) == (0, 1, 2)  # the lost worker is not charged to the job
    assert job.result() == {"first": False}
    reasons = [e["reason"] for e in job.events()]
    assert "attempt 1: worker_lost" in " ".join(r or "" for r in reasons)
    assert _job_processes(job.id) == []


def test_kernel_death_fails_job_not_hangs(home, worker):
    job = nbjobs.submit("import os\nos._exit(1)", name="suicide")
    job.wait(30)  # it ends (how soon: benchmarks/bench_stop.py)
    r = job.record
    assert r.state == nbjobs.State.FAILED
    assert r.reason == "kernel_died"
    assert r.error_type == "DeadKernelError"
    [a] = job.attempts()
    assert a["outcome"] == "kernel_died"


def test_concurrency_two_runs_two_jobs_at_once(home, worker, tmp_path):
    """Each job announces itself, then waits for the other: only two jobs running at the same time
    both see the other (one after the other, the first would give up after 60 s)."""
    assert _worker_row(home, worker.pid)["concurrency"] == 2
    code = textwrap.dedent("""\
        import pathlib, time, nbjobs
        me, other = pathlib.Path(ME), pathlib.Path(OTHER)
        me.write_text("here")
        deadline = time.time() + 60
        while not other.exists() and time.time() < deadline:
            time.sleep(0.01)
        nbjobs.record("saw_the_other", other.exists())
        """)
    marks = [str(tmp_path / f"job-{i}") for i in range(2)]
    jobs = [nbjobs.submit(code.replace("ME", repr(marks[i])).replace("OTHER", repr(marks[1 - i])), name=f"pair-{i}")
            for i in range(2)]
    nbjobs.wait(jobs, timeout=JOB_WAIT + 60)
    assert all(j.state == nbjobs.State.SUCCEEDED for j in jobs), [j.record.error_message for j in jobs]
    assert [j.result()["saw_the_other"] for j in jobs] == [True, True]


def test_a_freed_slot_claims_its_next_job_in_the_transaction_that_ended_the_last(home):
    """A worker whose attempt ends while jobs are queued claims the slot's next job in the same
    transaction (`Store.finish_and_claim`): that claim's event has the moment of the end's event."""
    jobs = [nbjobs.submit("1 + 1", name=f"next-{i}", start_worker=False) for i in range(3)]
    w = start_worker(home, "--concurrency", "1")
    try:
        nbjobs.wait(jobs, timeout=JOB_WAIT)
    finally:
        stop_worker(w)
    assert [j.state for j in jobs] == [nbjobs.State.SUCCEEDED] * 3
    s = Store(home / "nbjobs.db")
    try:
        events = [s.events(j.id) for j in jobs]
    finally:
        s.close()
    ends = [next(e for e in ev if e["from_state"] == "running") for ev in events]
    claims = [next(e for e in ev if e["to_state"] == "running") for ev in events]
    assert [c["at"] for c in claims[1:]] == [e["at"] for e in ends[:-1]]
    assert {e["actor"] for e in ends + claims} == {claims[0]["actor"]}


def test_job_timeout_stops_it(home, worker):
    job = nbjobs.submit("import time\ntime.sleep(60)", name="slow", timeout=2)
    job.wait(20)  # how soon after its timeout it ends: benchmarks/bench_stop.py
    r = job.record
    assert r.state == nbjobs.State.TIMED_OUT, r
    assert r.reason == "timeout" and r.error_type == "Timeout"
    assert "timeout of 2 s" in r.error_message
    assert r.finished_at - r.started_at >= 2  # not before its timeout
    [a] = job.attempts()
    assert a["outcome"] == "timeout"
    assert _job_processes(job.id) == []


def test_sigint_stops_foreground_worker_cleanly(home):
    proc = start_worker(home)
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(10)
    finally:
        out = stop_worker(proc)
    assert rc == 0, out
    assert "Traceback" not in out
    assert "stopped after 0 attempt(s)" in out
    row = _worker_row(home, proc.pid)
    assert row["state"] == "stopped" and row["stopped_at"] is not None
    assert Store(home / "nbjobs.db").live_workers() == []


def test_sigint_with_running_job_releases_it(home, tmp_path):
    """Ctrl-C in the terminal also reaches a foreground worker mid-job: the job goes back to the queue."""
    marker = tmp_path / "int-marker"
    proc = start_worker(home, "--grace", "0.5")
    try:
        job = nbjobs.submit(_marker_code(marker, 30), start_worker=False)
        _wait_for(marker.exists, JOB_WAIT, "the cell to start")
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(15)
    finally:
        out = stop_worker(proc)
    assert rc == 0, out
    assert job.state == nbjobs.State.QUEUED
    assert job.attempts()[0]["outcome"] == "released"
    assert _worker_row(home, proc.pid)["state"] == "stopped"
    _wait_for(lambda: not _job_processes(job.id), 10, "the kernel to exit")
