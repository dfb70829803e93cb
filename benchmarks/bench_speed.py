"""nbjobs's kernel paths against running papermill yourself, on the same trivial 2-cell notebook, in one run.

Baselines (each on the notebook ``x = 1`` / ``print(x)``, kernel ``python3``):

- ``papermill CLI``: ``papermill in.ipynb out.ipynb`` as a fresh process per notebook, one after the
  other (importing papermill each time: it flatters nbjobs).
- ``papermill API loop``: ``papermill.execute_notebook`` in a loop in one Python process (papermill
  imported once; each notebook still starts its kernel), and that loop in a pool of 2 processes
  (their clocks start together once both have imported papermill).

nbjobs, one worker per mode (``--kernels cold``, ``--kernels pool``, ``--kernels fork``):

- *latency* (``--latency-n`` jobs, one at a time, the worker idle, a warm pool full again before
  each submit): submit -> ``succeeded`` in SQLite (``finished_at - submitted_at``).
- *throughput* (``--jobs`` notebooks submitted at once, at concurrency 1 and 2): jobs/s from the
  first submit to the last ``succeeded``, and CPU seconds per job: everything in the worker's
  process tree (worker, runner hosts, zygotes, kernels, read from ``/proc`` before and after, so the
  workers' start-up is not counted) plus this process's submits; for forked kernels also their own
  share (the CPU time of the children the zygotes reaped).

Then a notebook that imports pandas (forked kernels, with and without ``--preload pandas``, and with
it and ``--pool 1``: one kernel forked ahead per slot instead of two): seconds and CPU seconds per job, jobs one after another on one slot, and the
submit -> ``succeeded`` p50 of a job alone (the worker idle); and memory: the RSS and PSS (shared pages counted once, from
``/proc/PID/smaps_rollup``) of a zygote and of a forked child running a job.

    python benchmarks/bench_speed.py [--jobs 60] [--latency-n 15] [--papermill-n 6] [--pandas-n 8]

The last line is a one-line summary against the goals.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": None},
        {"cell_type": "code", "metadata": {}, "source": "print(x)", "outputs": [], "execution_count": None},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}
TICK = os.sysconf("SC_CLK_TCK")


def notebook(path: Path, *sources: str) -> Path:
    nb = json.loads(json.dumps(NOTEBOOK))
    if sources:
        nb["cells"] = [{"cell_type": "code", "metadata": {}, "source": s, "outputs": [], "execution_count": None}
                       for s in sources]
    path.write_text(json.dumps(nb))
    return path


#: the pandas notebook's worker settings: forked kernels without and with the preload (two forked
#: ahead per slot, the default), and with the preload and one ahead (a kernel forked ahead still takes
#: 60-70 ms to start, which bounds one slot's rate when the jobs are shorter than that)
PANDAS_RUNS = {"forked": (), "forked, --preload pandas": ("--preload", "pandas"),
               "forked, --preload pandas --pool 1": ("--preload", "pandas", "--pool", "1")}


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_self() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _stat(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None


def tree(root: int) -> dict[int, list[bytes]]:
    """``root`` and its live descendants: pid -> the fields of /proc/PID/stat after the name."""
    stats = {int(e): s for e in os.listdir("/proc") if e.isdigit() and (s := _stat(int(e))) is not None}
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out[pid] = stats[pid]
            todo += [p for p, s in stats.items() if int(s[1]) == pid]
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds used so far by ``root``'s tree: every live process's own time plus that of the
    children it reaped (utime, stime, cutime, cstime)."""
    return sum(sum(int(f) for f in s[11:15]) for s in tree(root).values()) / TICK


def reaped_by_zygotes(root: int) -> float:
    """CPU seconds of the forked kernels the zygotes under ``root`` have reaped so far (each
    zygote's cutime + cstime): what the forked kernels cost, apart from their hosts and worker."""
    return sum(int(s[13]) + int(s[14]) for pid, s in tree(root).items() if b"nbjobs/zygote.py" in cmdline(pid)) / TICK


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of ``pid`` in MB, from /proc/PID/smaps_rollup."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if parts and parts[0] in ("Rss:", "Pss:"):
                values[parts[0]] = int(parts[1]) / 1024
    except OSError:
        pass
    return values.get("Rss:", float("nan")), values.get("Pss:", float("nan"))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


# --- papermill ------------------------------------------------------------------------------------------
def bench_papermill_cli(nb: Path, n: int, tmp: Path) -> dict:
    exe = Path(sys.executable).with_name("papermill")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "papermill"]
    lat = []
    cpu0, t0 = cpu_children(), time.perf_counter()
    for i in range(n):
        start = time.perf_counter()
        subprocess.run(cmd + ["--no-progress-bar", "--log-level", "WARNING", str(nb), str(tmp / f"pm-{i}.ipynb")],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lat.append(time.perf_counter() - start)
    return {"n": n, "wall": time.perf_counter() - t0, "cpu": cpu_children() - cpu0, "lat": lat}


API_LOOP = textwrap.dedent("""\
    import json, resource, sys, time
    import papermill
    def cpu():
        return sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for f in ("ru_utime", "ru_stime"))
    nb, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print("ready", flush=True)
    sys.stdin.readline()  # every process of the pool has imported papermill: go
    c0, t0, lat = cpu(), time.perf_counter(), []
    for i in range(n):
        s = time.perf_counter()
        papermill.execute_notebook(nb, f"{out}-{i}.ipynb", progress_bar=False, log_output=False)
        lat.append(time.perf_counter() - s)
    print(json.dumps({"wall": time.perf_counter() - t0, "cpu": cpu() - c0, "lat": lat}))
    """)


def bench_papermill_api(nb: Path, n: int, tmp: Path, processes: int) -> dict:
    """``processes`` Python processes, each running ``execute_notebook`` in a loop over its share of
    ``n`` notebooks (papermill imported once per process, before the clock starts; the clocks start
    together, once every process has imported it, so no import runs beside another's notebooks)."""
    procs = [subprocess.Popen([sys.executable, "-c", API_LOOP, str(nb), str(tmp / f"api{processes}-{p}"),
                               str(n // processes + (1 if p < n % processes else 0))], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) for p in range(processes)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.communicate()[0]) for p in procs]
    return {"n": n, "wall": max(r["wall"] for r in results), "cpu": sum(r["cpu"] for r in results),
            "lat": [v for r in results for v in r["lat"]]}


# --- nbjobs ---------------------------------------------------------------------------------------------
class Home:
    """A private NBJOBS_HOME with one foreground worker process."""

    def __init__(self, tmp: Path, name: str, *worker_args: str):
        import nbjobs

        self.nbjobs = nbjobs
        self.home = tmp / name
        self.home.mkdir()
        self.env = dict(os.environ, NBJOBS_HOME=str(self.home))
        self.proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "worker", *worker_args], env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(self.home))
        self.db: sqlite3.Connection | None = None

    def submit(self, nb: Path) -> str:
        return self.nbjobs.run_notebook(nb, home=self.home, start_worker=False).id

    def wait(self, ids: list[str], timeout: float = 900, every: float = 0.002) -> list[tuple]:
        if self.db is None:
            self.db = sqlite3.connect(self.home / "nbjobs.db", timeout=30)
        deadline = time.monotonic() + timeout
        marks = ",".join("?" * len(ids))
        while time.monotonic() < deadline:
            rows = self.db.execute(f"SELECT id, state, submitted_at, finished_at, error_message FROM jobs "
                                   f"WHERE id IN ({marks})", ids).fetchall()
            if len(rows) == len(ids) and all(r[1] in ("succeeded", "failed", "timed_out", "cancelled") for r in rows):
                bad = [r for r in rows if r[1] != "succeeded"]
                if bad:
                    raise SystemExit(f"bench_speed: {len(bad)} job(s) did not succeed, e.g. {bad[0]}")
                return rows
            time.sleep(every)
        raise SystemExit("bench_speed: jobs did not finish in time")

    def warm_up(self, nb: Path, pause: float) -> None:
        self.wait([self.submit(nb) for _ in range(2)], timeout=180)  # hosts up, papermill imported, pools filling
        time.sleep(pause)

    def kernel_path(self) -> str:
        return self.db.execute("SELECT kernel_path FROM attempts ORDER BY started_at DESC LIMIT 1").fetchone()[0]

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        if self.db is not None:
            self.db.close()


def latency(h: Home, nb: Path, n: int, pause: float) -> list[float]:
    lat = []
    for _ in range(n):
        (row,) = h.wait([h.submit(nb)])
        lat.append(row[3] - row[2])
        time.sleep(pause)  # an idle worker (and for a pool, a full one) before the next job
    return lat


def throughput(h: Home, nb: Path, n: int) -> dict:
    cpu_tree, cpu_me, t0 = tree_cpu(h.proc.pid), cpu_self(), time.perf_counter()
    kids = reaped_by_zygotes(h.proc.pid)
    ids = [h.submit(nb) for _ in range(n)]
    submit_cpu = cpu_self() - cpu_me
    rows = h.wait(ids, every=0.01)
    wall = time.perf_counter() - t0
    return {"n": n, "wall": wall, "cpu": tree_cpu(h.proc.pid) - cpu_tree + submit_cpu,
            "kernel_cpu": reaped_by_zygotes(h.proc.pid) - kids, "lat": [r[3] - r[2] for r in rows]}


def forked_memory(h: Home, nb: Path) -> dict:
    """RSS/PSS of the worker's zygotes and of a forked kernel while it runs a job."""
    job = h.submit(nb)
    found: dict = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "child" not in found:
        procs = tree(h.proc.pid)
        zygotes = [p for p in procs if b"nbjobs/zygote.py" in cmdline(p)]
        children = [p for p, s in procs.items() if int(s[1]) in zygotes]
        if zygotes and children:
            time.sleep(1.0)  # the kernel has started and runs the job's sleep
            found = {"zygote": memory(zygotes[0]), "child": memory(children[0])}
        time.sleep(0.05)
    h.wait([job])
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=60, help="notebooks in each throughput run (60)")
    ap.add_argument("--latency-n", type=int, default=15, help="jobs in each latency run (15)")
    ap.add_argument("--papermill-n", type=int, default=6, help="notebooks per papermill baseline (6; CLI: 6)")
    ap.add_argument("--pandas-n", type=int, default=8, help="pandas notebooks per preload setting (8)")
    ap.add_argument("--pause", type=float, default=1.5, help="seconds between latency jobs (a warm pool's refill)")
    a = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        nb = notebook(tmp / "trivial.ipynb")
        pandas_nb = notebook(tmp / "pandas.ipynb", "import pandas as pd", "df = pd.DataFrame({'a': [1, 2]})\nprint(len(df))")
        sleeper = notebook(tmp / "sleep.ipynb", "import time\ntime.sleep(3)")

        base = {"papermill CLI": bench_papermill_cli(nb, a.papermill_n, tmp),
                "papermill API loop, 1 process": bench_papermill_api(nb, a.papermill_n, tmp, 1),
                "papermill API loop, 2 processes": bench_papermill_api(nb, 2 * a.papermill_n, tmp, 2)}

        modes = {"cold": ("--kernels", "cold"), "warm pool": ("--kernels", "pool"), "forked": ("--kernels", "fork")}
        lat, tp, paths = {}, {}, {}
        for label, args in modes.items():
            pause = 0.2 if label == "cold" else a.pause  # a pool (warm or forked) full again before each job
            h = Home(tmp, f"c1-{label.replace(' ', '-')}", *args)
            try:
                h.warm_up(nb, pause + 1.0)
                lat[label] = latency(h, nb, a.latency_n, pause)
                paths[label] = h.kernel_path()
                time.sleep(pause + 1.0)
                tp[(label, 1)] = throughput(h, nb, a.jobs)
            finally:
                h.close()
            h = Home(tmp, f"c2-{label.replace(' ', '-')}", "--concurrency", "2", *args)
            try:
                h.warm_up(nb, pause + 1.5)
                tp[(label, 2)] = throughput(h, nb, a.jobs)
            finally:
                h.close()

        pandas, pandas_lat, mem = {}, {}, {}
        for i, (label, args) in enumerate(PANDAS_RUNS.items()):
            h = Home(tmp, f"pandas-{i}", "--kernels", "fork", *args)
            try:
                h.warm_up(pandas_nb, 1.0)
                pandas[label] = throughput(h, pandas_nb, a.pandas_n)
                time.sleep(a.pause)
                pandas_lat[label] = latency(h, pandas_nb, max(3, a.pandas_n // 2), a.pause)
                if "--pool" not in args:
                    mem[label] = forked_memory(h, sleeper)
            finally:
                h.close()
        total = time.perf_counter() - started

    def ms(v: float) -> str:
        return f"{v * 1000:,.0f} ms" if v == v else "-"

    print(f"{'baseline (one run each)':34}{'jobs':>6}{'jobs/s':>8}{'CPU-s/job':>11}{'per job p50':>13}")
    for label, r in base.items():
        print(f"{label:34}{r['n']:>6}{r['n'] / r['wall']:>8.2f}{r['cpu'] / r['n']:>11.2f}{ms(pct(r['lat'], .5)):>13}")
    api2 = base["papermill API loop, 2 processes"]
    api2_rate = api2["n"] / api2["wall"]

    print(f"\n{'nbjobs':12}{'path':>8}{'submit->ok p50':>16}{'p95':>9}{'c1 jobs/s':>11}{'c1 CPU-s/job':>14}"
          f"{'c2 jobs/s':>11}{'c2 CPU-s/job':>14}{'c2 vs pm pool':>15}")
    for label in modes:
        c1, c2 = tp[(label, 1)], tp[(label, 2)]
        print(f"{label:12}{paths[label]:>8}{ms(pct(lat[label], .5)):>16}{ms(pct(lat[label], .95)):>9}"
              f"{c1['n'] / c1['wall']:>11.2f}{c1['cpu'] / c1['n']:>14.3f}{c2['n'] / c2['wall']:>11.2f}"
              f"{c2['cpu'] / c2['n']:>14.3f}{c2['n'] / c2['wall'] / api2_rate:>14.2f}x")

    print(f"\n{'a notebook importing pandas':38}{'jobs':>6}{'s/job':>8}{'CPU-s/job':>11}{'alone p50':>11}")
    for label, r in pandas.items():
        print(f"{label:38}{r['n']:>6}{r['wall'] / r['n']:>8.3f}{r['cpu'] / r['n']:>11.3f}"
              f"{ms(pct(pandas_lat[label], .5)):>11}")
    print(f"\n{'memory (MB)':34}{'zygote RSS':>11}{'PSS':>8}{'child RSS':>11}{'PSS':>8}")
    for label, m in mem.items():
        z, c = m.get("zygote", (float("nan"),) * 2), m.get("child", (float("nan"),) * 2)
        print(f"{label:34}{z[0]:>11.0f}{z[1]:>8.0f}{c[0]:>11.0f}{c[1]:>8.0f}")

    fork1, fork2, warm2 = tp[("forked", 1)], tp[("forked", 2)], tp[("warm pool", 2)]
    plain, pre, pre1 = (pandas[k] for k in PANDAS_RUNS)
    alone = [pct(pandas_lat[k], .5) for k in PANDAS_RUNS]
    print(f"\nbench_speed: forked c2 {fork2['n'] / fork2['wall']:.2f} jobs/s = "
          f"{(fork2['n'] / fork2['wall']) / (warm2['n'] / warm2['wall']):.2f}x warm pool (goal >= 4x) and "
          f"{(fork2['n'] / fork2['wall']) / api2_rate:.2f}x papermill API pool of 2 (goal >= 5x); "
          f"{fork1['cpu'] / fork1['n']:.3f} CPU-s/job (goal <= 0.2), of which the forked kernel "
          f"{fork1['kernel_cpu'] / fork1['n']:.3f} (goal <= 0.1); submit->succeeded p50 "
          f"{ms(pct(lat['forked'], .5))} (goal <= 30 ms); pandas with --preload {plain['wall'] / pre['wall']:.1f}x "
          f"faster per job one slot after another (--pool 1: {plain['wall'] / pre1['wall']:.1f}x), "
          f"{alone[0] / alone[1]:.1f}x a job alone (goal >= 5x); ran {total:.0f} s")


if __name__ == "__main__":
    main()
