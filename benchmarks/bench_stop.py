"""How soon nbjobs lets go: the latencies the tests no longer bound, next to baselines from the same run.

The tests check that a wait gives up, a cancel or a timeout ends a running job, a stopping worker
releases its job, a dead kernel fails its job and a SIGKILLed worker leaves no process behind.  How
*soon* is measured here: a bound on elapsed time in a test flakes on a loaded machine.  Each row
is the median of ``--runs`` rounds (the rounds interleave all rows, so drift hits all alike), with
a baseline measured in the same round without nbjobs in between:

============================================  ===========================================================
nbjobs (the test that checks the behaviour)    baseline
============================================  ===========================================================
``job.wait(timeout=0.5)``, queued job (api)    ``time.sleep(0.5)``
``nbjobs wait ID --timeout 0.5`` (cli)         ``python -c "import nbjobs"``, plus 0.5 s
cancel a running cell -> ``cancelled``         jupyter_client: interrupt a sleeping cell -> its reply
(api, faults, dask)
cancel -> the job's kernel process gone        jupyter_client: ``shutdown_kernel(now=True)``
(faults)
``timeout=2`` on ``sleep(60)``: started ->     2 s plus the interrupt baseline
``timed_out`` (worker, faults, dask)
kernel ``os._exit(1)`` -> ``failed``           a trivial job ``x = 1`` -> ``succeeded``, same worker
(worker, faults)
SIGTERM a worker mid-job (``--grace 1``) ->    1 s plus ``shutdown_kernel(now=True)``
the worker exited (worker)
SIGKILL a worker mid-job -> its runner host    ``shutdown_kernel(now=True)``
and kernel gone (worker, faults)
============================================  ===========================================================

Submit latency (``%%job``, ``nbjobs.submit``; test_magics) is measured by ``bench_submit.py``.

    python benchmarks/bench_stop.py [--runs 3]

Runs in about 30 s per round on 2 cores.  The last line is a one-line summary.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbjobs
from nbjobs.store import Store

SLEEPER = "import os, pathlib, time\npathlib.Path({marker!r}).write_text(str(os.getpid()))\ntime.sleep(60)"


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def until(pred, timeout: float = 120, every: float = 0.005) -> float:
    """Seconds until ``pred()`` is true (polled every ``every`` s); fails after ``timeout``."""
    t0 = time.perf_counter()
    while not pred():
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"gave up after {timeout} s")
        time.sleep(every)
    return time.perf_counter() - t0


def start_worker(home: Path, *args: str) -> subprocess.Popen:
    """A real ``nbjobs worker`` for ``home``, returned once it has registered."""
    env = dict(os.environ, NBJOBS_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "worker", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = Store(home / "nbjobs.db")
    try:
        until(lambda: any(w["pid"] == proc.pid for w in store.live_workers()), 60, 0.02)
    finally:
        store.close()
    return proc


def sleeping_job(home: Path, marker: Path, **options) -> tuple[nbjobs.Job, int]:
    """A job whose cell has started sleeping; returns it and its kernel's pid."""
    marker.unlink(missing_ok=True)
    job = nbjobs.submit(SLEEPER.format(marker=str(marker)), home=home, start_worker=False, **options)
    until(lambda: marker.exists() and marker.read_text(), 120, 0.01)
    return job, int(marker.read_text())


class BareKernel:
    """The baselines without nbjobs: a jupyter_client kernel, interrupted and shut down."""

    def __init__(self) -> None:
        from jupyter_client import KernelManager

        self.KernelManager = KernelManager

    def _start(self):
        km = self.KernelManager(kernel_name="python3")
        km.start_kernel(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        return km, kc

    def interrupt(self) -> float:
        """A cell sleeping 60 s is interrupted: seconds from ``interrupt_kernel`` to the cell's reply."""
        km, kc = self._start()
        try:
            msg_id = kc.execute("import time; time.sleep(60)")
            time.sleep(0.5)  # the cell is sleeping by now
            t0 = time.perf_counter()
            km.interrupt_kernel()
            while kc.get_shell_msg(timeout=60)["parent_header"].get("msg_id") != msg_id:
                pass
            return time.perf_counter() - t0
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    def shutdown(self) -> float:
        """Seconds ``shutdown_kernel(now=True)`` takes until the kernel process is gone."""
        km, kc = self._start()
        kc.stop_channels()
        pid = km.provisioner.pid
        t0 = time.perf_counter()
        km.shutdown_kernel(now=True)
        until(lambda: not alive(pid))
        return time.perf_counter() - t0


def one_round(root: Path, n: int, home: Path, bare: BareKernel) -> dict[str, tuple[float, float]]:
    """Every row once: ``{row: (nbjobs seconds, baseline seconds)}``."""
    out: dict[str, tuple[float, float]] = {}
    interrupt, shutdown = bare.interrupt(), bare.shutdown()
    marker = root / "marker"

    queued = nbjobs.submit("x = 1", home=root / f"idle-{n}", start_worker=False)
    t0 = time.perf_counter()
    try:
        queued.wait(timeout=0.5)
    except nbjobs.NbjobsError:
        pass
    waited = time.perf_counter() - t0
    t0 = time.perf_counter()
    time.sleep(0.5)
    out["job.wait(timeout=0.5), queued job"] = (waited, time.perf_counter() - t0)

    env = dict(os.environ, NBJOBS_HOME=str(root / f"idle-{n}"))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nbjobs", "wait", queued.id, "--timeout", "0.5"], env=env,
                   capture_output=True, check=False)
    cli = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import nbjobs"], env=env, check=True)
    out["nbjobs wait ID --timeout 0.5"] = (cli, time.perf_counter() - t0 + 0.5)

    job, kernel = sleeping_job(home, marker)
    t0 = time.perf_counter()
    nbjobs.cancel(job.id, home=home)
    ended = until(lambda: job.state.terminal)
    gone = ended + until(lambda: not alive(kernel))
    assert job.state == nbjobs.State.CANCELLED, job.record
    out["cancel a running cell -> cancelled"] = (ended, interrupt)
    out["cancel -> the job's kernel gone"] = (gone, shutdown)

    job = nbjobs.submit("import time\ntime.sleep(60)", home=home, start_worker=False, timeout=2)
    until(lambda: job.state.terminal)
    rec = job.record
    assert rec.state == nbjobs.State.TIMED_OUT, rec
    out["timeout=2: started -> timed_out"] = (rec.finished_at - rec.started_at, 2 + interrupt)

    t0 = time.perf_counter()
    ok = nbjobs.submit("x = 1", home=home, start_worker=False)
    until(lambda: ok.state.terminal)
    trivial = time.perf_counter() - t0
    t0 = time.perf_counter()
    dies = nbjobs.submit("import os\nos._exit(1)", home=home, start_worker=False)
    until(lambda: dies.state.terminal)
    assert dies.state == nbjobs.State.FAILED, dies.record
    out["kernel os._exit(1) -> failed"] = (time.perf_counter() - t0, trivial)

    own = root / f"term-{n}"
    w = start_worker(own, "--grace", "1")
    try:
        sleeping_job(own, marker)
        t0 = time.perf_counter()
        w.send_signal(signal.SIGTERM)
        w.wait(60)
        out["SIGTERM a worker mid-job (grace 1) -> exited"] = (time.perf_counter() - t0, 1 + shutdown)
    finally:
        w.kill()
        w.wait()

    own = root / f"kill-{n}"
    w = start_worker(own)
    try:
        job, kernel = sleeping_job(own, marker)
        runner = int(until_value(lambda: job.attempts()[0]["versions"].get("pid")))
        t0 = time.perf_counter()
        w.kill()
        w.wait()
        until(lambda: not alive(runner) and not alive(kernel))
        out["SIGKILL a worker mid-job -> runner, kernel gone"] = (time.perf_counter() - t0, shutdown)
    finally:
        if w.poll() is None:
            w.kill()
    return out


def until_value(fn, timeout: float = 60):
    """The first truthy ``fn()`` within ``timeout`` seconds."""
    box = []
    until(lambda: box.append(fn()) or box[-1], timeout, 0.01)
    return box[-1]


BASELINES = {
    "job.wait(timeout=0.5), queued job": "time.sleep(0.5)",
    "nbjobs wait ID --timeout 0.5": "python -c 'import nbjobs' + 0.5 s",
    "cancel a running cell -> cancelled": "bare kernel: interrupt -> reply",
    "cancel -> the job's kernel gone": "bare kernel: shutdown(now)",
    "timeout=2: started -> timed_out": "2 s + interrupt -> reply",
    "kernel os._exit(1) -> failed": "job 'x = 1' -> succeeded",
    "SIGTERM a worker mid-job (grace 1) -> exited": "1 s + shutdown(now)",
    "SIGKILL a worker mid-job -> runner, kernel gone": "bare kernel: shutdown(now)",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    runs = ap.parse_args().runs
    root = Path(tempfile.mkdtemp(prefix="nbjobs-bench-stop-"))
    home = root / "home"
    bare = BareKernel()
    worker = start_worker(home, "--concurrency", "1", "--grace", "1")
    rounds = []
    try:
        nbjobs.submit("x = 1", home=home, start_worker=False).wait(120)  # warm up: the worker's first job
        for n in range(runs):
            rounds.append(one_round(root, n, home, bare))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    print(f"{'nbjobs':50}{'median s':>9}  {'baseline':34}{'median s':>9}{'ratio':>8}")
    worst = (0.0, "")
    for row, base in BASELINES.items():
        ours = statistics.median(r[row][0] for r in rounds)
        theirs = statistics.median(r[row][1] for r in rounds)
        ratio = ours / theirs
        worst = max(worst, (ratio, row))
        print(f"{row:50}{ours:9.3f}  {base:34}{theirs:9.3f}{ratio:8.2f}")
    print(f"\nbench_stop: {runs} round(s); the largest ratio to its baseline is {worst[0]:.2f}x ({worst[1]})")


if __name__ == "__main__":
    main()
