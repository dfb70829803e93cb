"""The Python API (the nbjobs/api/ package) end to end: real SQLite, real workers, real papermill kernels."""
from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nbjobs
from support.notebooks import write_notebook
from support.procs import wait_for as _wait_for
from nbjobs.errors import WaitTimeout
from nbjobs.job import code_hash
from nbjobs.store import Store

JOB_WAIT = 60  # generous upper bound for one tiny papermill job on a loaded machine




def _marker_code(marker: Path, sleep: float, tail: str = "") -> str:
    """First attempt creates ``marker`` and sleeps; later attempts find it and finish at once."""
    return textwrap.dedent(f"""\
        import pathlib, time
        marker = pathlib.Path({str(marker)!r})
        if not marker.exists():
            marker.write_text("attempt 1 started")
            time.sleep({sleep})
        """) + tail


# --- outputs come back as what was recorded -------------------------------------------------------------
@pytest.mark.slow
def test_notebook_parameters_round_trip_with_exact_types(home, worker, tmp_path):
    nb = write_notebook(
        tmp_path / "params.ipynb",
        ["import nbjobs\nfor name in ['i', 'f', 's', 'l', 'd', 'b', 'z']:\n    nbjobs.record(name, globals()[name])"],
        parameters="i = 0\nf = 0.0\ns = ''\nl = []\nd = {}\nb = False\nz = 1")
    params = {"i": 7, "f": 2.5, "s": "Q3", "l": [1, "a", 2.5, None, True], "d": {"k": [1, 2], "nested": {"x": "y"}},
              "b": True, "z": None}
    job = nbjobs.run_notebook(nb, parameters=params)
    job.wait(JOB_WAIT)
    assert job.state == nbjobs.State.SUCCEEDED, job.record.error_message
    got = job.result()
    assert got == params
    for name, value in params.items():
        assert type(got[name]) is type(value), name
    assert type(got["l"][2]) is float and type(got["l"][0]) is int and got["l"][4] is True
    assert job.record.parameters == params


@pytest.mark.slow
def test_cell_job_records_dataframe_array_tuple_dict(home, worker):
    pd = pytest.importorskip("pandas")
    np = pytest.importorskip("numpy")
    code = textwrap.dedent("""\
        import nbjobs, numpy as np, pandas as pd
        nbjobs.record('df', pd.DataFrame({'x': [1, 2, 3], 'y': ['a', 'b', 'c']}, index=[10, 20, 30]))
        nbjobs.record('arr', np.arange(12, dtype='float32').reshape(3, 4))
        nbjobs.record('tup', (1, 'two', 3.0))
        nbjobs.record('dct', {'a': 1, 'b': [1.5, None]})
        """)
    job = nbjobs.submit(code, name="kinds")
    job.wait(JOB_WAIT)
    assert job.state == nbjobs.State.SUCCEEDED, job.record.error_message
    got = nbjobs.result(job.id)
    assert set(got) == {"df", "arr", "tup", "dct"}
    pd.testing.assert_frame_equal(got["df"], pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]}, index=[10, 20, 30]))
    assert isinstance(got["arr"], np.ndarray) and got["arr"].dtype == np.float32
    np.testing.assert_array_equal(got["arr"], np.arange(12, dtype="float32").reshape(3, 4))
    assert type(got["tup"]) is tuple and got["tup"] == (1, "two", 3.0)
    assert type(got["dct"]) is dict and got["dct"] == {"a": 1, "b": [1.5, None]}


# --- failures: plain papermill is the reference ------------------------------------------------------
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::Warning:nbformat")  # conftest's notebooks have no cell ids
def test_failing_notebook_agrees_with_plain_papermill(home, worker, tmp_path):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    bad = write_notebook(tmp_path / "bad.ipynb", ["x = 1", "raise ValueError('boom-42 went wrong')", "y = 2"])
    good = write_notebook(tmp_path / "good.ipynb", ["x = 1", "y = x + 1"])
    bad_job = nbjobs.run_notebook(bad)
    good_job = nbjobs.run_notebook(good)

    # the reference, while the worker runs ours
    with pytest.raises(PapermillExecutionError) as info:
        papermill.execute_notebook(str(bad), str(tmp_path / "pm-bad.ipynb"), progress_bar=False)
    papermill.execute_notebook(str(good), str(tmp_path / "pm-good.ipynb"), progress_bar=False)  # no raise
    ref = info.value

    nbjobs.wait([bad_job, good_job], timeout=JOB_WAIT)
    assert good_job.state == nbjobs.State.SUCCEEDED, good_job.record
    r = bad_job.record
    assert r.state == nbjobs.State.FAILED, r
    assert r.reason == "error"
    assert r.error_type == "ValueError" == ref.ename
    assert r.error_message == "boom-42 went wrong" == ref.evalue
    assert r.error_cell == ref.cell_index == 1
    assert "boom-42 went wrong" in r.error_traceback and "ValueError" in r.error_traceback
    [a] = bad_job.attempts()
    assert a["outcome"] == "error" and a["error_type"] == "ValueError" and a["error_cell"] == 1
    assert a["output_path"] and Path(a["output_path"]).is_file()
    assert Path(a["output_path"]).is_relative_to(home / "runs" / bad_job.id)
    # the output notebook shows the error, like papermill's
    import nbformat

    out = nbformat.read(a["output_path"], as_version=4)
    errors = [o for c in out.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert [e.ename for e in errors] == ["ValueError"]
    [g] = good_job.attempts()
    assert g["outcome"] == "succeeded" and good_job.record.error_type is None


# --- where and how it ran ---------------------------------------------------------------------------
@pytest.mark.slow
def test_cwd_is_the_submitters_directory_or_the_given_one(home, worker, tmp_path):
    assert Path.cwd() == tmp_path  # the home fixture chdirs here
    other = tmp_path / "elsewhere"
    other.mkdir()
    code = "import os, nbjobs; nbjobs.record('cwd', os.getcwd())"
    default = nbjobs.submit(code)
    given = nbjobs.submit(code, cwd=other)
    nbjobs.wait([default, given], timeout=JOB_WAIT)
    assert default.result()["cwd"] == str(tmp_path)
    assert given.result()["cwd"] == str(other)
    assert default.record.cwd == str(tmp_path) and given.record.cwd == str(other)


@pytest.mark.slow
def test_attempt_records_versions_and_code_hash(home, worker):
    import papermill

    job = nbjobs.submit("x = 1", name="meta").wait(JOB_WAIT)
    assert job.state == nbjobs.State.SUCCEEDED
    [a] = job.attempts()
    assert a["number"] == 1
    assert a["code_hash"] == job.record.code_hash == code_hash("cell", source="x = 1")
    assert a["kernel"] == "python3"
    v = a["versions"]
    assert v["nbjobs"] == nbjobs.__version__
    assert v["papermill"] == papermill.__version__
    assert v["python"] == platform.python_version()
    assert a["host"] == socket.gethostname() == v["host"]
    assert a["pid"] == worker.pid  # the worker that claimed it
    assert int(v["pid"]) not in (worker.pid, os.getpid())  # the runner is its own process
    assert a["worker_id"].startswith(f"{socket.gethostname()}-{worker.pid}-")
    assert a["started_at"] <= a["finished_at"]


@pytest.mark.slow
def test_progress_counts_the_users_code_cells_only(home, worker, tmp_path):
    plain = write_notebook(tmp_path / "three.ipynb", ["a = 1", "b = 2", "c = 3"])
    nb = write_notebook(tmp_path / "three-p.ipynb", ["a = n", "b = 2", "c = 3"], parameters="n = 0")
    plain_job = nbjobs.run_notebook(plain)
    param_job = nbjobs.run_notebook(nb, parameters={"n": 5})
    nbjobs.wait([plain_job, param_job], timeout=JOB_WAIT)
    p = plain_job.record
    assert p.state == nbjobs.State.SUCCEEDED
    assert p.progress_done == p.progress_total == 3
    q = param_job.record
    assert q.state == nbjobs.State.SUCCEEDED
    # the notebook's own parameters cell + 3 cells; papermill's injected cell is not the user's
    assert q.progress_done == q.progress_total == 4
    cell = nbjobs.submit("x = 1", inputs={"y": 2}, outputs=["x"]).wait(JOB_WAIT).record
    assert (cell.state, cell.progress_done, cell.progress_total) == (nbjobs.State.SUCCEEDED, 1, 1)  # no wrapper cells
    bad = write_notebook(tmp_path / "bad.ipynb", ["a = 1", "raise ValueError('x')", "c = 3"])
    failed = nbjobs.run_notebook(bad).wait(JOB_WAIT).record
    assert (failed.state, failed.progress_done, failed.progress_total) == (nbjobs.State.FAILED, 2, 3)  # reached


@pytest.mark.slow
def test_logs_capture_stdout_and_stderr(home, worker):
    job = nbjobs.submit("import sys\nprint('hello-from-job')\nprint('oops-on-stderr', file=sys.stderr)")
    job.wait(JOB_WAIT)
    assert job.state == nbjobs.State.SUCCEEDED
    text = job.logs()
    assert "hello-from-job" in text
    assert "oops-on-stderr" in text
    assert nbjobs.logs(job.id) == text
    assert job.logs(attempt=1) == text


@pytest.mark.slow
def test_get_by_prefix_and_list_by_state(home, worker):
    job = nbjobs.submit("x = 1", name="findme").wait(JOB_WAIT)
    queued = nbjobs.submit("x = 2", name="later", start_worker=False)
    for n in (4, 6, 8, 32):
        assert nbjobs.get(job.id[:n]) == job
    assert nbjobs.get(job.id[:6]).name == "findme"
    done = nbjobs.jobs(state="succeeded")
    assert job in done
    assert all(j.state == nbjobs.State.SUCCEEDED for j in done)
    assert [j.id for j in nbjobs.jobs(name="find*")] == [job.id]
    nbjobs.wait(queued, timeout=JOB_WAIT)  # the worker picks it up too
    assert {j.id for j in nbjobs.jobs(state="succeeded")} == {job.id, queued.id}
    with pytest.raises(nbjobs.NbjobsError, match="unknown state"):
        nbjobs.jobs(state="finished")


# --- cancel, retry, wait ------------------------------------------------------------------------
def test_cancel_queued_job_is_immediate(home):
    job = nbjobs.submit("import time; time.sleep(60)", start_worker=False)
    assert job.state == nbjobs.State.QUEUED
    assert nbjobs.cancel(job.id[:10]) == job
    assert job.state == nbjobs.State.CANCELLED
    assert job.attempts() == []
    assert [e["to_state"] for e in job.events()] == ["queued", "cancelled"]
    assert Store(home / "nbjobs.db").live_workers() == []  # nothing was started


def test_wait_timeout_on_unfinished_job(home):
    job = nbjobs.submit("import time; time.sleep(60)", start_worker=False)
    t0 = time.monotonic()
    with pytest.raises(WaitTimeout, match=job.short_id):
        job.wait(timeout=0.5)
    assert time.monotonic() - t0 >= 0.45  # it waited (how soon it gives up: benchmarks/bench_stop.py)
    with pytest.raises(WaitTimeout):
        nbjobs.wait([job.id], timeout=0.1)


@pytest.mark.slow
def test_cancel_running_job_then_retry_same_id(home, worker, tmp_path):
    marker = tmp_path / "cancel-marker"
    job = nbjobs.submit(_marker_code(marker, 60, "import nbjobs; nbjobs.record('second', True)\n"), name="sleepy")
    _wait_for(marker.exists, JOB_WAIT, "the job's cell to start")
    assert job.state == nbjobs.State.RUNNING
    with pytest.raises(WaitTimeout):  # a long job: wait gives up
        job.wait(timeout=0.5)

    nbjobs.cancel(job.id)
    job.wait(timeout=10)  # how soon a cancel ends a running job: benchmarks/bench_stop.py
    r = job.record
    assert r.state == nbjobs.State.CANCELLED, r
    [a1] = job.attempts()
    assert a1["outcome"] == "cancelled"
    # the kernel was interrupted (not killed): the traceback shows where the cell was
    assert "KeyboardInterrupt" in (a1["error_traceback"] or ""), a1
    assert "time.sleep" in a1["error_traceback"]

    again = nbjobs.retry(job.id[:8])
    assert again.id == job.id
    job.wait(JOB_WAIT)
    r = job.record
    assert r.state == nbjobs.State.SUCCEEDED, r.error_message
    assert r.attempts == 2
    assert [(a["number"], a["outcome"]) for a in job.attempts()] == [(1, "cancelled"), (2, "succeeded")]
    assert job.result() == {"second": True}
    assert "retried" in [e["reason"] for e in job.events()]


# --- the auto-started worker -----------------------------------------------------------------------
def _autostarted_pids(home: Path) -> list[int]:
    """Live `nbjobs worker --autostarted` processes of this home (read from /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            continue  # exited, not yet reaped
        if b"--autostarted" in cmd and f"NBJOBS_HOME={home}".encode() in env:
            pids.append(int(entry))
    return pids


def _kill_autostarted(home: Path) -> None:
    pids = set(_autostarted_pids(home))
    try:
        s = Store(home / "nbjobs.db")
        pids |= {w["pid"] for w in s.live_workers() if w["autostarted"]}
        s.close()
    except Exception:
        pass
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _autostarted_pids(home):
        time.sleep(0.1)
    for pid in _autostarted_pids(home):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def autostart_env(home, monkeypatch):
    """Auto-started workers of this test stop quickly (inherited through the environment)."""
    monkeypatch.setenv("NBJOBS_STOP_GRACE", "1")
    monkeypatch.setenv("NBJOBS_IDLE_EXIT", "60")
    yield home
    _kill_autostarted(home)


@pytest.mark.slow
def test_submit_autostarts_one_worker(autostart_env):
    home = autostart_env
    assert _autostarted_pids(home) == []
    job = nbjobs.submit("import nbjobs; nbjobs.record('answer', 6 * 7)")
    job.wait(JOB_WAIT)
    assert job.result() == {"answer": 42}
    store = Store(home / "nbjobs.db")
    [w] = store.live_workers()
    assert w["autostarted"] == 1
    assert job.attempts()[0]["worker_id"] == w["id"]
    assert _autostarted_pids(home) == [w["pid"]]
    # a second submit finds the live worker and starts none
    assert nbjobs.ensure_worker() is False
    os.kill(w["pid"], signal.SIGTERM)
    _wait_for(lambda: not _autostarted_pids(home), 15, "the auto-started worker to exit")
    assert store.live_workers() == []
    [row] = store.conn.execute("SELECT state FROM workers").fetchall()
    assert row["state"] == "stopped"


SUBMITTER = textwrap.dedent("""\
    import sys, time, nbjobs
    start = float(sys.argv[1])
    time.sleep(max(0.0, start - time.time()))
    for i in range(5):
        nbjobs.submit("x = %d" % i, name="race")
    """)


@pytest.mark.slow
def test_racing_submitters_start_exactly_one_worker(autostart_env, tmp_path):
    home = autostart_env
    Store(home / "nbjobs.db").close()  # the schema exists, so the race is about workers only
    start = time.time() + 1.5  # all three submit at the same moment, after their imports
    procs = [subprocess.Popen([sys.executable, "-c", SUBMITTER, str(start)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, out
    store = Store(home / "nbjobs.db")
    assert store.counts()["queued"] + store.counts()["running"] + store.counts()["succeeded"] == 15
    _wait_for(lambda: len(_autostarted_pids(home)) == 1 and store.live_workers(), 15,
              "the losers of the start race to exit")
    time.sleep(0.5)  # a late loser would show up now
    live = [w for w in store.live_workers() if w["autostarted"] == 1]
    assert len(live) == 1, live
    assert store.conn.execute("SELECT count(*) FROM workers").fetchone()[0] == 1
    assert _autostarted_pids(home) == [live[0]["pid"]]
    # and that one worker runs the jobs
    _wait_for(lambda: store.counts()["succeeded"] >= 1, JOB_WAIT, "the worker to run a job")
    for j in nbjobs.jobs(state="queued", limit=None):
        j.cancel()
    os.kill(live[0]["pid"], signal.SIGTERM)
    _wait_for(lambda: not _autostarted_pids(home), 20, "the auto-started worker to exit")
    assert store.counts()["running"] == 0


@pytest.mark.slow
def test_the_failing_cell_is_numbered_as_in_the_users_notebook(home, worker, tmp_path):
    from nbjobs.text import job_detail, user_cell_number

    nb = write_notebook(tmp_path / "p.ipynb", ["x = n", "raise ValueError('third')"], parameters="n = 0")
    r = nbjobs.run_notebook(nb, parameters={"n": 5}).wait(JOB_WAIT).record
    assert r.state == nbjobs.State.FAILED and r.error_cell == 3  # papermill's index: its injected cell shifts it
    assert user_cell_number(r.output_path, r.error_cell) == 3     # the user's parameters cell, x = n, then this
    assert "ValueError: third (cell 3 of the notebook)" in job_detail(nbjobs.get(r.id))
