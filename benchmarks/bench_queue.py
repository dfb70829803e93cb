"""The queue layer alone: enqueue and claim+finish rates of `nbjobs.store.Store`, with every
event and attempt row it writes, next to a bare SQLite queue measured in the same run.

What is timed (one process, one real database file in WAL mode with synchronous=NORMAL):

- ``nbjobs enqueue``: ``Store.insert_job`` of a small cell-job spec, N times, one transaction
  each (the job row, its ``submitted`` event, the record read back), as ``nbjobs.submit`` does.
- ``nbjobs claim+finish``: ``Store.claim`` then ``Store.finish_attempt(..., "succeeded")`` until
  the queue is empty (per job: the claim's SELECT + guarded UPDATE, an attempt row, a ``running``
  event, then the attempt's end, the job's end and a ``succeeded`` event: two transactions).
- ``bare enqueue`` / ``bare claim+finish``: the floor on the same machine: a one-table queue in
  the style of huey's SQLite storage (INSERT a row; DELETE ... RETURNING the oldest row), one
  transaction each, same pragmas, no audit trail.

Every nbjobs job is checked afterwards: N rows, all ``succeeded``, N attempt rows, 3N events.

    python benchmarks/bench_queue.py [--n 5000]
"""
from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nbjobs.store import Store  # noqa: E402

SPEC = {"kind": "cell", "source": "x = 1", "kernel": "python3", "cwd": "/tmp", "name": "bench", "parameters": {"n": 1}}


def bench_nbjobs(path: Path, n: int) -> tuple[float, float]:
    store = Store(path)
    t = time.perf_counter()
    for _ in range(n):
        store.insert_job(SPEC, "bench")
    enqueue = n / (time.perf_counter() - t)
    t = time.perf_counter()
    done = 0
    while True:
        claimed = store.claim("w1", 30.0)
        if claimed is None:
            break
        rec, number = claimed
        store.finish_attempt(rec.id, number, "w1", "succeeded")
        done += 1
    drain = done / (time.perf_counter() - t)
    counts = store.counts()
    conn = sqlite3.connect(path)
    attempts = conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    assert done == n and counts.get("succeeded") == n and attempts == n and events == 3 * n, (done, counts, attempts, events)
    return enqueue, drain


def bench_bare(path: Path, n: int) -> tuple[float, float]:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE task (id INTEGER PRIMARY KEY, queue TEXT, data BLOB, priority REAL, ts REAL)")
    conn.execute("CREATE INDEX task_priority ON task (priority DESC, id)")
    data = b"x" * 200
    t = time.perf_counter()
    for _ in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO task (queue, data, priority, ts) VALUES (?,?,?,?)", ("q", data, 0.0, time.time()))
        conn.execute("COMMIT")
    enqueue = n / (time.perf_counter() - t)
    t = time.perf_counter()
    done = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        row = conn.execute("DELETE FROM task WHERE id = (SELECT id FROM task WHERE queue = ? "
                           "ORDER BY priority DESC, id LIMIT 1) RETURNING data", ("q",)).fetchone()
        conn.execute("COMMIT")
        if row is None:
            break
        done += 1
    drain = done / (time.perf_counter() - t)
    assert done == n
    return enqueue, drain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="jobs per measurement (default 5000)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare_enq, bare_drain = bench_bare(Path(tmp) / "bare.db", a.n)
        enq, drain = bench_nbjobs(Path(tmp) / "nbjobs.db", a.n)
    print(f"{'':24}{'ops/s':>10}{'vs bare':>9}{'target':>10}")
    print(f"{'bare enqueue':24}{bare_enq:>10,.0f}")
    print(f"{'nbjobs enqueue':24}{enq:>10,.0f}{enq / bare_enq:>8.2f}x{'>= 5,000':>10}")
    print(f"{'bare claim+finish':24}{bare_drain:>10,.0f}")
    print(f"{'nbjobs claim+finish':24}{drain:>10,.0f}{drain / bare_drain:>8.2f}x{'>= 3,000':>10}")
    print(f"bench_queue: n={a.n} enqueue {enq:,.0f}/s (target 5,000), claim+finish {drain:,.0f}/s (target 3,000), "
          f"bare {bare_enq:,.0f}/s and {bare_drain:,.0f}/s; pid {os.getpid()}")


if __name__ == "__main__":
    main()
