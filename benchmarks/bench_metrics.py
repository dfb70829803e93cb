"""History and SLI frames over a million jobs, next to a plain ``pandas.read_sql`` of the same table.

A fresh home gets ``--n`` job rows (default 1,000,000) loaded with `bulk_insert`
(tests/support/loaders.py): 40 job names, submits spread over the last 6 days (so every job is
inside ``sli()``'s default 7-day window: the worst case), exponential queue waits, log-normal runtimes, 92% succeeded, 4% failed,
2% timed out, 1.5% cancelled and the rest waiting, queued, running or retrying; 8% of the jobs
took two attempts.  Every attempt has its own ``attempts`` row (about 1.08 rows per job), so
``history()`` pays for its join to the last attempt's worker.

What is timed, ``--repeat`` times each (default 3), interleaved; the best and median wall time and
the best CPU time of this process (SQLite runs in it) are reported, with the load average, since
a busy machine slows the wall times:

- ``read_sql``: ``pandas.read_sql("SELECT * FROM jobs", conn)`` on a plain sqlite3 connection: the
  baseline, every column of the table, no derived columns.
- ``history()``: `nbjobs.history` of every job: 18 typed columns (UTC timestamps, categorical
  state, tags decoded, queue wait and runtime, the worker of the last attempt).
- ``sli()``: `nbjobs.sli` with its defaults (7 days, by name): one read of the rows it needs,
  then numpy.
- ``sli(freq=1h)``, ``slo()`` and ``prometheus_text()``, for information.

Each call opens nothing new: the store's connection is reused, as in a notebook.  The target
is ``sli() <= 2 s`` for a million rows.

    python benchmarks/bench_metrics.py [--n 1000000] [--repeat 3] [--db PATH]
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

# the loaders tests and benchmarks share (tests/support/loaders.py), imported where used
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

JOB_COLUMNS = ("id", "name", "kind", "state", "reason", "priority", "tags", "parameters", "kernel", "retries",
               "attempts", "failures", "submitted_at", "run_at", "started_at", "finished_at", "updated_at",
               "error_type", "error_message", "code_hash", "output_path", "submitted_by", "options")
ATTEMPT_COLUMNS = ("job_id", "number", "worker_id", "host", "pid", "started_at", "finished_at", "outcome",
                   "error_type", "error_message", "output_path", "code_hash", "kernel")


def generate(store, n: int, now: float, seed: int = 0) -> tuple[int, int]:
    """Load ``n`` jobs and their attempts; returns (jobs, attempts) written."""
    from support.loaders import bulk_insert

    rng = np.random.default_rng(seed)
    names = np.array([f"report-{i:02d}" for i in range(40)], dtype=object)[rng.zipf(1.3, n) % 40]
    submitted = np.sort(now - rng.uniform(60, 6 * 86400, n))            # rows in submit order, as in real life
    wait = rng.exponential(2.0, n)
    runtime = rng.lognormal(2.5, 1.0, n)
    started = submitted + wait
    finished = started + runtime
    u = rng.uniform(size=n)
    edges = np.cumsum([0.92, 0.04, 0.02, 0.015, 0.002, 0.002, 0.0005])
    state_names = np.array(["succeeded", "failed", "timed_out", "cancelled", "waiting", "queued", "running",
                            "retrying"], dtype=object)
    state = state_names[np.searchsorted(edges, u, side="right")]
    two = (rng.uniform(size=n) < 0.08) & (state != "cancelled")
    never_ran = np.isin(state, ["cancelled", "waiting", "queued"])
    active = np.isin(state, ["waiting", "queued", "running", "retrying"])
    attempts = np.where(never_ran, 0, np.where(two, 2, 1))
    first_end = started + runtime * 0.4                                 # a first attempt that failed early
    ids = [uuid.uuid4().hex for _ in range(n)]
    is_fail = np.isin(state, ["failed", "timed_out"])
    reason = np.where(state == "failed", "error", np.where(state == "timed_out", "timeout",
                                                            np.where(state == "cancelled", "cancelled", None)))
    started_col = np.where(never_ran, np.nan, started)
    finished_col = np.where(active, np.nan, np.where(state == "cancelled", submitted + wait, finished))
    nan_to_none = lambda a: [None if x != x else x for x in a.tolist()]  # noqa: E731
    jobs = zip(ids, names.tolist(), ["cell"] * n, state.tolist(), reason.tolist(), [0] * n, ["[]"] * n, ["{}"] * n,
               ["python3"] * n, (two * 1).tolist(), attempts.tolist(), (is_fail * 1 + two * 1).tolist(),
               submitted.tolist(), submitted.tolist(), nan_to_none(started_col), nan_to_none(finished_col),
               np.fmax(submitted, np.nan_to_num(finished_col)).tolist(),
               np.where(is_fail, "ValueError", None).tolist(), np.where(is_fail, "boom", None).tolist(),
               ["0123456789abcdef"] * n, [f"/runs/{i}/1/output.ipynb" for i in ids], ["bench"] * n, ["{}"] * n)
    n_jobs = bulk_insert(store, "jobs", JOB_COLUMNS, jobs, defer_indexes=True)
    workers = [f"w{i}" for i in range(8)]
    wk = rng.integers(0, 8, n)

    def attempt_rows():
        for i in range(n):
            if attempts[i] == 0:
                continue
            job_end = finished_col[i]
            last_end = None if job_end != job_end else job_end
            if attempts[i] == 2:
                yield (ids[i], 1, workers[wk[i]], "host", 1, started[i], first_end[i], "error", "ValueError", "first",
                       None, "0123456789abcdef", "python3")
                yield (ids[i], 2, workers[(wk[i] + 1) % 8], "host", 1, first_end[i] + 1.0, last_end,
                       _outcome(state[i]), None, None, None, "0123456789abcdef", "python3")
            else:
                yield (ids[i], 1, workers[wk[i]], "host", 1, started[i], last_end, _outcome(state[i]), None, None,
                       None, "0123456789abcdef", "python3")

    rows = sorted(attempt_rows(), key=lambda r: (r[0], r[1]))  # in primary-key order: appends, not page splits
    n_attempts = bulk_insert(store, "attempts", ATTEMPT_COLUMNS, rows)
    return n_jobs, n_attempts


def _outcome(state: str) -> str:
    return {"succeeded": "succeeded", "failed": "error", "timed_out": "timeout", "running": "running",
            "retrying": "error"}[state]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="job rows (default 1,000,000)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each (default 3)")
    ap.add_argument("--db", help="reuse (or create and keep) this database file instead of a temporary one")
    a = ap.parse_args()

    home = Path(a.db).parent if a.db else Path(tempfile.mkdtemp(prefix="nbjobs-bench-metrics-")) / "home"
    os.environ["NBJOBS_HOME"] = str(home)
    import nbjobs
    from nbjobs.store import open_store

    store = open_store()
    have = store.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    if have == 0:
        t = time.perf_counter()
        n_jobs, n_attempts = generate(store, a.n, time.time())
        print(f"loaded {n_jobs:,} jobs and {n_attempts:,} attempts in {time.perf_counter() - t:.1f} s "
              f"({store.path.stat().st_size / 1e6:.0f} MB)")
    else:
        print(f"reusing {have:,} jobs in {store.path}")
    conn = sqlite3.connect(store.path)

    kinds = {
        "read_sql": lambda: pd.read_sql("SELECT * FROM jobs", conn),
        "history()": lambda: nbjobs.history(),
        "sli()": lambda: nbjobs.sli(),
        "sli(freq=1h)": lambda: nbjobs.sli(freq="1h"),
        "slo()": lambda: nbjobs.slo(),
        "prometheus_text()": lambda: nbjobs.metrics.prometheus_text(),
    }
    shapes: dict[str, str] = {}
    for kind, fn in kinds.items():  # warm-up: imports, page cache
        out = fn()
        shapes[kind] = f"{out.shape[0]:,} x {out.shape[1]}" if hasattr(out, "shape") else f"{len(out):,} chars"
    times: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    loads = []
    for _ in range(a.repeat):
        for kind, fn in kinds.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            times[kind].append(time.perf_counter() - t)
            cpu[kind].append(time.process_time() - c)
        loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"))

    base, base_cpu = min(times["read_sql"]), min(cpu["read_sql"])
    print(f"{a.repeat} runs each on {have or a.n:,} jobs (1-minute load average {min(loads):.1f} to {max(loads):.1f} "
          f"on {os.cpu_count()} CPUs), seconds:")
    print(f"  {'':<18} {'best':>7} {'median':>7} {'cpu':>7}  {'vs read_sql':>11}  result")
    for kind, values in times.items():
        best = min(values)
        print(f"  {kind:<18} {best:7.3f} {statistics.median(values):7.3f} {min(cpu[kind]):7.3f}  {best / base:10.2f}x  "
              f"{shapes[kind]}")
    s, h, s_cpu = min(times["sli()"]), min(times["history()"]), min(cpu["sli()"])
    verdict = "meets" if s <= 2.0 else "MISSES"
    print(f"summary: sli() {s:.2f} s ({s_cpu:.2f} s CPU) = {s / base:.2f}x read_sql ({base:.2f} s), history() {h:.2f} s "
          f"= {h / base:.2f}x; {verdict} the sli() <= 2 s target on {have or a.n:,} jobs")


if __name__ == "__main__":
    sys.exit(main())
