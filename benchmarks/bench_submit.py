"""Submit latency of ``%%job`` next to ``nbjobs.submit`` and a raw sqlite3 INSERT, in one run.

What is timed, 200 times each (after 20 warm-up submits), interleaved so drift hits all alike:

- ``raw INSERT``: one ``BEGIN IMMEDIATE; INSERT INTO jobs ...; COMMIT`` of a similar row into a
  database with the nbjobs schema and pragmas (WAL, synchronous=NORMAL): the floor for a durable
  submit.
- ``api submit``: ``nbjobs.submit(code, start_worker=False)``.
- ``api submit + inputs``: the same with ``inputs={"x": 7, "d": {...}}, outputs=["y"]`` (inputs
  are written to the run folder before the row is inserted).
- ``%%job``: a whole IPython cell ``%%job --no-worker ...`` through ``InteractiveShell.run_cell``,
  including IPython's own cell handling and the display of the receipt (the handle's repr and
  HTML are built, which reads the row back).
- ``%%job --in/--out``: the same cell with ``--in x,d --out y``.

No worker runs (``--no-worker`` / ``start_worker=False``), so only the submit is measured.  After
every timed submit (outside the timing) the job's row is read back through a separate sqlite3
connection and must be ``queued``: the job was in SQLite when the call returned.  The extension's
load time (``%load_ext nbjobs`` in a fresh process, median of 5) is printed first.

    python benchmarks/bench_submit.py [--n 200]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

LOAD_PROBE = r"""
import sys, time
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
c = Config(); c.HistoryManager.hist_file = ":memory:"
ip = InteractiveShell.instance(config=c)
t = time.perf_counter()
ip.run_line_magic("load_ext", "nbjobs")
dt = time.perf_counter() - t
heavy = [m for m in ("papermill", "pandas", "numpy", "ipywidgets", "sqlite_utils", "jupyter_client", "nbjobs.api")
         if m in sys.modules]
print(dt, ",".join(heavy))
"""


def load_time(env: dict) -> tuple[float, str]:
    runs = []
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", LOAD_PROBE], env=env, capture_output=True, text=True,
                             check=True).stdout.split()
        runs.append((float(out[0]), out[1] if len(out) > 1 else ""))
    return statistics.median(r[0] for r in runs), runs[-1][1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="timed submits per kind (default 200)")
    n = ap.parse_args().n
    tmp = Path(tempfile.mkdtemp(prefix="nbjobs-bench-submit-"))
    home = tmp / "home"
    os.environ["NBJOBS_HOME"] = str(home)
    os.chdir(tmp)
    env = dict(os.environ)

    load_s, heavy = load_time(env)

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    import nbjobs
    from nbjobs.store import Store

    c = Config()
    c.HistoryManager.hist_file = ":memory:"
    ip = InteractiveShell.instance(config=c)
    ip.run_line_magic("load_ext", "nbjobs")
    ip.run_cell("x = 7; d = {'a': [1, 2, 3], 'b': 'text'}")

    # the raw baseline: same schema and pragmas, its own file
    raw_path = tmp / "raw.db"
    Store(raw_path).close()
    raw = sqlite3.connect(raw_path, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")

    def raw_insert() -> str:
        job_id, now = uuid.uuid4().hex, time.time()
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO jobs (id, name, kind, state, source, parameters, kernel, cwd, submitted_at, run_at, "
                    "updated_at, options) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (job_id, "bench", "cell", "queued", "y = x + 1", "{}", "python3", str(tmp), now, now, now,
                     json.dumps({"cell_timeout": None})))
        raw.execute("COMMIT")
        return job_id

    Store(home / "nbjobs.db").close()
    check = sqlite3.connect(home / "nbjobs.db")
    check_raw = sqlite3.connect(raw_path)

    def verify(conn: sqlite3.Connection, job_id: str) -> None:
        row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row[0] != "queued":
            raise SystemExit(f"job {job_id} was not recorded as queued when the submit returned: {row}")

    sink = io.StringIO()

    def cell(source: str) -> str:
        with contextlib.redirect_stdout(sink):
            result = ip.run_cell(source)
        result.raise_error()
        sink.seek(0)
        sink.truncate()
        return result.result.id

    kinds = {
        "raw INSERT": (lambda: raw_insert(), check_raw),
        "api submit": (lambda: nbjobs.submit("y = x + 1", name="bench", start_worker=False).id, check),
        "api submit + inputs": (lambda: nbjobs.submit("y = x + 1", name="bench", start_worker=False,
                                                      inputs={"x": 7, "d": {"a": [1, 2, 3], "b": "text"}},
                                                      outputs=["y"]).id, check),
        "%%job": (lambda: cell("%%job --no-worker --name bench\ny = x + 1"), check),
        "%%job --in/--out": (lambda: cell("%%job --no-worker --name bench --in x,d --out y\ny = x + 1"), check),
    }
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for i in range(n + 20):
        for kind, (fn, conn) in kinds.items():
            t = time.perf_counter()
            job_id = fn()
            dt = time.perf_counter() - t
            verify(conn, job_id)
            if i >= 20:
                times[kind].append(dt * 1000)
    workers = Store(home / "nbjobs.db").live_workers()
    if workers:
        raise SystemExit(f"a worker was started during the benchmark: {workers}")

    base50, base95 = pct(times["raw INSERT"], 0.5), pct(times["raw INSERT"], 0.95)
    print(f"%load_ext nbjobs: {load_s * 1000:.1f} ms (median of 5 fresh processes); heavy modules loaded: "
          f"{heavy or 'none'}")
    print(f"{n} submits each, ms          p50      p95      max   p50 vs raw  p95 vs raw")
    for kind, values in times.items():
        p50, p95 = pct(values, 0.5), pct(values, 0.95)
        print(f"  {kind:<22} {p50:8.3f} {p95:8.3f} {max(values):8.3f}   {p50 / base50:8.1f}x  {p95 / base95:8.1f}x")
    j50, j95 = pct(times["%%job"], 0.5), pct(times["%%job"], 0.95)
    a95 = pct(times["api submit"], 0.95)
    io95 = pct(times["%%job --in/--out"], 0.95)
    verdict = "meets" if max(j95, io95) <= 10 else "MISSES"
    print(f"summary: %%job p50 {j50:.2f} ms, p95 {j95:.2f} ms (--in/--out p95 {io95:.2f} ms); api p95 {a95:.2f} ms; "
          f"raw INSERT p95 {base95:.2f} ms; %%job p95 = {j95 / base95:.1f}x raw, {j95 / a95:.1f}x api; "
          f"{verdict} the 10 ms p95 target")


if __name__ == "__main__":
    main()
