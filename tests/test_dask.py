"""The Dask executor on real clusters: a `LocalCluster` of worker processes, and a scheduler plus
two workers started with Dask's own command line on 127.0.0.1, each worker in its own temporary
folder and without NBJOBS_HOME, as on another machine.  Real kernels, real SQLite, real workers."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import nbjobs
from nbjobs.errors import BadInput
from nbjobs.store import Store

from support.notebooks import INSIDE, assert_warm_equals_cold, write_notebook
from support.procs import start_worker, stop_worker, wait_for

distributed = pytest.importorskip("distributed")

pytestmark = [pytest.mark.dask, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


def _env_without_home() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBJOBS_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return env


# --- clusters, shared by the module -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def cli_cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, w0 declaring ``GPU=1``; yields the address."""
    base = tmp_path_factory.mktemp("dask-cli")
    env = _env_without_home()
    sched_file = base / "scheduler.json"
    procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched_file)], cwd=base, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        wait_for(lambda: sched_file.exists() and sched_file.stat().st_size, 60, "the dask scheduler")
        address = json.loads(sched_file.read_text())["address"]
        for i in range(2):
            wdir = base / f"worker{i}"
            wdir.mkdir()
            procs.append(subprocess.Popen(
                ["dask", "worker", address, "--nthreads", "1", "--nworkers", "1", "--name", f"w{i}",
                 "--local-directory", str(wdir), "--no-dashboard", "--host", "127.0.0.1",
                 *(["--resources", "GPU=1"] if i == 0 else [])],
                cwd=wdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture
def dask_worker(home, local_client):
    """A head-node worker (in this process) running jobs on the module's LocalCluster."""
    from nbjobs.executors.dask import DaskExecutor
    from nbjobs.worker import Worker

    w = Worker(home, concurrency=2, executor=DaskExecutor(client=local_client), grace=5)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    wait_for(lambda: w.store is not None and nbjobs.summary(home=home)["workers"], 30, "the worker to register")
    yield w
    w.stop(0)
    t.join(60)


@pytest.fixture
def cli_worker(home, cli_cluster):
    """A real `nbjobs worker --executor dask --scheduler ADDRESS` process for this test's home."""
    proc = start_worker(home, "--executor", "dask", "--scheduler", cli_cluster, "--concurrency", "2",
                        "--grace", "5")
    yield proc
    stop_worker(proc)


def _cluster_workers(address_or_client) -> set[str]:
    if isinstance(address_or_client, str):
        with distributed.Client(address_or_client, timeout=30) as c:
            return set(c.scheduler_info()["workers"])
    return set(address_or_client.scheduler_info()["workers"])


def _check_remote(job, workers: set[str]) -> dict:
    attempt = job.attempts()[-1]
    assert attempt["versions"]["executor"] == "dask"
    assert attempt["versions"]["dask_worker"] in workers
    return attempt


# --- a LocalCluster of worker processes ----------------------------------------------------------------
def test_cell_and_notebook_jobs_with_outputs(home, tmp_path, dask_worker, local_client):
    import numpy as np

    cell = nbjobs.submit("import numpy as np\nprint('hello from dask')\nx = n * 6\narr = np.arange(n)",
                         inputs={"n": 7}, outputs=["x", "arr"], start_worker=False)
    nb = write_notebook(tmp_path / "nb.ipynb", ["import nbjobs\nnbjobs.record('total', a + 1)\nprint('nb ran')"],
                        parameters="a = 1")
    nbj = nbjobs.run_notebook(nb, parameters={"a": 41}, start_worker=False)
    failing = nbjobs.submit("y = 1\nraise ValueError('remote boom')", start_worker=False)
    nbjobs.wait([cell, nbj, failing], timeout=120)

    assert cell.state == nbjobs.State.SUCCEEDED, cell.record.error_message
    res = cell.result()
    assert res["x"] == 42 and np.array_equal(res["arr"], np.arange(7))
    assert "hello from dask" in cell.logs()
    attempt = _check_remote(cell, _cluster_workers(local_client))
    assert Path(attempt["output_path"]).is_file()  # the output notebook came back to the head's run folder
    assert attempt["output_path"].startswith(str(home))

    assert nbj.state == nbjobs.State.SUCCEEDED and nbj.result() == {"total": 42}
    out = json.loads(Path(nbj.attempts()[-1]["output_path"]).read_text())
    assert any("nb ran" in "".join(o.get("text", "")) for c in out["cells"] for o in c.get("outputs", []))

    rec = failing.record
    assert rec.state == nbjobs.State.FAILED
    assert (rec.error_type, rec.error_message, rec.error_cell) == ("ValueError", "remote boom", 1)
    assert "remote boom" in rec.error_traceback
    summary = nbjobs.summary(home=home)
    assert summary["executors"] == [f"dask@{local_client.dashboard_link}"]
    from nbjobs.panel import header_html, header_text

    assert f'href="{local_client.dashboard_link}"' in header_html(summary)  # the panel links the dashboard
    assert "executor dask (http" in header_text(summary)


def test_progress_and_log_lines_arrive_while_running(home, dask_worker):
    code = "import time\nprint('first line', flush=True)\ntime.sleep(4)"
    job = nbjobs.submit(code + "\n", start_worker=False, outputs=["time"])  # a wrapper cell after it: not counted
    wait_for(lambda: "first line" in job.logs() and job.state == nbjobs.State.RUNNING, 60,
             "the log line on the head node while the job runs")
    job.wait(60)
    assert job.state == nbjobs.State.SUCCEEDED
    assert job.logs().count("first line") == 1  # shipped once, not again with the result
    rec = job.record
    assert rec.progress_done == rec.progress_total == 1 and rec.began_at is not None  # the user's one cell


def test_timeout_reaches_the_remote_kernel(home, dask_worker):
    job = nbjobs.submit("import time\ntime.sleep(120)", timeout=3, start_worker=False)
    wait_for(lambda: job.state == nbjobs.State.RUNNING, 60, "the job to start")
    job.wait(60)
    rec = job.record
    assert rec.state == nbjobs.State.TIMED_OUT  # stopped, not left to sleep its 120 s
    assert rec.finished_at - rec.started_at >= 3  # not before its timeout


def test_large_files_over_the_ship_limit(home, tmp_path, local_client):
    """Over the limit: through the shared storage URL when one is given, else a clear note."""
    from nbjobs.executors.dask import DaskExecutor
    from nbjobs.worker import Worker

    storage = tmp_path / "shared"
    code = "import nbjobs\nnbjobs.record('blob', 'x' * 200_000)"
    for ex, expect in ((DaskExecutor(client=local_client, ship_limit=50_000, storage=f"file://{storage}"), True),
                       (DaskExecutor(client=local_client, ship_limit=50_000), False)):
        job = nbjobs.submit(code, start_worker=False)
        Worker(home, concurrency=1, executor=ex, idle_exit=0.5).run()
        assert job.state == nbjobs.State.SUCCEEDED, job.record.error_message
        if expect:
            assert job.result()["blob"] == "x" * 200_000
            assert "came through the shared storage" in job.logs()
            assert list(storage.rglob("*.json"))
        else:
            assert "was not shipped back from the Dask worker" in job.logs()
            with pytest.raises(nbjobs.NbjobsError, match="missing its file"):
                job.result()


# --- `dask scheduler` + 2 `dask worker` from the command line, a real `nbjobs worker` --------------------
def test_cli_cluster_jobs(home, tmp_path, cli_cluster, cli_worker):
    nb = write_notebook(tmp_path / "report.ipynb",
                        ["import os, nbjobs\nnbjobs.record('cwd_ok', os.path.isdir('.'))\n"
                         "nbjobs.record('home', os.environ.get('NBJOBS_HOME'))\nnbjobs.record('n', n * 2)"],
                        parameters="n = 1")
    nbj = nbjobs.run_notebook(nb, parameters={"n": 21}, start_worker=False)
    cell = nbjobs.submit("import pandas as pd\ndf = pd.DataFrame({'a': [a, a + 1]})", inputs={"a": 1},
                         outputs=["df"], start_worker=False)
    bad = nbjobs.submit("1 / 0", start_worker=False)
    nbjobs.wait([nbj, cell, bad], timeout=150)
    assert nbj.state == nbjobs.State.SUCCEEDED, nbj.record.error_message
    assert nbj.result() == {"cwd_ok": True, "home": None, "n": 42}  # the Dask worker has no NBJOBS_HOME
    assert cell.result()["df"]["a"].tolist() == [1, 2]
    workers = _cluster_workers(cli_cluster)
    _check_remote(nbj, workers), _check_remote(cell, workers)
    assert bad.state == nbjobs.State.FAILED and bad.record.error_type == "ZeroDivisionError"
    live = Store(home / "nbjobs.db").live_workers()
    assert [w["executor"].split("@")[0] for w in live] == ["dask"]


def test_cancel_a_remote_running_job(home, cli_worker):
    job = nbjobs.submit("import time\nprint('started', flush=True)\ntime.sleep(120)", start_worker=False)
    wait_for(lambda: "started" in job.logs(), 90, "the remote job to run")
    kernel_pid = wait_for(lambda: job.attempts()[-1]["kernel_pid"], 30, "the remote kernel's pid")
    job.cancel()
    job.wait(60)  # how soon a cancel ends a job (local executor): benchmarks/bench_stop.py
    assert job.state == nbjobs.State.CANCELLED
    assert job.attempts()[-1]["outcome"] == "cancelled"
    assert "KeyboardInterrupt" in job.record.error_traceback  # interrupted in the cell, on the Dask worker
    wait_for(lambda: _gone(kernel_pid), 30, "the remote kernel to exit")  # its runner host stays, warm


def test_placement_by_resources(home, cli_cluster, cli_worker):
    """Jobs that need GPU=1 run only on the worker that declared it, one at a time (Dask holds the
    other, claimed, and its receipt says so; its timeout counts from its start there); a job that
    needs GPU=2, which no worker offers, is never claimed and says why."""
    from nbjobs import api
    from nbjobs.text import placement_text, receipt_text

    with distributed.Client(cli_cluster, timeout=30) as c:
        [gpu_worker] = [a for a, w in c.scheduler_info()["workers"].items() if (w.get("resources") or {}).get("GPU")]
    never = nbjobs.submit("x = 1", resources="GPU=2", start_worker=False)
    code = "import time\nprint('on the gpu', flush=True)\ntime.sleep(6)"
    # 2 x 6 s in a row: a timeout of 10 s counted from the claim would end the second one
    jobs = [nbjobs.submit(code, resources={"GPU": 1}, timeout=10, start_worker=False) for _ in range(2)]

    def one_runs_one_waits():
        runs = [j for j in jobs if "on the gpu" in j.logs()]
        waits = [j for j in jobs if "waiting for a Dask worker with GPU=1" in receipt_text(j.record)]
        return len(runs) == 1 and waits and waits[0] is not runs[0] and waits[0].state == nbjobs.State.RUNNING
    wait_for(one_runs_one_waits, 90, "one GPU job running and the other held by Dask, claimed")
    nbjobs.wait(jobs, timeout=150)
    for j in jobs:
        assert j.state == nbjobs.State.SUCCEEDED, (j.record.error_type, j.record.error_message)
        assert j.attempts()[-1]["versions"]["dask_worker"] == gpu_worker
        assert "waiting for" not in receipt_text(j.record)
    rec = never.record
    assert (rec.state, rec.attempts) == (nbjobs.State.QUEUED, 0)
    assert "needs GPU=2" in receipt_text(rec)
    why = placement_text(rec, api.workers(home=home))
    assert why.startswith("no live worker offers GPU=2 (worker ") and "dask executor: GPU=1 | none" in why, why
    never.cancel()


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_kill_9_of_a_dask_worker_mid_job_retries(home, cli_cluster, cli_worker):
    job = nbjobs.submit("import time\nprint('working', flush=True)\ntime.sleep(6)\nok = True", retries=2,
                        outputs=["ok"], start_worker=False)
    wait_for(lambda: "working" in job.logs(), 90, "the remote job to run")
    runner_pid = int(job.attempts()[-1]["versions"]["pid"])
    dask_worker_pid = _parent(runner_pid)  # the runner host is a child of the Dask worker process
    os.kill(dask_worker_pid, signal.SIGKILL)
    job.wait(150)
    attempts = job.attempts()
    assert job.state == nbjobs.State.SUCCEEDED, [(a["outcome"], a["error_message"]) for a in attempts]
    assert attempts[0]["outcome"] == "worker_lost"
    assert attempts[-1]["outcome"] == "succeeded" and len(attempts) == 2
    assert job.result() == {"ok": True}
    wait_for(lambda: _gone(runner_pid), 30, "the orphaned runner host of the dead Dask worker to exit")


def test_head_node_worker_killed_mid_job(home, cli_cluster):
    """kill -9 of the head-node worker: the remote attempt stops (its future is released), the
    lease expires, and the next head-node worker records the attempt as lost and retries the job."""
    env = {"NBJOBS_LEASE_SECONDS": "3"}
    head = start_worker(home, "--executor", "dask", "--scheduler", cli_cluster, env=env)
    job = nbjobs.submit("import time\nprint('working', flush=True)\ntime.sleep(5)\nok = 1", retries=1,
                        outputs=["ok"], start_worker=False)
    wait_for(lambda: "working" in job.logs(), 90, "the remote job to run")
    kernel_pid = wait_for(lambda: job.attempts()[-1]["kernel_pid"], 30, "the remote kernel's pid")
    head.kill()
    head.wait()
    wait_for(lambda: _gone(kernel_pid), 30, "the abandoned remote attempt to stop")
    second = start_worker(home, "--executor", "dask", "--scheduler", cli_cluster, env=env)
    try:
        job.wait(120)
    finally:
        stop_worker(second)
    attempts = job.attempts()
    assert [a["outcome"] for a in attempts] == ["worker_lost", "succeeded"]
    assert job.result() == {"ok": 1}


# --- warm runner hosts on every Dask worker (the nbjobs worker plugin) --------------------------------------
def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and not _gone(int(entry)):
            try:
                if _parent(int(entry)) == pid:
                    out.append(int(entry))
            except (OSError, IndexError):
                continue
    return out


def _hosts_and_kernels(client) -> dict[str, dict]:
    """Per Dask worker: the runner hosts it started and their kernels, as /proc shows them."""
    out = {}
    for address, pid in client.run(os.getpid).items():
        hosts = [h for h in _children(pid) if b"nbjobs.runner\0--serve" in _cmdline(h)]
        kernels = [k for h in hosts for k in _children(h) if b"ipykernel" in _cmdline(k)]
        out[address] = {"hosts": hosts, "kernels": kernels}
    return out


def _warm_everywhere(client, hosts: int = 1):
    """Every Dask worker has ``hosts`` runner hosts with a warm kernel each (then that map), else None."""
    seen = _hosts_and_kernels(client)
    return seen if all(len(v["hosts"]) == hosts and len(v["kernels"]) == hosts for v in seen.values()) else None


def test_plugin_on_every_worker_joining_and_restarted_and_none_left_behind(local_client):
    from nbjobs.executors.dask import DaskExecutor

    ex = DaskExecutor(client=local_client)  # registers the plugin (again: the hosts already there stay)
    try:
        before = wait_for(lambda: _warm_everywhere(local_client), 90, "a warm runner host on each Dask worker")
        assert len(before) == 2
        cluster = local_client.cluster
        cluster.scale(3)
        local_client.wait_for_workers(3, timeout=60)
        joined = wait_for(lambda: (now := _warm_everywhere(local_client)) and len(now) == 3 and now, 90,
                          "the plugin's host and kernel on the worker that joined")
        [new] = set(joined) - set(before)
        procs = joined[new]["hosts"] + joined[new]["kernels"]
        local_client.restart_workers([new])  # a nanny restarts the worker process
        wait_for(lambda: all(_gone(p) for p in procs), 30, "the restarted worker's old host and kernel to exit")
        after = wait_for(lambda: (now := _warm_everywhere(local_client)) and len(now) == 3 and now, 90,
                         "a warm host on the restarted worker")
        cluster.scale(2)  # a worker closes: the plugin's teardown
        wait_for(lambda: len(local_client.scheduler_info()["workers"]) == 2, 60, "the third worker to leave")
        [gone] = set(after) - set(local_client.scheduler_info()["workers"])
        procs = after[gone]["hosts"] + after[gone]["kernels"]
        wait_for(lambda: all(_gone(p) for p in procs), 30, "the closed worker's host and kernel to exit")
    finally:
        ex.shutdown()


def test_warm_equals_cold_on_dask(tmp_path, monkeypatch, local_client):
    """A job in a warm kernel of a Dask worker's runner host, or in one its zygote forked, sees what a
    job in a cold one sees; a removed plugin leaves none of its hosts behind."""
    from nbjobs.executors.dask import DaskExecutor
    from nbjobs.executors.dask_plugin import plugin_name
    from nbjobs.worker import Worker

    workdir = tmp_path / "project"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    nb = write_notebook(workdir / "inside.ipynb", [INSIDE])
    seen = {}
    for label, pool, mode in (("warm", None, "pool"), ("cold", 0, "pool"), ("forked", 0, "fork")):
        home = tmp_path / f"{label}-home"
        ex = DaskExecutor(client=local_client, pool=pool, mode=mode)
        if pool is None:
            wait_for(lambda: _warm_everywhere(local_client), 90, "a warm kernel on each Dask worker")
        job = nbjobs.run_notebook(nb, name="inside", start_worker=False, home=home)
        Worker(home, concurrency=1, executor=ex, idle_exit=0.5).run()
        assert job.state == nbjobs.State.SUCCEEDED, job.record.error_message
        seen[label] = job.result()["inside"]
        [attempt] = job.attempts()
        seen[label].update(kernel_path=attempt["kernel_path"], submitted_at=job.record.submitted_at, kernelspec=json.loads(
            Path(job.record.output_path).read_text())["metadata"]["kernelspec"]["name"])
    warm, cold, forked = seen["warm"], seen["cold"], seen["forked"]
    assert (warm["kernel_path"], cold["kernel_path"], forked["kernel_path"]) == ("warm", "cold", "forked")
    assert warm["kernel_started"] < warm["submitted_at"] < cold["kernel_started"]
    assert forked["kernel_started"] > forked["submitted_at"]  # forked for the job, after it was submitted
    assert_warm_equals_cold(warm, cold, workdir)
    assert_warm_equals_cold(forked, cold, workdir)
    for name in (plugin_name(0), plugin_name(0, mode="fork")):
        local_client.unregister_worker_plugin(name)  # its teardown on every worker
    wait_for(lambda: _warm_everywhere(local_client), 30, "only the default plugin's host on each worker")


# --- clear errors -----------------------------------------------------------------------------------------
def test_unreachable_scheduler_is_one_clear_line(home):
    env = dict(os.environ, NBJOBS_HOME=str(home), NBJOBS_DASK_CONNECT_TIMEOUT="2")
    proc = subprocess.run([sys.executable, "-m", "nbjobs", "worker", "--executor", "dask", "--scheduler",
                           "tcp://127.0.0.1:9"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("code", [
    "import sys; sys.modules['distributed'] = None\n"
    "from nbjobs.executors import get_executor\n"
    "try:\n    get_executor('dask')\nexcept Exception as e:\n    print(type(e).__name__, e)",
])
def test_missing_extra_and_light_import(code):
    env = _env_without_home()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "BadInput the dask executor needs the dask extra: pip install 'nbjobs[dask]'"
    light = subprocess.run([sys.executable, "-c", "import nbjobs, nbjobs.api, nbjobs.worker, nbjobs.cli, sys; "
                            "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"],
                           env=env, capture_output=True, text=True, timeout=60)
    assert light.stdout.strip() == "[]"
    assert issubclass(BadInput, nbjobs.NbjobsError)
