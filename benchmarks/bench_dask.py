"""Throughput of notebook jobs on the local executor and on a 2-worker Dask cluster, in one run.

``--jobs`` (default 100) copies of a small 3-cell notebook (parameters, a computation, a recorded
output) are submitted at once to a home served by one real ``nbjobs worker`` process:

- ``local``: ``nbjobs worker --concurrency 2`` (one runner process per attempt on this machine),
  the baseline;
- ``dask``: ``nbjobs worker --executor dask --scheduler ADDRESS`` against a `LocalCluster` of 2
  worker processes with one thread each, started here (the attempt runs as a Dask task that runs
  the runner in a temporary folder and ships the output notebook and outputs back).

Both get the same 2 slots on the same machine and are up for the whole run; jobs go in rounds of
``--batch`` (default 10) that alternate between the two homes, so a change in the machine's load
hits both alike.  Timed: each round from its first submit to its last job finished, summed.  Reported: throughput (jobs/s), the ratio dask/local, and the per-job overhead of the
Dask path measured two ways: the mean attempt duration (claim to recorded outcome, from the
``attempts`` table) on dask minus on local, and the extra wall time per job per slot.

    python benchmarks/bench_dask.py [--jobs 100] [--batch 10]
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


def start(label: str, home: Path, worker_args: list[str]) -> subprocess.Popen:
    from nbjobs.store import Store

    env = dict(os.environ, NBJOBS_HOME=str(home))
    worker = subprocess.Popen([sys.executable, "-m", "nbjobs", "worker", "--concurrency", str(SLOTS), *worker_args],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    store = Store(home / "nbjobs.db")
    deadline = time.monotonic() + 60
    while not store.live_workers():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{label} worker did not start: {worker.stderr.read()}")
        time.sleep(0.05)
    return worker


def batch(home: Path, nb: Path, first: int, count: int) -> tuple[float, list]:
    """Submit ``count`` jobs at once and wait for all; (wall seconds, handles)."""
    import nbjobs

    t0 = time.perf_counter()
    handles = [nbjobs.run_notebook(nb, parameters={"n": first + i}, home=home, start_worker=False)
               for i in range(count)]
    nbjobs.wait(handles, timeout=count * 60, poll=0.1)
    return time.perf_counter() - t0, handles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--batch", type=int, default=10, help="jobs per round; rounds alternate local and dask")
    a = ap.parse_args()
    import distributed

    from nbjobs.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="nbjobs-bench-dask-"))
    nb = tmp / "job.ipynb"
    nb.write_text(json.dumps(NB))
    load = os.getloadavg()[0]
    homes = {"local": tmp / "home-local", "dask": tmp / "home-dask"}
    cluster = distributed.LocalCluster(n_workers=SLOTS, threads_per_worker=1, processes=True, dashboard_address=":0")
    workers = {"local": start("local", homes["local"], []),
               "dask": start("dask", homes["dask"], ["--executor", "dask", "--scheduler", cluster.scheduler_address])}
    wall = {"local": 0.0, "dask": 0.0}
    handles: dict[str, list] = {"local": [], "dask": []}
    try:
        done = 0
        while done < a.jobs:  # interleaved rounds, so a change in the machine's load hits both alike
            count = min(a.batch, a.jobs - done)
            for label in ("local", "dask"):
                seconds, hs = batch(homes[label], nb, done, count)
                wall[label] += seconds
                handles[label] += hs
            done += count
    finally:
        for w in workers.values():
            w.send_signal(signal.SIGTERM)
        for w in workers.values():
            w.wait(60)
        cluster.close()
    rows = {}
    for label in ("local", "dask"):
        hs = handles[label]
        states = [h.state.value for h in hs]
        assert states.count("succeeded") == a.jobs, f"{label}: {states}"
        assert hs[-1].result() == {"total": sum(range((a.jobs - 1) * 1000))}
        store = Store(homes[label] / "nbjobs.db")
        durations = [x["finished_at"] - x["started_at"] for h in hs for x in store.attempts(h.id)]
        rows[label] = {"wall": wall[label], "throughput": a.jobs / wall[label],
                       "attempt_mean": statistics.mean(durations), "attempt_p50": statistics.median(durations)}
    local, dask = rows["local"], rows["dask"]
    print(f"{a.jobs} notebook jobs per executor in rounds of {a.batch}, {SLOTS} slots each; load average "
          f"{load:.2f} at start, {os.getloadavg()[0]:.2f} at the end ({os.cpu_count()} cores)")
    print(f"{'executor':10}{'wall s':>9}{'jobs/s':>9}{'attempt mean s':>16}{'attempt p50 s':>15}")
    for label, r in rows.items():
        print(f"{label:10}{r['wall']:9.1f}{r['throughput']:9.2f}{r['attempt_mean']:16.2f}{r['attempt_p50']:15.2f}")
    per_attempt = dask["attempt_mean"] - local["attempt_mean"]
    per_slot = (dask["wall"] - local["wall"]) * SLOTS / a.jobs
    print(f"summary: dask {dask['throughput']:.2f} jobs/s vs local {local['throughput']:.2f} jobs/s = "
          f"{dask['throughput'] / local['throughput']:.2f}x local; Dask path overhead per job: "
          f"{per_attempt * 1000:+.0f} ms per attempt (mean), {per_slot * 1000:+.0f} ms of slot time")


if __name__ == "__main__":
    main()
