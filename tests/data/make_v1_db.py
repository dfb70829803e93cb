"""Write ``nbjobs-v1.db`` next to this script: a database as nbjobs schema version 1 left it.

It uses only ``nbjobs.store.MIGRATIONS[0]`` (migrations are append-only, so this is exactly the
v1 schema) and raw SQL, never the Store, so the file stays a v1 database whatever the current
schema is.  tests/test_store.py::test_migrates_a_v1_database opens a copy with today's Store.

    python tests/data/make_v1_db.py      # rewrites tests/data/nbjobs-v1.db; commit the result
"""
from __future__ import annotations

import sqlite3
from pathlib import Path

from nbjobs.store import MIGRATIONS

HERE = Path(__file__).resolve().parent
OUT = HERE / "nbjobs-v1.db"

DONE = "5d0c1f0e8a8b4c6f9e2a7b3c4d5e6f70"   # succeeded, with an attempt, 3 events and 2 outputs
QUEUED = "9a1b2c3d4e5f40718293a4b5c6d7e8f9"  # still queued
T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC

JOBS = [
    {"id": DONE, "name": "daily-report", "kind": "notebook", "state": "succeeded", "reason": None, "priority": 0,
     "tags": '["reports", "daily"]', "notebook": "/home/ana/reports/daily.ipynb", "source": None,
     "parameters": '{"day": "2023-11-14", "n": 7}', "kernel": "python3", "cwd": "/home/ana/reports",
     "retries": 2, "timeout": 600.0, "idem_key": "daily-2023-11-14", "attempts": 1, "failures": 0,
     "submitted_at": T0, "run_at": T0, "started_at": T0 + 0.5, "finished_at": T0 + 12.25,
     "updated_at": T0 + 12.25, "worker_id": None, "lease_until": None, "cancel_requested": 0,
     "progress_done": 4, "progress_total": 4, "error_type": None, "error_message": None, "error_cell": None,
     "error_traceback": None, "code_hash": "3f2a9c1b7e6d5a40",
     "output_path": f"/home/ana/.nbjobs/runs/{DONE}/attempt-1.ipynb",
     "submitted_by": "api:ana@laptop:4242", "options": "{}"},
    {"id": QUEUED, "name": "train-model", "kind": "cell", "state": "queued", "reason": None, "priority": 5,
     "tags": '["ml"]', "notebook": None, "source": "import time\nresult = sum(range(10))\nnbjobs.record('r', result)",
     "parameters": "{}", "kernel": None, "cwd": "/home/ana/ml", "retries": 0, "timeout": None, "idem_key": None,
     "attempts": 0, "failures": 0, "submitted_at": T0 + 60, "run_at": T0 + 60, "started_at": None,
     "finished_at": None, "updated_at": T0 + 60, "worker_id": None, "lease_until": None, "cancel_requested": 0,
     "progress_done": 0, "progress_total": 0, "error_type": None, "error_message": None, "error_cell": None,
     "error_traceback": None, "code_hash": "a0b1c2d3e4f50617", "output_path": None,
     "submitted_by": "magic:ana@laptop:4242", "options": '{"outputs": ["result"]}'},
]
ATTEMPTS = [
    {"job_id": DONE, "number": 1, "worker_id": "w-laptop-1", "host": "laptop", "pid": 5151,
     "started_at": T0 + 0.5, "finished_at": T0 + 12.25, "outcome": "succeeded", "error_type": None,
     "error_message": None, "error_cell": None, "error_traceback": None,
     "output_path": f"/home/ana/.nbjobs/runs/{DONE}/attempt-1.ipynb",
     "log_path": f"/home/ana/.nbjobs/runs/{DONE}/attempt-1.log", "code_hash": "3f2a9c1b7e6d5a40",
     "kernel": "python3", "versions": '{"python": "3.11.7", "papermill": "2.6.0"}'},
]
EVENTS = [
    {"id": 1, "job_id": DONE, "at": T0, "from_state": None, "to_state": "queued", "reason": "submitted",
     "actor": "api:ana@laptop:4242"},
    {"id": 2, "job_id": DONE, "at": T0 + 0.5, "from_state": "queued", "to_state": "running", "reason": "attempt 1",
     "actor": "worker:w-laptop-1"},
    {"id": 3, "job_id": DONE, "at": T0 + 12.25, "from_state": "running", "to_state": "succeeded",
     "reason": "attempt 1: succeeded", "actor": "worker:w-laptop-1"},
    {"id": 4, "job_id": QUEUED, "at": T0 + 60, "from_state": None, "to_state": "queued", "reason": "submitted",
     "actor": "magic:ana@laptop:4242"},
]
OUTPUTS = [
    {"job_id": DONE, "name": "total", "kind": "json", "type_name": "builtins.int", "value": "1234", "path": None,
     "size": 4, "attempt": 1, "recorded_at": T0 + 12.0},
    {"job_id": DONE, "name": "table", "kind": "pandas", "type_name": "pandas.DataFrame", "value": None,
     "path": "table-4f1d2a3b.pkl", "size": 2048, "attempt": 1, "recorded_at": T0 + 12.1},
]
WORKERS = [
    {"id": "w-laptop-1", "host": "laptop", "pid": 5151, "executor": "local", "concurrency": 2, "autostarted": 1,
     "state": "stopped", "started_at": T0 - 5, "heartbeat_at": T0 + 130, "stopped_at": T0 + 130},
]
TABLES = {"jobs": JOBS, "attempts": ATTEMPTS, "events": EVENTS, "outputs": OUTPUTS, "workers": WORKERS}


def main(path: Path = OUT) -> Path:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size=1024")     # keeps the committed file small
    conn.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal/-shm
    conn.execute("BEGIN")
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version=1")
    for table, rows in TABLES.items():
        for row in rows:
            cols = ", ".join(row)
            marks = ", ".join("?" * len(row))
            conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(row.values()))
    conn.execute("COMMIT")
    conn.execute("VACUUM")
    conn.close()
    return path


if __name__ == "__main__":
    print(main())
