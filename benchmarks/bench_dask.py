"""The Dask executor against the local executor, in one run on one machine, and a sleep-bound batch.

1. **Trivial notebooks, same slots.**  A small 3-cell notebook (parameters, a computation, a recorded
   output) on two homes, each served by one real ``nbjobs worker`` process with 2 slots:

   - ``local``: ``nbjobs worker --concurrency 2`` (runner hosts on the default kernel path: forked
     where it applies, the baseline);
   - ``dask``: ``nbjobs worker --executor dask --scheduler ADDRESS`` against a `LocalCluster` of 2
     worker processes with one thread each, started here (each Dask worker keeps a runner host on
     the same kernel path, `nbjobs.executors.dask_plugin`).

   After one untimed warm-up round each: **throughput**, ``--jobs`` submitted in rounds of
   ``--batch`` that alternate between the homes (a change in the machine's load hits both alike),
   each round timed from its first submit to its last job finished; then **latency**,
   ``--latency`` jobs one at a time (submit, wait), alternating, reported as the p50 of submit ->
   succeeded from the records (``finished_at - submitted_at``).

2. **Sleep-bound** (``--sleep-jobs``, default 16 x ``time.sleep(10)``): ``dask scheduler`` and
   ``dask worker --nworkers 4 --nthreads 2`` started from Dask's command line, one ``nbjobs worker
   --executor dask`` (concurrency: the cluster's 8 threads); wall time from the first submit to the
   last job finished, against the ideal (two waves of 10 s = 20 s).  Then what each Dask worker
   holds: its own RSS and its runner hosts' and their kernels' (from /proc), idle and warm.

    python benchmarks/bench_dask.py [--jobs 60] [--batch 10] [--latency 10] [--sleep-jobs 16]
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
ROOT = Path(__file__).resolve().parents[1]


def env_with_path(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                **extra)


#: ``--kernels``: the kernel path every nbjobs worker of the run is started with (None: their defaults)
KERNELS: str | None = None


def start(label: str, home: Path, worker_args: list[str]) -> subprocess.Popen:
    from nbjobs.store import Store

    kernels = ["--kernels", KERNELS] if KERNELS else []
    worker = subprocess.Popen([sys.executable, "-m", "nbjobs", "worker", *worker_args, *kernels],
                              env=env_with_path(NBJOBS_HOME=str(home)), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    store = Store(home / "nbjobs.db")
    deadline = time.monotonic() + 120
    while not [w for w in store.live_workers() if w["state"] == "running"]:
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{label} worker did not start: {worker.stderr.read()}")
        time.sleep(0.05)
    return worker


def stop(workers: list[subprocess.Popen]) -> None:
    for w in workers:
        w.send_signal(signal.SIGTERM)
    for w in workers:
        w.wait(60)


def batch(home: Path, nb: Path, first: int, count: int) -> tuple[float, list]:
    """Submit ``count`` jobs at once and wait for all; (wall seconds, handles)."""
    import nbjobs

    t0 = time.perf_counter()
    handles = [nbjobs.run_notebook(nb, parameters={"n": first + i}, home=home, start_worker=False)
               for i in range(count)]
    nbjobs.wait(handles, timeout=count * 60, poll=0.02)
    return time.perf_counter() - t0, handles


def check(label: str, handles: list) -> None:
    states = [h.state.value for h in handles]
    assert states.count("succeeded") == len(handles), f"{label}: {states}"


# --- processes and memory ------------------------------------------------------------------------------------
def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(_stat(int(entry))[1]) == pid:
                    out.append(int(entry))
            except (OSError, IndexError):
                continue
    return out


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def holdings(worker_pid: int) -> dict[str, list[int]]:
    """A Dask worker process's runner hosts, their warm kernels and their zygotes (fork path)."""
    hosts = [h for h in children(worker_pid) if b"nbjobs.runner\0--serve" in cmdline(h)]
    kernels = [k for h in hosts for k in children(h) if b"ipykernel" in cmdline(k)]
    zygotes = [z for h in hosts for z in children(h) if b"zygote.py" in cmdline(z)]
    return {"hosts": hosts, "kernels": kernels, "zygotes": zygotes}


# --- 1. trivial notebooks, same slots ------------------------------------------------------------------------
def same_slots(a: argparse.Namespace, tmp: Path) -> dict:
    import distributed

    from nbjobs.store import Store

    nb = tmp / "job.ipynb"
    nb.write_text(json.dumps(NB))
    homes = {"local": tmp / "home-local", "dask": tmp / "home-dask"}
    cluster = distributed.LocalCluster(n_workers=SLOTS, threads_per_worker=1, processes=True, dashboard_address=":0")
    workers = {"local": start("local", homes["local"], ["--concurrency", str(SLOTS)]),
               "dask": start("dask", homes["dask"], ["--concurrency", str(SLOTS), "--executor", "dask",
                                                     "--scheduler", cluster.scheduler_address])}
    wall = {"local": 0.0, "dask": 0.0}
    handles: dict[str, list] = {"local": [], "dask": []}
    single: dict[str, list] = {"local": [], "dask": []}
    try:
        for label in homes:  # warm-up, untimed: hosts and pools up on both sides
            check(label, batch(homes[label], nb, 0, SLOTS)[1])
        done = 0
        while done < a.jobs:  # interleaved rounds, so a change in the machine's load hits both alike
            count = min(a.batch, a.jobs - done)
            for label in homes:
                seconds, hs = batch(homes[label], nb, done, count)
                wall[label] += seconds
                handles[label] += hs
            done += count
        for i in range(a.latency):  # one job at a time: submit -> succeeded
            for label in homes:
                single[label] += batch(homes[label], nb, i, 1)[1]
    finally:
        stop(list(workers.values()))
        cluster.close()
    rows = {}
    for label in homes:
        check(label, handles[label] + single[label])
        store = Store(homes[label] / "nbjobs.db")
        latency = [h.record.finished_at - h.record.submitted_at for h in single[label]]
        durations = [x["finished_at"] - x["started_at"] for h in handles[label] for x in store.attempts(h.id)]
        rows[label] = {"wall": wall[label], "throughput": a.jobs / wall[label], "p50": statistics.median(latency),
                       "attempt_p50": statistics.median(durations)}
    return rows


# --- 2. sleep-bound on 4 Dask workers x 2 threads from Dask's CLI ---------------------------------------------
def sleep_bound(a: argparse.Namespace, tmp: Path) -> dict:
    import nbjobs

    base = tmp / "cli"
    base.mkdir()
    env = env_with_path()
    env.pop("NBJOBS_HOME", None)
    sched_file = base / "scheduler.json"
    procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched_file)], cwd=base, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)]
    head = None
    out: dict = {}
    try:
        deadline = time.monotonic() + 60
        while not (sched_file.exists() and sched_file.stat().st_size):
            if time.monotonic() > deadline:
                raise SystemExit("the dask scheduler did not start")
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        procs.append(subprocess.Popen(["dask", "worker", address, "--nworkers", "4", "--nthreads", "2",
                                       "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(base)],
                                      cwd=base, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True))
        import distributed

        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(4, timeout=120)
            pids = client.run(os.getpid)
        home = tmp / "home-sleep"
        head = start("dask (CLI cluster)", home, ["--executor", "dask", "--scheduler", address])

        def warm() -> bool:
            return all(len(h["kernels"]) + len(h["zygotes"]) >= 2 for h in map(holdings, pids.values()))
        deadline = time.monotonic() + 180
        while not warm():  # each Dask worker: 2 hosts, each with its zygote (fork) or a warm kernel (pool)
            if time.monotonic() > deadline:
                raise SystemExit(f"the Dask workers' hosts did not warm up: {[holdings(p) for p in pids.values()]}")
            time.sleep(0.2)
        # untimed warm-up, as in part 1: a zygote's process exists before its imports are done, and
        # one trivial job per slot waits for them (and for a warm kernel's readiness on the pool path)
        warmup = [nbjobs.submit("x = 1", name=f"warm-up-{i}", home=home, start_worker=False) for i in range(8)]
        nbjobs.wait(warmup, timeout=300, poll=0.05)
        check("warm-up", warmup)
        while not warm():  # the pool refilled
            if time.monotonic() > deadline + 120:
                raise SystemExit(f"the Dask workers' hosts did not warm up again: {[holdings(p) for p in pids.values()]}")
            time.sleep(0.2)
        out["memory"] = {addr: memory(pid) for addr, pid in pids.items()}
        t0 = time.perf_counter()
        jobs = [nbjobs.submit("import time\ntime.sleep(10)", name=f"sleep-{i}", home=home, start_worker=False)
                for i in range(a.sleep_jobs)]
        nbjobs.wait(jobs, timeout=600, poll=0.05)
        out["wall"] = time.perf_counter() - t0
        check("sleep", jobs)
        out["span"] = max(j.record.finished_at for j in jobs) - min(j.record.submitted_at for j in jobs)
        out["warm"] = sum(j.attempts()[-1]["kernel_path"] in ("warm", "forked") for j in jobs)
        out["per_worker"] = {}
        for j in jobs:
            addr = j.attempts()[-1]["versions"]["dask_worker"]
            out["per_worker"][addr] = out["per_worker"].get(addr, 0) + 1
    finally:
        if head is not None:
            stop([head])
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
    return out


def memory(worker_pid: int) -> dict[str, float]:
    held = holdings(worker_pid)
    return {"worker": rss(worker_pid) / 2**20, "hosts": len(held["hosts"]),
            "hosts_mb": sum(map(rss, held["hosts"])) / 2**20, "kernels": len(held["kernels"] + held["zygotes"]),
            "kernels_mb": sum(map(rss, held["kernels"] + held["zygotes"])) / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=60)
    ap.add_argument("--batch", type=int, default=10, help="jobs per round; rounds alternate local and dask")
    ap.add_argument("--latency", type=int, default=10, help="jobs run one at a time per executor, for the p50")
    ap.add_argument("--sleep-jobs", type=int, default=16, help="time.sleep(10) jobs on 4 Dask workers x 2 threads")
    ap.add_argument("--kernels", choices=("fork", "pool", "cold"), help="the kernel path of every nbjobs worker here "
                    "(default: theirs, fork where it applies)")
    a = ap.parse_args()
    global KERNELS
    KERNELS = a.kernels
    tmp = Path(tempfile.mkdtemp(prefix="nbjobs-bench-dask-"))
    load = os.getloadavg()[0]
    rows = same_slots(a, tmp)
    local, dask = rows["local"], rows["dask"]
    print(f"1. {a.jobs} notebook jobs per executor in rounds of {a.batch}, then {a.latency} one at a time; "
          f"{SLOTS} slots each; load average {load:.2f} at start, {os.getloadavg()[0]:.2f} after "
          f"({os.cpu_count()} cores)")
    print(f"{'executor':10}{'wall s':>9}{'jobs/s':>9}{'submit->succeeded p50 ms':>26}{'attempt p50 ms':>16}")
    for label, r in rows.items():
        print(f"{label:10}{r['wall']:9.1f}{r['throughput']:9.2f}{r['p50'] * 1000:26.0f}{r['attempt_p50'] * 1000:16.0f}")
    print(f"summary: dask {dask['throughput']:.2f} jobs/s vs local {local['throughput']:.2f} jobs/s = "
          f"{dask['throughput'] / local['throughput']:.2f}x local; per-job overhead (submit->succeeded p50) "
          f"{(dask['p50'] - local['p50']) * 1000:+.0f} ms")
    if a.sleep_jobs:
        s = sleep_bound(a, tmp)
        ideal = 10.0 * -(-a.sleep_jobs // 8)
        print(f"\n2. {a.sleep_jobs} x time.sleep(10) on 4 Dask workers x 2 threads (dask CLI), one nbjobs worker")
        print(f"{'wall s':>8}{'span s':>8}{'ideal s':>9}{'ratio':>7}{'ready kernels':>14}  jobs per Dask worker")
        print(f"{s['wall']:8.1f}{s['span']:8.1f}{ideal:9.1f}{s['wall'] / ideal:7.2f}{s['warm']:>10}/{a.sleep_jobs:<3}  "
              f"{sorted(s['per_worker'].values())}")
        print("\nwhat each Dask worker holds, idle and ready (RSS, MiB; zygotes on the fork path, else warm kernels):")
        print(f"{'Dask worker':28}{'worker':>8}{'hosts':>7}{'hosts MiB':>11}{'kernels':>9}{'kernels MiB':>13}")
        for addr, m in sorted(s["memory"].items()):
            print(f"{addr:28}{m['worker']:8.0f}{m['hosts']:7d}{m['hosts_mb']:11.0f}{m['kernels']:9d}"
                  f"{m['kernels_mb']:13.0f}")


if __name__ == "__main__":
    main()
