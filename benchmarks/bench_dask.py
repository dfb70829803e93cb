"""Throughput of notebook jobs on the local executor and on a 2-worker Dask cluster, in one run.

``--jobs`` (default 100) copies of a small 3-cell notebook (parameters, a computation, a recorded
output) are submitted at once to a home served by one real ``nbjobs worker`` process:

- ``local``: ``nbjobs worker --concurrency 2`` (one runner process per attempt on this machine),
  the baseline;
- ``dask``: ``nbjobs worker --executor dask --scheduler ADDRESS`` against a `LocalCluster` of 2
  worker processes with one thread each, started here (the attempt runs as a Dask task that runs
  the runner in a temporary folder and ships the output notebook and outputs back).

Both get the same 2 slots on the same machine.  Timed: from the first submit to the last job
finished.  Reported: throughput (jobs/s), the ratio dask/local, and the per-job overhead of the
Dask path measured two ways: the mean attempt duration (claim to recorded outcome, from the
``attempts`` table) on dask minus on local, and the extra wall time per job per slot.

    python benchmarks/bench_dask.py [--jobs 100]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NB = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
                 "source": "n = 1"},
                {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                 "source": "total = sum(range(n * 1000))"},
                {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                 "source": "import nbjobs\nnbjobs.record('total', total)"}],
      "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
      "nbformat": 4, "nbformat_minor": 5}
SLOTS = 2


def run(label: str, home: Path, nb: Path, jobs: int, worker_args: list[str]) -> dict:
    import nbjobs
    from nbjobs.store import Store

    env = dict(os.environ, NBJOBS_HOME=str(home))
    worker = subprocess.Popen([sys.executable, "-m", "nbjobs", "worker", "--concurrency", str(SLOTS), *worker_args],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = Store(home / "nbjobs.db")
    try:
        deadline = time.monotonic() + 60
        while not store.live_workers():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{label} worker did not start: {worker.stderr.read()}")
            time.sleep(0.05)
        t0 = time.perf_counter()
        handles = [nbjobs.run_notebook(nb, parameters={"n": i}, home=home, start_worker=False) for i in range(jobs)]
        nbjobs.wait(handles, timeout=jobs * 20, poll=0.1)
        wall = time.perf_counter() - t0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    states = [h.state.value for h in handles]
    assert states.count("succeeded") == jobs, f"{label}: {states}"
    assert handles[-1].result() == {"total": sum(range((jobs - 1) * 1000))}
    attempts = [a for h in handles for a in store.attempts(h.id)]
    durations = [a["finished_at"] - a["started_at"] for a in attempts]
    return {"label": label, "wall": wall, "throughput": jobs / wall, "attempt_mean": statistics.mean(durations),
            "attempt_p50": statistics.median(durations)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100)
    jobs = ap.parse_args().jobs
    import distributed

    tmp = Path(tempfile.mkdtemp(prefix="nbjobs-bench-dask-"))
    nb = tmp / "job.ipynb"
    nb.write_text(json.dumps(NB))
    load = os.getloadavg()[0]
    cluster = distributed.LocalCluster(n_workers=SLOTS, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        local = run("local", tmp / "home-local", nb, jobs, [])
        dask = run("dask", tmp / "home-dask", nb, jobs, ["--executor", "dask", "--scheduler", cluster.scheduler_address])
    finally:
        cluster.close()
    print(f"{jobs} notebook jobs, {SLOTS} slots each, load average {load:.2f} at start ({os.cpu_count()} cores)")
    print(f"{'executor':10}{'wall s':>9}{'jobs/s':>9}{'attempt mean s':>16}{'attempt p50 s':>15}")
    for r in (local, dask):
        print(f"{r['label']:10}{r['wall']:9.1f}{r['throughput']:9.2f}{r['attempt_mean']:16.2f}{r['attempt_p50']:15.2f}")
    per_attempt = dask["attempt_mean"] - local["attempt_mean"]
    per_slot = (dask["wall"] - local["wall"]) * SLOTS / jobs
    print(f"summary: dask {dask['throughput']:.2f} jobs/s vs local {local['throughput']:.2f} jobs/s = "
          f"{dask['throughput'] / local['throughput']:.2f}x local; Dask path overhead per job: "
          f"{per_attempt * 1000:+.0f} ms per attempt (mean), {per_slot * 1000:+.0f} ms of slot time")


if __name__ == "__main__":
    main()
