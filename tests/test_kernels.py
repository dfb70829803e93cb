"""The kernel paths (forked from a zygote, warm from the pool, cold): isolation between jobs,
forked == warm == cold from inside a job, the zygote's life (restarted, replaced, unharmed by a
crashed child), and no kernel left behind.  Real worker processes, runner hosts, papermill and kernels."""
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
from nbjobs.executors.local import FORKED_AHEAD, LocalExecutor
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


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return None


def _clients(pid: int) -> int:
    """How many connections ``pid``'s Unix sockets with a path have accepted (a runner host's client
    connects two channels: shell and iopub)."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")}
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return 0
    return sum(1 for line in lines if len(f := line.split()) >= 8 and f[5] == "03" and f[6] in inodes)


def _zygotes(pid: int) -> set[int]:
    return {p for p, cmd in _tree(pid).items() if b"nbjobs/zygote.py" in cmd}


#: modules no fresh kernel imports, preloaded where a test compares forked kernels with cold ones
PRELOAD = "colorsys,tabnanny"
#: worker arguments per kernel path ("forked": forked ahead of the job; "forked now": forked for it)
PATH_ARGS = {"forked": ("--kernels", "fork"), "forked now": ("--kernels", "fork", "--pool", "0"),
             "warm": ("--kernels", "pool"), "cold": ("--kernels", "cold")}


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


RANDOM = "import random, numpy; nbjobs.record('random', [random.getrandbits(64), int(numpy.random.randint(2**62))])\n"


@pytest.mark.parametrize("path", ["warm", "forked"])
def test_a_job_sees_nothing_of_the_job_before_it_on_the_same_worker(home, tmp_path, path):
    extra = ("--preload", "numpy") if path == "forked" else ()
    proc = start_worker(home, "--concurrency", "1", *PATH_ARGS[path], *extra)
    try:
        dirty = nbjobs.submit(DIRTY + "import nbjobs; nbjobs.record('pid', os.getpid()); print(divmod(7, 2))\n" + RANDOM,
                              name="dirty", start_worker=False)
        dirty.wait(JOB_WAIT)
        assert dirty.state == nbjobs.State.SUCCEEDED, dirty.record.error_message
        probe = nbjobs.submit(PROBE + RANDOM, name="probe", start_worker=False).wait(JOB_WAIT)
        assert probe.state == nbjobs.State.SUCCEEDED, probe.record.error_message
    finally:
        stop_worker(proc)
    assert "patched" in dirty.logs()  # the first job did change its kernel
    seen = probe.result()["probe"]
    paths = [a["kernel_path"] for j in (dirty, probe) for a in j.attempts()]
    assert paths == ["forked"] * 2 if path == "forked" else set(paths) <= {"warm", "cold"}  # a job may beat the pool
    # each kernel has random generators of its own (a forked child re-seeds what it inherited)
    assert dirty.result()["random"][0] != probe.result()["random"][0]
    assert dirty.result()["random"][1] != probe.result()["random"][1]
    assert seen == {"global": False, "cwd": str(tmp_path), "env": False, "module": False, "divmod": (3, 1),
                    "path": False, "pid": seen["pid"]}
    assert seen["pid"] != dirty.result()["pid"]  # another kernel process
    # both ran on the one runner host of this worker: the isolation is the kernel's, not the process's
    hosts = {a["pid"] for j in (dirty, probe) for a in j.attempts()}
    assert len(hosts) == 1, hosts


# --- warm == cold from inside the job -------------------------------------------------------------------
def _inside(home: Path, nb: Path, path: str, *worker_args: str) -> dict:
    proc = start_worker(home, *PATH_ARGS[path], *worker_args)
    try:
        if path in ("warm", "forked"):  # the pool's kernel is up and waiting before the job is submitted
            wait_for(lambda: _kernels(proc.pid), 60, f"a {path} kernel")
            time.sleep(2)
        job = nbjobs.run_notebook(nb, name="inside", start_worker=False, home=home)
        job.wait(JOB_WAIT)
        assert job.state == nbjobs.State.SUCCEEDED, job.record.error_message
    finally:
        stop_worker(proc)
    seen = job.result()["inside"]
    seen["submitted_at"] = job.record.submitted_at
    [attempt] = job.attempts()
    seen["kernel_path"] = attempt["kernel_path"]
    seen["kernelspec"] = json.loads(Path(job.record.output_path).read_text())["metadata"]["kernelspec"]["name"]
    return seen


@pytest.mark.parametrize("path", ["warm", "forked", "forked now"])
def test_a_warm_or_forked_kernel_is_indistinguishable_from_a_cold_one(tmp_path, monkeypatch, path):
    """From inside the job, a warm kernel is a cold one; a forked kernel (forked ahead of the job
    and connected, or forked for it) is a cold one with the same preloads (``sys.modules``
    included: the zygote imports nothing a cold kernel would not)."""
    workdir = tmp_path / "project"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    nb = write_notebook(workdir / "inside.ipynb", [INSIDE])
    preload = ("--preload", PRELOAD) if path.startswith("forked") else ()
    warm = _inside(tmp_path / f"{path}-home", nb, path, *preload)
    cold = _inside(tmp_path / "cold-home", nb, "cold", *preload)
    assert (warm["kernel_path"], cold["kernel_path"]) == (path.split()[0], "cold")
    # the warm kernel and the first forked one really were started before the job was submitted,
    # the cold one and the one forked now after
    if path in ("warm", "forked"):
        assert warm["kernel_started"] < warm["submitted_at"] - 1, (warm["kernel_started"], warm["submitted_at"])
    else:
        assert warm["kernel_started"] > warm["submitted_at"] - 0.05, (warm["kernel_started"], warm["submitted_at"])
    if path.startswith("forked"):
        assert set(PRELOAD.split(",")) <= set(warm["modules"])
    assert cold["kernel_started"] > cold["submitted_at"] - 0.05, (cold["kernel_started"], cold["submitted_at"])
    assert warm["cmdline"] == cold["cmdline"] == 1  # ps shows the kernel's command
    assert_warm_equals_cold(warm, cold, workdir)
    for env, home in ((warm["env"], tmp_path / f"{path}-home"), (cold["env"], tmp_path / "cold-home")):
        assert env["NBJOBS_OUTPUT_DIR"].startswith(str(home / "runs"))


def test_secrets_reach_a_warm_kernel_and_never_its_output(home, monkeypatch):
    token = "warm-" + os.urandom(12).hex()
    proc = start_worker(home, "--kernels", "pool", env={"API_TOKEN": token})
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
    assert job.attempts()[0]["kernel_path"] == "warm"
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


def test_papermill_kinds_of_notebooks_end_the_same_cold_warm_and_forked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    notebooks = {k: write_notebook(tmp_path / f"{k.replace(' ', '_')}.ipynb", cells,
                                   parameters="n = 1" if k == "parameters" else None) for k, cells in KINDS.items()}
    warm = _outcomes(tmp_path / "warm", notebooks, *PATH_ARGS["warm"])
    forked = _outcomes(tmp_path / "forked", notebooks, *PATH_ARGS["forked"])
    cold = _outcomes(tmp_path / "cold", notebooks, "--no-warm")
    assert warm == cold
    assert forked == cold
    assert warm["simple"][0] == "succeeded" and warm["broken"][:2] == ("failed", "ValueError")
    assert warm["parameters"][3][-1] == [("stream", "n is 7\n")]
    assert warm["kernel death"][:2] == ("failed", "DeadKernelError")


# --- no kernel left behind ------------------------------------------------------------------------------
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_no_pool_kernel_or_zygote_survives_its_worker(home, how):
    """Pool mode: 4 warm kernels; fork mode: 2 zygotes, each with a kernel forked ahead."""
    proc = start_worker(home, "--concurrency", "2", "--pool", "4", "--kernels", "pool")
    (home.parent / "fork-home").mkdir()
    fork = start_worker(home.parent / "fork-home", "--concurrency", "2", "--kernels", "fork")
    try:
        kernels = wait_for(lambda: len(_kernels(proc.pid)) >= 4 and _kernels(proc.pid), 60, "4 warm kernels")
        zygotes = wait_for(lambda: len(_zygotes(fork.pid)) >= 2 and _zygotes(fork.pid), 60, "2 zygotes")
        forked = wait_for(lambda: len({_parent(k) for k in _kernels(fork.pid)} & zygotes) == 2 and _kernels(fork.pid),
                          60, "a kernel forked ahead by each zygote")
        assert {_parent(k) for k in forked} == zygotes  # python3 is forked: no warm kernel process for it
        kernels |= forked
        hosts = [p for w in (proc, fork) for p, cmd in _tree(w.pid).items() if b"nbjobs.runner" in cmd]
        assert len(hosts) == 4, hosts
        proc.send_signal(how)
        fork.send_signal(how)
        proc.wait(30)
        fork.wait(30)
        wait_for(lambda: not any(_alive(p) for p in [*kernels, *zygotes, *hosts]), 10,
                 f"the pool's kernels, the zygotes and the hosts to end after {how.name}")
    finally:
        stop_worker(proc)
        stop_worker(fork)


def test_resizing_the_pool_kills_the_kernels_it_no_longer_wants(tmp_path):
    before = _kernels(os.getpid())  # kernels of this process's earlier tests' workers, still ending
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
    # a kernel a host was still starting when it closed is in no pool list: it ends by itself once
    # its host has gone (ipykernel's parent poller, within a second)
    wait_for(lambda: not _kernels(os.getpid()) - before, 10, "no kernel of this executor left after its shutdown")


def test_a_kernelspec_the_zygote_does_not_fork_takes_the_pool(home, tmp_path, monkeypatch):
    """Fork mode (the default): python3 is forked; a kernelspec whose command is not this interpreter
    (here ``env python -m ipykernel_launcher``) starts cold, then joins the pool and comes warm.
    `nbjobs show` says which path each job took."""
    kernels_dir = tmp_path / "share" / "jupyter" / "kernels" / "other-python"
    kernels_dir.mkdir(parents=True)
    (kernels_dir / "kernel.json").write_text(json.dumps({
        "argv": ["/usr/bin/env", sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Other Python", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", f"{tmp_path / 'share' / 'jupyter'}{os.pathsep}{os.environ.get('JUPYTER_PATH', '')}")
    assert kernel_exists("other-python")
    nb = write_notebook(tmp_path / "other.ipynb", [INSIDE], kernel="other-python")
    mine = write_notebook(tmp_path / "mine.ipynb", [INSIDE])
    proc = start_worker(home)
    try:
        first = nbjobs.run_notebook(nb, home=home, start_worker=False).wait(JOB_WAIT)
        wait_for(lambda: _kernels(proc.pid), 60, "a warm other-python kernel")
        time.sleep(2)
        second = nbjobs.run_notebook(nb, home=home, start_worker=False).wait(JOB_WAIT)
        forked = nbjobs.run_notebook(mine, home=home, start_worker=False).wait(JOB_WAIT)
    finally:
        banner = stop_worker(proc)
    assert "kernels fork" in banner.splitlines()[0], banner
    a, b = first.result()["inside"], second.result()["inside"]
    assert first.state == second.state == forked.state == nbjobs.State.SUCCEEDED
    assert [j.attempts()[0]["kernel_path"] for j in (first, second, forked)] == ["cold", "warm", "forked"]
    assert a["kernel_started"] > first.record.submitted_at - 0.05  # cold: started for the job
    assert b["kernel_started"] < second.record.submitted_at - 1    # warm: started ahead
    assert json.loads(Path(second.record.output_path).read_text())["metadata"]["kernelspec"]["name"] == "other-python"
    shown = nbjobs_show(forked.id, home)
    assert f"kernel pid {forked.attempts()[0]['kernel_pid']} (forked)" in shown, shown


def nbjobs_show(job_id: str, home: Path) -> str:
    return subprocess.run([sys.executable, "-m", "nbjobs", "show", job_id], capture_output=True, text=True,
                          env=dict(os.environ, NBJOBS_HOME=str(home)), check=True).stdout


# --- the zygote's life -----------------------------------------------------------------------------------
ZYGOTE_PROBE = textwrap.dedent("""\
    import os, nbjobs, zmod
    nbjobs.record("seen", {"zygote": os.getppid(), "version": zmod.VERSION, "pid": os.getpid()})
    """)
CRASHING = textwrap.dedent("""\
    import os, time, pathlib
    marker = pathlib.Path(MARKER)
    if not marker.exists():         # the first attempt: the test kills this kernel
        marker.write_text(str(os.getpid()))
        time.sleep(120)
    """) + ZYGOTE_PROBE


def _install_zmod(site: Path, version: int) -> None:
    """Install (or upgrade) a one-file package: written aside, then renamed in, as pip does."""
    (site / "zmod.tmp").write_text(f"VERSION = {version}\n")
    os.replace(site / "zmod.tmp", site / "zmod.py")


def test_the_zygote_is_restarted_replaced_and_unharmed_by_a_crashed_child(home, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    _install_zmod(site, 1)
    marker = tmp_path / "marker"
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    proc = start_worker(home, "--kernels", "fork", "--preload", "zmod", env=env)
    try:
        one = nbjobs.submit(ZYGOTE_PROBE, name="one", start_worker=False).wait(JOB_WAIT)
        assert one.state == nbjobs.State.SUCCEEDED, one.record.error_message
        zygote = one.result()["seen"]["zygote"]
        assert zygote in _zygotes(proc.pid)
        os.kill(zygote, signal.SIGKILL)  # a zygote that dies is started again
        wait_for(lambda: not _alive(zygote), 10, "the zygote to end")

        two = nbjobs.submit(CRASHING.replace("MARKER", repr(str(marker))), name="two", retries=1, start_worker=False)
        child = int(wait_for(lambda: marker.exists() and marker.read_text(), JOB_WAIT, "the first attempt to start"))
        os.kill(child, signal.SIGKILL)  # the kernel dies mid-job: the job's failure, retried by its retries
        two.wait(JOB_WAIT)
        assert two.state == nbjobs.State.SUCCEEDED, two.record.error_message
        assert [(a["outcome"], a["kernel_path"]) for a in two.attempts()] == [("kernel_died", "forked"),
                                                                               ("succeeded", "forked")]
        assert two.record.failures == 1
        three = nbjobs.submit(ZYGOTE_PROBE, name="three", start_worker=False).wait(JOB_WAIT)

        _install_zmod(site, 2)  # the environment changed: the next job gets a new zygote with the new code
        four = nbjobs.submit(ZYGOTE_PROBE, name="four", start_worker=False).wait(JOB_WAIT)
    finally:
        stop_worker(proc)
    seen = [j.result()["seen"] for j in (one, two, three, four)]
    assert [s["version"] for s in seen] == [1, 1, 1, 2]
    assert seen[1]["zygote"] != zygote                  # restarted after it was killed
    assert seen[2]["zygote"] == seen[1]["zygote"]       # the crashed child left it alone
    assert seen[3]["zygote"] != seen[2]["zygote"]       # replaced when the environment changed
    assert len({s["pid"] for s in seen}) == 4 and child not in {s["pid"] for s in seen}
    assert all(j.attempts()[-1]["kernel_path"] == "forked" for j in (one, three, four))


def test_a_kernel_kept_ahead_that_dies_costs_the_next_job_nothing(home, tmp_path):
    """The kernels forked ahead, one of them connected for the next job, are killed while they
    wait: the next job takes another kernel, in one attempt, and nothing is charged to it."""
    proc = start_worker(home, "--kernels", "fork", "--concurrency", "1")
    try:
        zygote = wait_for(lambda: _zygotes(proc.pid), 60, "the zygote")
        def forked() -> set[int] | None:
            found = {k for k in _kernels(proc.pid) if _parent(k) in zygote}
            return found if len(found) == FORKED_AHEAD else None

        ahead = wait_for(forked, 60, "the kernels forked ahead")
        wait_for(lambda: any(_clients(k) >= 2 for k in ahead), 30, "the runner host to connect to one")
        for pid in ahead:
            os.kill(pid, signal.SIGKILL)
        job = nbjobs.submit("import os, nbjobs\nnbjobs.record('pid', os.getpid())", name="after",
                            start_worker=False).wait(JOB_WAIT)
    finally:
        stop_worker(proc)
    assert job.state == nbjobs.State.SUCCEEDED, job.record.error_message
    assert [(a["outcome"], a["kernel_path"]) for a in job.attempts()] == [("succeeded", "forked")]
    assert job.record.failures == 0 and job.result()["pid"] not in ahead


def test_worker_pool_flags(home):
    bad = subprocess.run([sys.executable, "-m", "nbjobs", "worker", "--pool", "-1"], capture_output=True, text=True,
                         env=dict(os.environ, NBJOBS_HOME=str(home)))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--pool must be from 0 to 64" in bad.stderr
    helptext = subprocess.run([sys.executable, "-m", "nbjobs", "worker", "--help"], capture_output=True, text=True).stdout
    assert "--no-warm" in helptext and "--kernels {fork,pool,cold}" in helptext and "--preload" in helptext
    for args, says in ((["--no-warm", "--kernels", "fork"], "--no-warm means --kernels cold"),
                       (["--preload", "no_such_module_xyz"], "--preload: no module named 'no_such_module_xyz'"),
                       (["--preload", "pandas;rm"], "--preload takes module names")):
        bad = subprocess.run([sys.executable, "-m", "nbjobs", "worker", *args], capture_output=True, text=True,
                             env=dict(os.environ, NBJOBS_HOME=str(home)))
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and says in bad.stderr, (args, bad.stderr)


def test_a_kernel_forked_ahead_that_cannot_move_into_its_job_is_lost_not_the_jobs_failure(tmp_path):
    """A kernel forked ahead moves into its job through its zygote's socket, not a request; if it
    cannot (here: it died), the attempt is lost before the job's code ran, never the job's failure."""
    from nbjobs import forking, kernels
    from nbjobs.runner import _error_from

    zygote = forking.zygote_for("python3", workdir=str(tmp_path))
    assert zygote is not None and zygote.ready(60)
    try:
        kernel = kernels.start_kernel("python3", str(tmp_path), ahead=True, zygote=zygote)
        assert kernel.path == "forked" and kernel.ahead and kernel.mover is not None
        kernel.proc.kill()
        wait_for(lambda: not kernel.alive(), 10, "the kernel to die")
        with pytest.raises(RuntimeError, match="the kernel started ahead could not be prepared") as caught:
            kernel.move(str(tmp_path), {"NBJOBS_JOB_ID": "x"})
        outcome, error = _error_from(caught.value, began=False)
        assert outcome == "kernel_lost" and "not the job's failure" in error["message"]
        kernel.kill()
    finally:
        zygote.shutdown()


def test_a_kernel_forked_ahead_waits_for_the_short_job_beside_it_not_for_a_long_one(tmp_path, monkeypatch):
    """Forking the next kernel (60-70 ms of a core) while a short job runs slows that job: the pool
    forks it once the job has reported its outcome, or once the job has run `FORK_DEFER` seconds."""
    from nbjobs import forking, kernelpool

    zygote = forking.zygote_for("python3", workdir=str(tmp_path))
    assert zygote is not None and zygote.ready(60)
    pool = kernelpool.KernelPool(["python3"], size=1, workdir=str(tmp_path), zygote=zygote)
    try:
        first = wait_for(lambda: (pool.idle.get("python3") or [None])[0], 60, "a kernel forked ahead")
        monkeypatch.setattr(kernelpool, "FORK_DEFER", 3600.0)  # a job that runs "short" for the whole test
        taken = pool.take("python3", str(tmp_path))
        assert taken is first and pool.busy_since is not None
        assert pool._defer("python3", time.monotonic()) > 0 and not pool.idle.get("python3")
        pool.ended()  # its outcome reported: the replacement is forked now
        second = wait_for(lambda: (pool.idle.get("python3") or [None])[0], 60, "the replacement once the job ended")
        taken.kill()
        monkeypatch.setattr(kernelpool, "FORK_DEFER", 0.0)  # a job past the deferral: no waiting for its end
        long_job = pool.take("python3", str(tmp_path))
        assert long_job is second and pool.busy_since is not None and pool._defer("python3", time.monotonic()) == 0
        with pool._cond:
            pool._cond.notify_all()
        wait_for(lambda: pool.idle.get("python3"), 60, "the replacement while a long job runs")
        long_job.kill()
    finally:
        pool.shutdown()
        zygote.shutdown()
