"""nbjobs against running papermill yourself, on the same trivial 2-cell notebook, in one run.

Modes (each on the same notebook: ``x = 1`` / ``print(x)``, kernel ``python3``):

- ``papermill CLI``: ``papermill in.ipynb out.ipynb`` as a fresh process per notebook, one after
  the other (what a user does today).  Measured on ``--papermill-n`` notebooks; its time for the
  throughput comparison is that rate times ``--jobs`` (said so in the table).
- ``nbjobs cold``: ``nbjobs worker --no-warm``: every job's kernel starts when the job starts.
- ``nbjobs warm``: ``nbjobs worker`` with its warm pool (one kernel started ahead per slot).

Two kinds of numbers:

- *latency* (``--latency-n`` jobs, one at a time, the worker idle and, for warm, its pool full
  again before each submit): submit -> ``succeeded`` in SQLite (the job's ``finished_at`` minus
  its ``submitted_at``), and time to first start: ``submitted_at`` -> the first cell's
  ``start_time`` that papermill writes into the output notebook.  For papermill CLI the same two
  from the process start.
- *throughput* (``--jobs`` notebooks submitted at once, concurrency 1 and 2): wall time from the
  first submit to the last ``succeeded``; CPU time of everything involved (worker, runner hosts,
  kernels: the children's rusage).

    python benchmarks/bench_speed.py [--jobs 200] [--jobs-c1 60] [--latency-n 20] [--papermill-n 20]

Runs in 3-5 minutes on 2 cores.  The last line is a one-line summary.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": None},
        {"cell_type": "code", "metadata": {}, "source": "print(x)", "outputs": [], "execution_count": None},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def first_cell_start(output: Path) -> float | None:
    """Epoch seconds at which papermill started the first code cell of ``output``."""
    try:
        nb = json.loads(output.read_text())
    except (OSError, ValueError):
        return None
    for cell in nb["cells"]:
        started = (cell.get("metadata", {}).get("papermill") or {}).get("start_time")
        if cell["cell_type"] == "code" and started:
            return dt.datetime.fromisoformat(started.replace("Z", "+00:00")).replace(tzinfo=dt.timezone.utc).timestamp()
    return None


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# --- papermill CLI ------------------------------------------------------------------------------------
def bench_papermill(nb: Path, n: int, tmp: Path) -> dict:
    exe = Path(sys.executable).with_name("papermill")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "papermill"]
    lat, first = [], []
    cpu0, t0 = cpu_children(), time.perf_counter()
    for i in range(n):
        out = tmp / f"pm-{i}.ipynb"
        start = time.time()
        subprocess.run(cmd + ["--no-progress-bar", "--log-level", "WARNING", str(nb), str(out)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        lat.append(time.time() - start)
        fc = first_cell_start(out)
        if fc:
            first.append(fc - start)
    wall = time.perf_counter() - t0
    return {"wall": wall, "cpu": cpu_children() - cpu0, "n": n, "lat": lat, "first": first}


# --- nbjobs ---------------------------------------------------------------------------------------------
class Home:
    """A private NBJOBS_HOME with one foreground worker process."""

    def __init__(self, tmp: Path, name: str, *worker_args: str):
        self.home = tmp / name
        self.home.mkdir()
        self.env = dict(os.environ, NBJOBS_HOME=str(self.home))
        self.cpu0 = cpu_children()
        self.proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "worker", *worker_args], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(self.home))
        import nbjobs

        self.nbjobs = nbjobs
        os.environ["NBJOBS_HOME"] = str(self.home)
        self.db = sqlite3.connect(self.home / "nbjobs.db", timeout=30) if (self.home / "nbjobs.db").exists() else None

    def submit(self, nb: Path) -> str:
        return self.nbjobs.run_notebook(nb, home=self.home, start_worker=False).id

    def wait(self, ids: list[str], timeout: float = 600) -> list[tuple]:
        if self.db is None:
            self.db = sqlite3.connect(self.home / "nbjobs.db", timeout=30)
        deadline = time.monotonic() + timeout
        marks = ",".join("?" * len(ids))
        while time.monotonic() < deadline:
            rows = self.db.execute(f"SELECT id, state, submitted_at, finished_at, output_path FROM jobs "
                                   f"WHERE id IN ({marks})", ids).fetchall()
            if all(r[1] in ("succeeded", "failed", "timed_out", "cancelled") for r in rows) and len(rows) == len(ids):
                bad = [r for r in rows if r[1] != "succeeded"]
                if bad:
                    raise SystemExit(f"bench_speed: {len(bad)} job(s) did not succeed, e.g. {bad[0]}")
                return rows
            time.sleep(0.002)
        raise SystemExit("bench_speed: jobs did not finish in time")

    def warm_up(self, nb: Path, pause: float) -> None:
        self.wait([self.submit(nb)], timeout=120)  # the hosts imported papermill, the pool is filling
        time.sleep(pause)

    def close(self) -> float:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        if self.db is not None:
            self.db.close()
        return cpu_children() - self.cpu0


def latency(h: Home, nb: Path, n: int, pause: float) -> dict:
    lat, first = [], []
    for _ in range(n):
        (row,) = h.wait([h.submit(nb)])
        _, _, submitted, finished, output = row
        lat.append(finished - submitted)
        fc = first_cell_start(Path(output)) if output else None
        if fc:
            first.append(fc - submitted)
        time.sleep(pause)  # an idle worker with a full pool before the next job
    return {"lat": lat, "first": first}


def throughput(h: Home, nb: Path, n: int) -> dict:
    t0 = time.perf_counter()
    ids = [h.submit(nb) for _ in range(n)]
    rows = h.wait(ids)
    wall = time.perf_counter() - t0
    return {"wall": wall, "n": n, "lat": [r[3] - r[2] for r in rows]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200, help="notebooks in the concurrency-2 throughput run (200)")
    ap.add_argument("--jobs-c1", type=int, default=60, help="notebooks in the concurrency-1 throughput runs (60)")
    ap.add_argument("--latency-n", type=int, default=20, help="jobs in each latency run (20)")
    ap.add_argument("--papermill-n", type=int, default=20, help="papermill CLI runs measured (20)")
    ap.add_argument("--pause", type=float, default=1.5, help="seconds between latency jobs (pool refill)")
    a = ap.parse_args()
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        nb = tmp / "trivial.ipynb"
        nb.write_text(json.dumps(NOTEBOOK))
        started = time.perf_counter()

        pm = bench_papermill(nb, a.papermill_n, tmp)
        pm_per_job = pm["wall"] / pm["n"]
        pm_cpu_per_job = pm["cpu"] / pm["n"]

        results = {}
        for label, args, pause in (("cold", ["--no-warm"], 0.2), ("warm", [], a.pause)):
            h = Home(tmp, f"lat-{label}", *args)
            h.warm_up(nb, pause + 1.0)
            results[f"latency {label}"] = latency(h, nb, a.latency_n, pause)
            results[f"latency {label}"]["cpu"] = h.close()
        for label, args, n in (("cold c1", ["--no-warm"], a.jobs_c1), ("warm c1", [], a.jobs_c1),
                               ("warm c2", ["--concurrency", "2"], a.jobs)):
            h = Home(tmp, f"tp-{label.replace(' ', '-')}", *args)
            h.warm_up(nb, 2.5)
            cpu0 = cpu_children()
            results[f"throughput {label}"] = throughput(h, nb, n)
            h.close()
            results[f"throughput {label}"]["cpu"] = cpu_children() - cpu0  # the run, plus the worker's stop
        total = time.perf_counter() - started

    def ms(v: float) -> str:
        return f"{v * 1000:,.0f} ms" if v == v else "-"

    print(f"papermill CLI: {pm['n']} runs, {pm_per_job:.2f} s and {pm_cpu_per_job:.2f} s CPU per notebook\n")
    print(f"{'latency (one job at a time)':32}{'p50':>10}{'p95':>10}{'first start p50':>17}{'vs papermill':>14}")
    print(f"{'papermill CLI':32}{ms(pct(pm['lat'], .5)):>10}{ms(pct(pm['lat'], .95)):>10}"
          f"{ms(pct(pm['first'], .5)):>17}{1.0:>13.2f}x")
    for label in ("cold", "warm"):
        r = results[f"latency {label}"]
        rows.append((label, pct(r["lat"], .5)))
        print(f"{'nbjobs ' + label:32}{ms(pct(r['lat'], .5)):>10}{ms(pct(r['lat'], .95)):>10}"
              f"{ms(pct(r['first'], .5)):>17}{pct(r['lat'], .5) / pct(pm['lat'], .5):>13.3f}x")
    print(f"\n{'throughput (all submitted at once)':36}{'jobs':>6}{'wall':>9}{'CPU':>9}{'jobs/s':>8}"
          f"{'p50':>10}{'p95':>10}{'speed-up':>10}")
    print(f"{'papermill CLI (sequential)':36}{a.jobs:>6}{pm_per_job * a.jobs:>8.1f}s{pm_cpu_per_job * a.jobs:>8.1f}s"
          f"{1 / pm_per_job:>8.2f}{ms(pct(pm['lat'], .5)):>10}{ms(pct(pm['lat'], .95)):>10}{1.0:>9.2f}x  "
          f"(extrapolated from {pm['n']} runs)")
    speedups = {}
    for label in ("cold c1", "warm c1", "warm c2"):
        r = results[f"throughput {label}"]
        rate = r["n"] / r["wall"]
        speedups[label] = rate * pm_per_job
        print(f"{'nbjobs ' + label:36}{r['n']:>6}{r['wall']:>8.1f}s{r['cpu']:>8.1f}s{rate:>8.2f}"
              f"{ms(pct(r['lat'], .5)):>10}{ms(pct(r['lat'], .95)):>10}{speedups[label]:>9.2f}x")
    warm = results["latency warm"]
    e2e_ratio = pct(warm["lat"], .5) / pct(pm["lat"], .5)
    print(f"\nbench_speed: warm end-to-end p50 {ms(pct(warm['lat'], .5))} = {e2e_ratio:.3f}x papermill CLI "
          f"{ms(pct(pm['lat'], .5))} (target <= 0.1x); first start p50 {ms(pct(warm['first'], .5))} (target <= 50 ms); "
          f"throughput c2 {speedups['warm c2']:.2f}x papermill sequential (target >= 3x); ran {total:.0f} s")


if __name__ == "__main__":
    main()
