"""The warm kernel pool: isolation between jobs, warm == cold from inside a job, and no kernel
left behind.  Real worker processes, runner hosts, papermill and kernels."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nbjobs
from nbjobs.executors.local import LocalExecutor
from nbjobs.kernels import kernel_exists
from support.notebooks import INSIDE, assert_warm_equals_cold, write_notebook
from support.procs import start_worker, stop_worker, wait_for

pytestmark = pytest.mark.slow
JOB_WAIT = 90


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _tree(pid: int) -> dict[int, bytes]:
    """Every live descendant of ``pid`` with its command line."""
    found, todo = {}, [pid]
    while todo:
        for child in _children(todo.pop()):
            try:
                found[child] = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            todo.append(child)
    return found


def _kernels(pid: int) -> set[int]:
    return {p for p, cmd in _tree(pid).items() if b"ipykernel" in cmd}


# --- isolation ------------------------------------------------------------------------------------------
DIRTY = textwrap.dedent("""\
    import builtins, os, sys, json
    LEAKED_GLOBAL = 42
    os.makedirs("elsewhere", exist_ok=True)
    os.chdir("elsewhere")
    os.environ["NBJOBS_LEAK"] = "yes"
    import tabnanny                      # a module no fresh kernel has imported
    builtins.divmod = lambda a, b: "patched"   # monkeypatch a builtin
    sys.path.append("/leaked/path")
    """)

PROBE = textwrap.dedent("""\
    import builtins, os, sys, nbjobs
    nbjobs.record("probe", {
        "global": "LEAKED_GLOBAL" in globals(),
        "cwd": os.getcwd(),
        "env": "NBJOBS_LEAK" in os.environ,
        "module": "tabnanny" in sys.modules,
        "divmod": divmod(7, 2),
        "path": "/leaked/path" in sys.path,
        "pid": os.getpid(),
    })
    """)


def test_a_job_sees_nothing_of_the_job_before_it_on_the_same_worker(home, tmp_path):
    proc = start_worker(home, "--concurrency", "1")
    try:
        dirty = nbjobs.submit(DIRTY + "import nbjobs; nbjobs.record('pid', os.getpid()); print(divmod(7, 2))",
                              name="dirty", start_worker=False)
        dirty.wait(JOB_WAIT)
        assert dirty.state == nbjobs.State.SUCCEEDED, dirty.record.error_message
        probe = nbjobs.submit(PROBE, name="probe", start_worker=False).wait(JOB_WAIT)
        assert probe.state == nbjobs.State.SUCCEEDED, probe.record.error_message
    finally:
        stop_worker(proc)
    assert "patched" in dirty.logs()  # the first job did change its kernel
    seen = probe.result()["probe"]
    assert seen == {"global": False, "cwd": str(tmp_path), "env": False, "module": False, "divmod": (3, 1),
                    "path": False, "pid": seen["pid"]}
    assert seen["pid"] != dirty.result()["pid"]  # another kernel process
    # both ran on the one runner host of this worker: the isolation is the kernel's, not the process's
    hosts = {a["pid"] for j in (dirty, probe) for a in j.attempts()}
    assert len(hosts) == 1, hosts


# --- warm == cold from inside the job -------------------------------------------------------------------
def _inside(home: Path, nb: Path, *worker_args: str) -> dict:
    proc = start_worker(home, *worker_args)
    try:
        if "--no-warm" not in worker_args:  # the pool's kernel is up and waiting before the job is submitted
            wait_for(lambda: _kernels(proc.pid), 60, "a warm kernel")
            time.sleep(2)
        job = nbjobs.run_notebook(nb, name="inside", start_worker=False, home=home)
        job.wait(JOB_WAIT)
        assert job.state == nbjobs.State.SUCCEEDED, job.record.error_message
    finally:
        stop_worker(proc)
    seen = job.result()["inside"]
    seen["submitted_at"] = job.record.submitted_at
    [attempt] = job.attempts()
    seen["warm"] = attempt["kernel_warm"]
    seen["kernelspec"] = json.loads(Path(job.record.output_path).read_text())["metadata"]["kernelspec"]["name"]
    return seen


def test_a_warm_kernel_is_indistinguishable_from_a_cold_one(tmp_path, monkeypatch):
    workdir = tmp_path / "project"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    nb = write_notebook(workdir / "inside.ipynb", [INSIDE])
    warm = _inside(tmp_path / "warm-home", nb)
    cold = _inside(tmp_path / "cold-home", nb, "--no-warm")
    # the warm kernel really was started before the job was submitted, the cold one after
    assert (warm["warm"], cold["warm"]) == (1, 0)
    assert warm["kernel_started"] < warm["submitted_at"] - 1, (warm["kernel_started"], warm["submitted_at"])
    assert cold["kernel_started"] > cold["submitted_at"] - 0.05, (cold["kernel_started"], cold["submitted_at"])
    assert_warm_equals_cold(warm, cold, workdir)
    for env, home in ((warm["env"], tmp_path / "warm-home"), (cold["env"], tmp_path / "cold-home")):
        assert env["NBJOBS_OUTPUT_DIR"].startswith(str(home / "runs"))


def test_secrets_reach_a_warm_kernel_and_never_its_output(home, monkeypatch):
    token = "warm-" + os.urandom(12).hex()
    proc = start_worker(home, env={"API_TOKEN": token})
    try:  # a warm kernel is waiting: it was started before the job, with the worker's environment
        wait_for(lambda: _kernels(proc.pid), 60, "a warm kernel")
        time.sleep(2)
        job = nbjobs.submit("import os, nbjobs\nprint('token', os.environ['API_TOKEN'])\n"
                            "nbjobs.record('n', len(os.environ['API_TOKEN']))\n"
                            "try:\n    nbjobs.record('leak', [os.environ['API_TOKEN']])\n"
                            "except ValueError as e:\n    nbjobs.record('refused', str(e))", secrets=["API_TOKEN"],
                            start_worker=False).wait(JOB_WAIT)
    finally:
        stop_worker(proc)
    refused = ("output 'leak' contains the value of secret API_TOKEN; secrets are never recorded "
               "(record something derived from it instead)")  # the warm kernel knows the job's secrets too
    assert job.state == nbjobs.State.SUCCEEDED and job.result() == {"n": len(token), "refused": refused}
    assert job.attempts()[0]["kernel_warm"] == 1
    assert "token [secret API_TOKEN]" in job.logs()
    for path in home.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path


# --- cold and warm give the same outcomes ---------------------------------------------------------------
KINDS = {
    "simple": ["x = 1", "print(x + 1)"],
    "parameters": ["print('n is', n)"],
    "broken": ["print('before')", "raise ValueError('broken on purpose')", "print('never')"],
    "sysexit": ["import sys\nsys.exit(3)", "print('never')"],
    "rich": ["from IPython.display import HTML, display\ndisplay(HTML('<b>hi</b>'))", "{'a': 1}"],
    "kernel death": ["import os\nos._exit(1)"],
}


def _outcomes(home: Path, notebooks: dict[str, Path], *worker_args: str) -> dict[str, tuple]:
    proc = start_worker(home, "--concurrency", "2", *worker_args)
    try:
        jobs = {k: nbjobs.run_notebook(nb, {"n": 7} if k == "parameters" else None, name=k, home=home,
                                       start_worker=False) for k, nb in notebooks.items()}
        nbjobs.wait(list(jobs.values()), timeout=JOB_WAIT)
    finally:
        stop_worker(proc)
    out = {}
    for kind, job in jobs.items():
        rec = job.record
        cells = []
        if rec.output_path and Path(rec.output_path).exists():
            for cell in json.loads(Path(rec.output_path).read_text())["cells"]:
                cells.append([(o.get("output_type"), "".join(o.get("text") or o.get("data", {}).get("text/plain")
                               or o.get("ename") or "")) for o in cell.get("outputs", [])])
        out[kind] = (rec.state.value, rec.error_type, rec.error_cell, cells)
    return out


def test_papermill_kinds_of_notebooks_end_the_same_cold_and_warm(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    notebooks = {k: write_notebook(tmp_path / f"{k.replace(' ', '_')}.ipynb", cells,
                                   parameters="n = 1" if k == "parameters" else None) for k, cells in KINDS.items()}
    warm = _outcomes(tmp_path / "warm", notebooks)
    cold = _outcomes(tmp_path / "cold", notebooks, "--no-warm")
    assert warm == cold
    assert warm["simple"][0] == "succeeded" and warm["broken"][:2] == ("failed", "ValueError")
    assert warm["parameters"][3][-1] == [("stream", "n is 7\n")]
    assert warm["kernel death"][:2] == ("failed", "DeadKernelError")


# --- no kernel left behind ------------------------------------------------------------------------------
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_no_pool_kernel_survives_its_worker(home, how):
    proc = start_worker(home, "--concurrency", "2", "--pool", "4")
    try:
        kernels = wait_for(lambda: len(_kernels(proc.pid)) >= 4 and _kernels(proc.pid), 60, "4 warm kernels")
        hosts = [p for p, cmd in _tree(proc.pid).items() if b"nbjobs.runner" in cmd]
        assert len(hosts) == 2, hosts
        proc.send_signal(how)
        proc.wait(30)
        wait_for(lambda: not any(_alive(p) for p in [*kernels, *hosts]), 10,
                 f"the pool's kernels and hosts to end after {how.name}")
    finally:
        stop_worker(proc)


def test_resizing_the_pool_kills_the_kernels_it_no_longer_wants(tmp_path):
    executor = LocalExecutor(concurrency=1, pool=3, workdir=tmp_path)
    executor.begin()
    try:
        three = wait_for(lambda: len(executor.pool_pids()) == 3 and executor.pool_pids(), 60, "3 warm kernels")
        executor.resize(1)
        wait_for(lambda: len(executor.pool_pids()) == 1, 30, "the pool to shrink to 1")
        kept = executor.pool_pids()
        wait_for(lambda: not any(_alive(p) for p in three if p not in kept), 10, "2 kernels to end")
        executor.resize(0)
        wait_for(lambda: not executor.pool_pids() and not any(_alive(p) for p in three), 10, "the last kernel to end")
    finally:
        executor.shutdown()
    assert not _kernels(os.getpid())


def test_a_kernel_the_pool_does_not_hold_starts_cold(home, tmp_path, monkeypatch):
    """A notebook asking for another kernel name runs on the cold path (and the name joins the pool)."""
    kernels_dir = tmp_path / "share" / "jupyter" / "kernels" / "other-python"
    kernels_dir.mkdir(parents=True)
    (kernels_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Other Python", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", f"{tmp_path / 'share' / 'jupyter'}{os.pathsep}{os.environ.get('JUPYTER_PATH', '')}")
    assert kernel_exists("other-python")
    nb = write_notebook(tmp_path / "other.ipynb", [INSIDE], kernel="other-python")
    proc = start_worker(home)
    try:
        wait_for(lambda: _kernels(proc.pid), 60, "a warm python3 kernel")
        first = nbjobs.run_notebook(nb, home=home, start_worker=False).wait(JOB_WAIT)
        wait_for(lambda: len(_kernels(proc.pid)) >= 2, 60, "a warm other-python kernel too")
        time.sleep(2)
        second = nbjobs.run_notebook(nb, home=home, start_worker=False).wait(JOB_WAIT)
    finally:
        stop_worker(proc)
    a, b = first.result()["inside"], second.result()["inside"]
    assert first.state == second.state == nbjobs.State.SUCCEEDED
    assert (first.attempts()[0]["kernel_warm"], second.attempts()[0]["kernel_warm"]) == (0, 1)
    assert a["kernel_started"] > first.record.submitted_at - 0.05  # cold: started for the job
    assert b["kernel_started"] < second.record.submitted_at - 1    # warm: started ahead
    assert json.loads(Path(second.record.output_path).read_text())["metadata"]["kernelspec"]["name"] == "other-python"


def test_worker_pool_flags(home):
    bad = subprocess.run([sys.executable, "-m", "nbjobs", "worker", "--pool", "-1"], capture_output=True, text=True,
                         env=dict(os.environ, NBJOBS_HOME=str(home)))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--pool must be from 0 to 64" in bad.stderr
    assert "--no-warm" in subprocess.run([sys.executable, "-m", "nbjobs", "worker", "--help"], capture_output=True,
                                         text=True).stdout
