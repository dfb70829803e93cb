"""Fault injection with real processes: kill -9 workers mid-job, flaky jobs, timeouts, cancels from
another process, dying kernels, orphaned kernels, and many submitters racing workers.

Nothing is mocked: workers, runners and kernels are real processes, and every check reads the real
SQLite file or ``/proc``.  Processes are told apart from those of other tests by their environment
(``NBJOBS_HOME`` of this test's home, ``NBJOBS_JOB_ID`` of this test's jobs).
"""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nbjobs
from nbjobs import policy
from support.procs import start_worker, stop_worker, wait_for as _wait_for

pytestmark = pytest.mark.slow

JOB_WAIT = 60


# --- helpers: waiting, SQLite, /proc ------------------------------------------------------------------


def _db(home: Path) -> sqlite3.Connection:
    """A plain read connection (no nbjobs code in between: the test reads what is on disk)."""
    conn = sqlite3.connect(home / "nbjobs.db", timeout=30)
    conn.row_factory = sqlite3.Row
    return conn


def _rows(home: Path, sql: str, params=()) -> list[sqlite3.Row]:
    conn = _db(home)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _proc_id(pid: int) -> tuple[int, str] | None:
    """(pid, start time) of a live process, None if it is gone or a zombie: a pid can be reused,
    the pair cannot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return pid, fields[19]  # field 22 of stat: start time in clock ticks


def _alive(ident: tuple[int, str]) -> bool:
    return _proc_id(ident[0]) == ident


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _job_processes(home: Path, job_ids=()) -> dict[tuple[int, str], str]:
    """Live processes of ``home``'s workers: ``{(pid, start): kind}``.

    ``runner``: a ``python -m nbjobs.runner`` (a runner host) whose environment has
    NBJOBS_HOME=home (inherited from its worker).  ``kernel``: an ``ipykernel`` of one of
    ``job_ids``: its pid is recorded for the job's attempt, or (a kernel started for the job, cold)
    the job's NBJOBS_JOB_ID is in its environment.  ``pool``: any other ``ipykernel`` of the home
    (a warm kernel waiting for a job).  ``helper``: what a job's kernel runs briefly (its
    environment names the job), e.g. ``ip addr``, ``uname``."""
    home_var = f"NBJOBS_HOME={home}".encode()
    job_vars = {f"NBJOBS_JOB_ID={j}".encode() for j in job_ids}
    recorded: set[int] = set()
    if job_ids and (home / "nbjobs.db").exists():
        marks = ",".join("?" * len(job_ids))
        recorded = {r["kernel_pid"] for r in _rows(home, f"SELECT kernel_pid FROM attempts WHERE job_id IN ({marks}) "
                                                         "AND kernel_pid IS NOT NULL", tuple(job_ids))}
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        env = _environ(int(entry))
        if not env:
            continue
        kind = None
        cmd = _cmdline(int(entry))
        is_kernel = b"ipykernel" in cmd and b"ipykernel" not in _cmdline(_ppid(int(entry)))
        if is_kernel and (int(entry) in recorded or job_vars.intersection(env)):
            kind = "kernel"
        elif job_vars and job_vars.intersection(env):  # (a kernel's own fork, before it execs something)
            kind = "helper"
        elif home_var in env and is_kernel:
            kind = "pool"
        elif home_var in env and b"nbjobs.runner" in cmd:
            kind = "runner"
        if kind:
            ident = _proc_id(int(entry))
            if ident:
                found[ident] = kind
    return found


def _kernel_pids(home: Path, job_ids) -> set[int]:
    return {pid for (pid, _), kind in _job_processes(home, job_ids).items() if kind == "kernel"}


# --- 1. kill -9 a worker mid-job, again and again -------------------------------------------------------
KILL_ROUNDS = 12  # 4 kills in each phase; benchmarks/soak.py kills at random over thousands of jobs
PHASES = ("runner", "kernel", "cell")

_KILLED_CODE = textwrap.dedent("""\
    import os, time, nbjobs
    time.sleep(2)
    nbjobs.record('output_dir', os.environ['NBJOBS_OUTPUT_DIR'])
    nbjobs.record('kernel_pid', os.getpid())
    """)


def test_kill9_worker_mid_job_repeatedly_loses_nothing_and_duplicates_nothing(home):
    rng = random.Random(20240604)
    n_jobs = 5
    # a short exact backoff: with the default (full jitter, doubling) a job killed ten times could
    # wait minutes for its next attempt, which tells us nothing more
    jobs = [nbjobs.submit(_KILLED_CODE, name=f"kill9-{i}", retries=40, start_worker=False,
                          backoff={"base": 0.2, "factor": 1, "jitter": "none"}) for i in range(n_jobs)]
    ids = [j.id for j in jobs]
    fast_lease = {"NBJOBS_LEASE_SECONDS": "1"}  # heartbeats every 0.25 s; a dead worker's jobs free up in 1 s

    orphan_checks: list[tuple[float, dict]] = []  # (killed at, processes of the killed worker)
    killed_pids: list[int] = []
    killed_with_kernel = 0
    worst_orphan = 0.0

    def check_orphans() -> None:
        """Every process of an already killed worker must be gone (how soon: benchmarks/bench_stop.py)."""
        nonlocal worst_orphan
        while orphan_checks:
            killed_at, procs = orphan_checks[0]
            _wait_for(lambda: not any(_alive(p) for p in procs), max(0.0, killed_at + 15 - time.monotonic()),
                      f"the runner/kernel processes {sorted(p for p, _ in procs)} of a SIGKILLed worker to exit")
            worst_orphan = max(worst_orphan, time.monotonic() - killed_at)
            orphan_checks.pop(0)

    for round_no in range(KILL_ROUNDS):
        w = start_worker(home, "--concurrency", "2", env=fast_lease)
        try:
            check_orphans()  # the previous victim's processes, while this one started
            running = _wait_for(lambda: _rows(
                home, "SELECT a.job_id, a.number FROM attempts a JOIN workers w ON a.worker_id = w.id "
                      "WHERE w.pid = ? AND a.outcome = 'running'", (w.pid,)), 30,
                f"round {round_no}: a job to run on worker {w.pid}")
            # kill in a different phase each round: the runner starting (papermill importing), the
            # kernel starting, the cell sleeping (each attempt needs ~4 s to succeed, so none does)
            phase = PHASES[round_no % len(PHASES)]
            if phase != "runner":
                _wait_for(lambda: _kernel_pids(home, [r["job_id"] for r in running]), 30,
                          f"round {round_no}: a kernel of worker {w.pid}")
                time.sleep(rng.uniform(0.8, 1.2) if phase == "cell" else rng.uniform(0.0, 0.3))
            else:
                time.sleep(rng.uniform(0.0, 0.5))
            victims = _job_processes(home, ids)
            killed_with_kernel += any(kind == "kernel" for kind in victims.values())
            w.kill()
            w.wait(10)
            orphan_checks.append((time.monotonic(), victims))
            killed_pids.append(w.pid)
        finally:
            stop_worker(w)
    check_orphans()

    # a normal worker (default 30 s lease) drains everything that is left
    w = start_worker(home, "--concurrency", "2")
    try:
        nbjobs.wait(ids, timeout=120)
    finally:
        out = stop_worker(w)
    assert w.returncode == 0, out

    # nothing lost: the same rows, all terminal, all succeeded
    jobs_rows = _rows(home, "SELECT * FROM jobs")
    assert sorted(r["id"] for r in jobs_rows) == sorted(ids), "a job row appeared or vanished"
    assert {r["id"]: r["state"] for r in jobs_rows} == {i: "succeeded" for i in ids}, \
        [(r["name"], r["state"], r["error_message"]) for r in jobs_rows]
    attempts = _rows(home, "SELECT * FROM attempts ORDER BY job_id, number")
    running_left = [(a["job_id"][:8], a["number"]) for a in attempts if a["outcome"] == "running"
                    or a["finished_at"] is None]
    assert running_left == [], f"attempt rows never finished: {running_left}"
    lost = [a for a in attempts if a["outcome"] == "worker_lost"]
    assert len(lost) >= KILL_ROUNDS, f"only {len(lost)} worker_lost attempts for {KILL_ROUNDS} kills"
    assert all(a["error_type"] == "WorkerLost" for a in lost)
    # every attempt a killed worker started is recorded as lost: none of them slipped through as a
    # success, a failure or a stale late result
    by_killed = [a for a in attempts if a["pid"] in killed_pids]
    assert len({a["pid"] for a in by_killed}) == KILL_ROUNDS, "some killed worker never had an attempt"
    assert {a["outcome"] for a in by_killed} == {"worker_lost"}, [a["outcome"] for a in by_killed]
    for r in jobs_rows:
        mine = [a for a in attempts if a["job_id"] == r["id"]]
        assert [a["number"] for a in mine] == list(range(1, r["attempts"] + 1)), "attempt numbers have gaps"
        succeeded = [a for a in mine if a["outcome"] == "succeeded"]
        assert len(succeeded) == 1, f"job {r['name']} recorded succeeded {len(succeeded)} times"
        number = succeeded[0]["number"]
        assert number == r["attempts"], "the success must be the job's last attempt"
        n_lost = sum(a["outcome"] == "worker_lost" for a in mine)  # the system's: charged only past the budget
        assert (r["infra_failures"], r["failures"]) == (n_lost, max(0, n_lost - policy.INFRA_RETRIES))
        # the recorded outputs are those of the succeeded attempt, written by that attempt's kernel
        outs = _rows(home, "SELECT name, attempt FROM outputs WHERE job_id = ?", (r["id"],))
        assert {(o["name"], o["attempt"]) for o in outs} == {("output_dir", number), ("kernel_pid", number)}
        result = nbjobs.result(r["id"])
        assert Path(result["output_dir"]).parts[-2:] == (str(number), "outputs"), result
        events = [e["to_state"] for e in _rows(home, "SELECT to_state FROM events WHERE job_id = ?", (r["id"],))]
        assert events.count("succeeded") == 1

    # no runner or kernel of any worker (killed or not) is left
    assert _job_processes(home, ids) == {}
    print(f"\n{KILL_ROUNDS} SIGKILLs ({killed_with_kernel} with a kernel running): {len(lost)} worker_lost "
          f"attempts, {len(attempts)} attempts in all; slowest orphan exit {worst_orphan:.1f} s")
    assert killed_with_kernel >= KILL_ROUNDS // 2, f"only {killed_with_kernel} kills hit a running kernel"


# --- 2. a flaky job: retries with growing delays ----------------------------------------------------
def test_flaky_job_fails_twice_then_succeeds_with_growing_backoff(home, worker, tmp_path):
    counter = tmp_path / "flaky-counter"
    code = textwrap.dedent(f"""\
        import pathlib, nbjobs
        counter = pathlib.Path({str(counter)!r})
        n = int(counter.read_text()) + 1 if counter.exists() else 1
        counter.write_text(str(n))
        if n <= 2:
            raise RuntimeError(f'flaky failure number {{n}}')
        nbjobs.record('n', n)
        """)
    job = nbjobs.submit(code, name="flaky", retries=3, backoff={"base": 1, "factor": 2, "jitter": "none"},
                        start_worker=False)
    job.wait(JOB_WAIT)
    r = job.record
    assert r.state == nbjobs.State.SUCCEEDED, r.error_message
    assert job.result() == {"n": 3}
    assert r.attempts == 3 and r.failures == 2
    a1, a2, a3 = job.attempts()
    assert [a["outcome"] for a in (a1, a2, a3)] == ["error", "error", "succeeded"]
    assert a1["error_type"] == "RuntimeError" and "flaky failure number 1" in a1["error_message"]
    assert "flaky failure number 2" in a2["error_message"]
    gap1 = a2["started_at"] - a1["finished_at"]
    gap2 = a3["started_at"] - a2["finished_at"]
    assert gap1 >= 1.0, f"first retry came after {gap1:.2f} s, before its 1 s backoff"
    assert gap2 >= 2.0, f"second retry came after {gap2:.2f} s, before its 2 s backoff"
    assert gap2 > gap1, (gap1, gap2)
    retrying = [e for e in job.events() if e["to_state"] == "retrying"]
    assert [e["reason"] for e in retrying] == ["attempt 1: error; retry in 1.0 s", "attempt 2: error; retry in 2.0 s"]
    paths = [a["output_path"] for a in (a1, a2, a3)]
    assert len(set(paths)) == 3, paths
    for number, p in enumerate(paths, 1):
        assert Path(p).is_file() and Path(p).parent.name == str(number), p
    assert "flaky failure number 1" in Path(paths[0]).read_text()


# --- 3. timeouts -----------------------------------------------------------------------------------------
def _cli(*args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nbjobs", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def test_cli_timeout_2s_on_sleep_60_ends_timed_out(home, worker):
    """How soon after its timeout the job ends is measured by benchmarks/bench_stop.py."""
    r = _cli("run", "-c", "import time\ntime.sleep(60)", "--name", "sleepy", "--timeout", "2", "--wait",
             "--no-worker")
    assert r.returncode == 1, (r.stdout, r.stderr)
    job_id = r.stdout.split()[0]
    [row] = _rows(home, "SELECT * FROM jobs WHERE id = ?", (job_id,))
    assert row["state"] == "timed_out" and row["reason"] == "timeout"
    ran = row["finished_at"] - row["started_at"]
    assert ran >= 2.0, f"a 2 s timeout ended the job after {ran:.1f} s"
    assert "timeout of 2 s" in row["error_message"]
    stopped_after = float(row["error_message"].split("stopped after ")[1].split(" s")[0])
    assert stopped_after >= 2.0, row["error_message"]
    assert "timed_out" in r.stdout and "stopped after" in r.stdout
    [a] = _rows(home, "SELECT * FROM attempts WHERE job_id = ?", (job_id,))
    assert a["outcome"] == "timeout" and a["finished_at"] is not None
    _wait_for(lambda: not _kernel_pids(home, [job_id]), 10, "the timed-out job's kernel to exit")


def test_cli_cell_timeout_ends_timed_out_with_the_error_in_the_cell(home, worker):
    r = _cli("run", "-c", "import time\ntime.sleep(60)", "--name", "slow-cell", "--cell-timeout", "1", "--wait",
             "--no-worker")
    assert r.returncode == 1, (r.stdout, r.stderr)
    job_id = r.stdout.split()[0]
    [row] = _rows(home, "SELECT * FROM jobs WHERE id = ?", (job_id,))
    assert (row["state"], row["reason"]) == ("timed_out", "cell_timeout"), dict(row)
    assert row["error_type"] == "CellTimeoutError", row["error_type"]
    assert "timed out" in row["error_message"] and "1 seconds" in row["error_message"]
    [a] = _rows(home, "SELECT * FROM attempts WHERE job_id = ?", (job_id,))
    assert a["outcome"] == "cell_timeout"
    # as papermill shows a failing cell: the error is in the timed-out cell's outputs
    import nbformat
    nb = nbformat.read(a["output_path"], as_version=4)
    [cell] = [c for c in nb.cells if "time.sleep(60)" in c.source]
    errors = [o for o in cell.outputs if o.output_type == "error"]
    assert [e.ename for e in errors] == ["CellTimeoutError"] and "1 seconds" in errors[0].evalue
    assert cell.metadata.papermill["exception"] is True
    _wait_for(lambda: not _kernel_pids(home, [job_id]), 10, "the job's kernel to exit")


# --- 4. cancel from another process --------------------------------------------------------------------
def test_cancel_running_job_from_another_process(home, worker, tmp_path):
    marker = tmp_path / "cancel-marker"
    code = f"import os, pathlib, time\npathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\ntime.sleep(60)"
    job = nbjobs.submit(code, name="to-cancel", start_worker=False)
    _wait_for(marker.exists, JOB_WAIT, "the job's cell to start")
    kernel_pid = int(marker.read_text())
    kernel = _proc_id(kernel_pid)
    assert kernel and _kernel_pids(home, [job.id]) == {kernel_pid}
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "nbjobs", "cancel", job.id[:10]], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    _wait_for(lambda: job.state.terminal, 10, "the cancelled job to end")
    rec = job.record
    assert rec.state == nbjobs.State.CANCELLED and rec.reason == "cancelled"
    [requested] = [e for e in job.events() if e["reason"] == "cancel requested"]
    # how soon after the request the job ends: benchmarks/bench_stop.py
    assert t0 <= requested["at"] <= rec.finished_at
    [a] = job.attempts()
    assert a["outcome"] == "cancelled" and a["error_type"] == "Cancelled"
    _wait_for(lambda: not _alive(kernel), 10, "the cancelled job's kernel to exit")
    assert _kernel_pids(home, [job.id]) == set()
    events = [(e["to_state"], e["reason"], e["actor"]) for e in job.events()]
    assert ("running", "cancel requested") == events[2][:2]
    assert events[2][2].startswith("api:"), events  # requested by the other process ...
    assert not events[2][2].endswith(f":{os.getpid()}")  # ... not by this one
    assert events[-1][0] == "cancelled"


# --- 5. many submitters while workers drain ---------------------------------------------------------------
def _submitter(home: str, k: int, n: int, barrier, results) -> None:
    """One submitting process: ``n`` trivial cell jobs, every other one with an idempotency key
    (submitted twice: the second must return the first job).  All submitters start together."""
    import nbjobs as nj

    ids, errors, dupes = [], [], 0
    barrier.wait(60)
    for i in range(n):
        try:
            if i % 2:
                key = f"submitter-{k}-{i}"
                job = nj.submit(f"x = {i}", name=f"s{k}-{i}", key=key, home=home, start_worker=False)
                again = nj.submit(f"x = {i}", name=f"s{k}-{i}", key=key, home=home, start_worker=False)
                dupes += again.id != job.id
            else:
                job = nj.submit(f"x = {i}", name=f"s{k}-{i}", home=home, start_worker=False)
            ids.append(job.id)
        except Exception as exc:  # every error is a failure of the test, counted and shown
            errors.append(f"{type(exc).__name__}: {exc}")
    results.put({"ids": ids, "errors": errors, "dupes": dupes, "pid": os.getpid()})


def test_four_submitters_1000_jobs_while_two_workers_drain(home):
    t_begin = time.monotonic()
    workers = [start_worker(home, "--concurrency", "2", "--grace", "2") for _ in range(2)]
    try:
        ctx = multiprocessing.get_context("spawn")
        t0 = time.monotonic()
        barrier, queue = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_submitter, args=(str(home), k, 250, barrier, queue)) for k in range(4)]
        for p in procs:
            p.start()
        results = [queue.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
        submit_time = time.monotonic() - t0
        assert [p.exitcode for p in procs] == [0] * 4
        assert len({r["pid"] for r in results}) == 4
        errors = [e for r in results for e in r["errors"]]
        assert errors == [], errors[:5]
        assert sum(r["dupes"] for r in results) == 0, "a keyed resubmit created a second job"
        returned = [i for r in results for i in r["ids"]]
        assert len(returned) == 1000 and len(set(returned)) == 1000
        rows = {r["id"]: r for r in _rows(home, "SELECT id, state, idem_key FROM jobs")}
        assert len(rows) == 1000, f"{len(rows)} job rows for 1000 submits"
        assert set(returned) == set(rows)
        assert sum(r["idem_key"] is not None for r in rows.values()) == 500
        # let the workers go on draining until a few jobs have run (each costs ~1 s of CPU and a
        # kernel start, so not all 1000 will; the rest is cancelled below)
        _wait_for(lambda: _rows(home, "SELECT count(*) FROM jobs WHERE state = 'succeeded'")[0][0] >= 4, 90,
                  "the two workers to finish 4 jobs")
    finally:
        for w in workers:  # no new claims; what still runs gets 2 s, then goes back to the queue
            w.send_signal(signal.SIGTERM)
        outs = [stop_worker(w) for w in workers]
    assert all(w.returncode == 0 for w in workers), outs
    states = {}
    for r in _rows(home, "SELECT state FROM jobs"):
        states[r["state"]] = states.get(r["state"], 0) + 1
    ran = states.get("succeeded", 0)
    assert set(states) <= {"succeeded", "queued"}, states  # finished ones succeeded; the rest wait
    assert ran >= 4, f"the two workers finished only {ran} jobs"
    # the workers drained while the submitters were still writing
    first_claim = _rows(home, "SELECT min(started_at) FROM attempts")[0][0]
    last_submit = _rows(home, "SELECT max(submitted_at) FROM jobs")[0][0]
    assert first_claim < last_submit, "no job was claimed before the last submit"
    # finished attempts: each succeeded job ran once and succeeded once
    attempts = _rows(home, "SELECT job_id, outcome FROM attempts")
    assert sum(a["outcome"] == "succeeded" for a in attempts) == ran
    assert {a["outcome"] for a in attempts} <= {"succeeded", "released"}
    # what is left is cancelled, so the test ends here
    t_cancel = time.monotonic()
    left = [r["id"] for r in _rows(home, "SELECT id FROM jobs WHERE state NOT IN ('succeeded')")]
    for job_id in left:
        nbjobs.cancel(job_id)
    cancel_time = time.monotonic() - t_cancel
    final = _rows(home, "SELECT state, count(*) AS n FROM jobs GROUP BY state")
    assert {r["state"]: r["n"] for r in final} == ({"succeeded": ran, "cancelled": 1000 - ran} if left else
                                                   {"succeeded": 1000})
    print(f"\n1000 jobs submitted by 4 processes in {submit_time:.1f} s; {ran} ran to success meanwhile, "
          f"{len(left)} cancelled in {cancel_time:.1f} s; {time.monotonic() - t_begin:.1f} s in all")
    assert _job_processes(home, returned) == {}


# --- 6. a kernel that dies mid-job --------------------------------------------------------------------------
def test_kernel_death_is_retried_and_second_attempt_succeeds(home, worker, tmp_path):
    marker = tmp_path / "died-once"
    code = textwrap.dedent(f"""\
        import os, pathlib, nbjobs
        marker = pathlib.Path({str(marker)!r})
        if not marker.exists():
            marker.write_text('x')
            os._exit(1)
        nbjobs.record('survived', True)
        """)
    job = nbjobs.submit(code, name="dies-once", retries=1, start_worker=False)
    job.wait(JOB_WAIT)
    r = job.record
    assert r.state == nbjobs.State.SUCCEEDED, r.error_message
    assert job.result() == {"survived": True}
    a1, a2 = job.attempts()
    assert a1["outcome"] == "kernel_died" and a1["error_type"] == "DeadKernelError"
    assert a2["outcome"] == "succeeded"
    assert r.attempts == 2 and r.failures == 1
    assert any(e["reason"] and e["reason"].startswith("attempt 1: kernel_died; retry in") for e in job.events())


def test_kernel_death_with_no_retry_left_is_a_dead_letter(home, worker):
    job = nbjobs.submit("import os\nos._exit(1)", name="dies-always", retries=1,
                        backoff={"base": 0.1, "jitter": "none"}, start_worker=False)
    job.wait(JOB_WAIT)
    r = job.record
    assert r.state == nbjobs.State.FAILED and r.reason == "kernel_died"
    assert [a["outcome"] for a in job.attempts()] == ["kernel_died", "kernel_died"]
    assert [d.id for d in nbjobs.dead_letters()] == [job.id]


def test_kernel_killed_before_the_first_cell_is_requeued_not_charged(home):
    """A kernel that dies before the job's code ran (here: killed while it starts; in the wild: a
    port taken, out of memory) is the system's failure: the attempt is ``kernel_lost`` and the
    job, which asked for no retries, runs again and succeeds.  (The cold path: a warm kernel has
    answered long before a job takes it.)"""
    w = start_worker(home, "--no-warm")
    try:
        job = nbjobs.submit("x = 1", name="dies-starting", start_worker=False)
        kernel = _wait_for(lambda: _kernel_pids(home, [job.id]), JOB_WAIT, "the job's kernel process", every=0.002)
        for pid in kernel:  # the process exists; it is still importing ipykernel, far from ready
            os.kill(pid, signal.SIGKILL)
        job.wait(JOB_WAIT)
    finally:
        stop_worker(w)
    r = job.record
    assert r.state == nbjobs.State.SUCCEEDED, r
    a1, a2 = job.attempts()
    assert (a1["outcome"], a1["error_type"]) == ("kernel_lost", "KernelLost"), (a1["outcome"], a1["error_message"])
    assert "before the job's code ran" in a1["error_message"]
    assert a2["outcome"] == "succeeded"
    assert (r.failures, r.infra_failures, r.retries) == (0, 1, 0)


# --- 7. the runner kills its kernel when its worker is SIGKILLed --------------------------------------------
def test_sigkilled_worker_leaves_no_orphaned_kernel(home, tmp_path):
    marker = tmp_path / "orphan-marker"
    code = f"import os, pathlib, time\npathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\ntime.sleep(60)"
    w = start_worker(home)
    try:
        job = nbjobs.submit(code, name="orphan", start_worker=False)
        _wait_for(marker.exists, JOB_WAIT, "the job's cell to start")
        procs = _wait_for(lambda: (p := _job_processes(home, [job.id])) and "kernel" in p.values() and p, 10,
                          "the job's kernel to be recorded")
        kinds = sorted(procs.values())
        assert kinds.count("kernel") == 1 and kinds.count("runner") == 1 and set(kinds) <= {"kernel", "runner", "pool"}
        kernel = next(p for p, kind in procs.items() if kind == "kernel")
        assert kernel[0] == int(marker.read_text())
        w.kill()
        w.wait(10)
        killed_at = time.monotonic()
    finally:
        stop_worker(w)
    _wait_for(lambda: not any(_alive(p) for p in procs), 10,  # how soon: benchmarks/bench_stop.py
              "the runner host, the job's kernel and the pool's kernel of a SIGKILLed worker to exit")
    gone_after = time.monotonic() - killed_at
    assert _job_processes(home, [job.id]) == {}
    # the job itself is still 'running' on a dead lease: the next worker would reclaim it
    assert job.state == nbjobs.State.RUNNING
    print(f"\norphaned runner and kernel gone {gone_after:.1f} s after the worker's SIGKILL")


def test_worker_killed_while_its_runner_host_starts_stops_the_host_at_once(home):
    """The narrowest window: the worker dies right after it spawned its runner host, before the host
    looked at its parent.  The host must still notice at once (it is told the worker's pid) and
    never start a kernel, for the pool or for a job.  (A runner used to watch whatever parent it
    found at start-up, i.e. the reaper, and lived on for seconds importing papermill.)"""
    w = start_worker(home, env={"NBJOBS_LEASE_SECONDS": "1"})
    try:
        job = nbjobs.submit("import time\ntime.sleep(3)", name="early-kill", start_worker=False)
        runners = _wait_for(lambda: _job_processes(home, [job.id]), 30, "the worker's runner host", every=0.001)
        w.kill()  # the host is a few milliseconds old: still importing, not yet watching its parent
        w.wait(10)
        killed_at = time.monotonic()
    finally:
        stop_worker(w)
    assert sorted(runners.values()) == ["runner"], runners
    # it exits (an orphan that keeps watching the reaper never would); how soon: benchmarks/bench_stop.py
    _wait_for(lambda: not any(_alive(p) for p in runners), 10, f"the orphaned runner host {runners} to exit")
    # and no kernel is started afterwards, neither the job's nor a warm one
    until = max(killed_at + 4, time.monotonic() + 1)
    while time.monotonic() < until:
        assert not [k for k in _job_processes(home, [job.id]).values() if k in ("kernel", "pool")], \
            "an orphaned runner host started a kernel"
        time.sleep(0.1)
    assert _job_processes(home, [job.id]) == {}
    assert job.state in (nbjobs.State.QUEUED, nbjobs.State.RUNNING)  # a later worker runs it (or reclaims it)


# --- 8. idempotency keys raced through the CLI ---------------------------------------------------------------
def test_six_concurrent_cli_submits_with_one_key_make_one_job(home):
    env = dict(os.environ, NBJOBS_HOME=str(home))
    cmd = [sys.executable, "-m", "nbjobs", "run", "-c", "x = 1", "--key", "same", "--no-worker"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, [e for _, e in outs]
    ids = {o.strip() for o, _ in outs}
    assert len(ids) == 1, ids
    rows = _rows(home, "SELECT id, idem_key FROM jobs")
    assert [(r["id"], r["idem_key"]) for r in rows] == [(ids.pop(), "same")]
    assert len(_rows(home, "SELECT * FROM events")) == 1  # one 'submitted' event, from the winner
