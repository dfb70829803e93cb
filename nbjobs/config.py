"""Where things live and the defaults.  Reads the environment; imports nothing from nbjobs.

>>> import os; os.environ["NBJOBS_HOME"] = "/tmp/nbjobs-doc"; str(home())
'/tmp/nbjobs-doc'
"""
from __future__ import annotations

import os
from pathlib import Path

#: seconds a claim is valid without a heartbeat; a worker that vanishes loses its jobs after this
LEASE_SECONDS = float(os.environ.get("NBJOBS_LEASE_SECONDS", "30"))
#: how often a worker extends its leases and looks for cancel requests
HEARTBEAT_SECONDS = float(os.environ.get("NBJOBS_HEARTBEAT_SECONDS", "0.5"))
#: how long an idle auto-started worker lives (its warm kernels make the next job start at once)
AUTOSTART_IDLE_EXIT = float(os.environ.get("NBJOBS_IDLE_EXIT", "900"))
#: how many jobs an auto-started worker runs at once: the machine's cores unless set
AUTOSTART_CONCURRENCY = max(1, int(os.environ.get("NBJOBS_AUTOSTART_CONCURRENCY") or os.cpu_count() or 1))
#: how long a stopping worker lets running jobs finish before releasing them
STOP_GRACE = float(os.environ.get("NBJOBS_STOP_GRACE", "10"))
#: how long a stopped kernel gets between interrupt and kill
KILL_GRACE = float(os.environ.get("NBJOBS_KILL_GRACE", "1.5"))
#: SQLite busy timeout, seconds
#: warm kernels per worker (default: one per concurrency slot); 0 starts every kernel on demand
POOL_SIZE = os.environ.get("NBJOBS_POOL_SIZE")
#: how a worker gets its kernels: fork (a zygote forks them; the default where it applies), pool or cold
KERNELS = os.environ.get("NBJOBS_KERNELS")
#: modules (comma-separated) every job's kernel has imported before the job (with fork: in the zygote, once)
PRELOAD = os.environ.get("NBJOBS_PRELOAD", "")
#: a warm kernel nobody took for this long is retired (its kernel name goes cold until asked for)
POOL_IDLE_RETIRE = float(os.environ.get("NBJOBS_POOL_IDLE_RETIRE", "900"))
#: no new warm kernel starts while a runner host's idle kernels use more memory than this (bytes)
POOL_MAX_MEMORY = int(float(os.environ.get("NBJOBS_POOL_MAX_MEMORY_MB", "1024")) * 2**20)
BUSY_TIMEOUT = 30.0
#: largest JSON value stored inline in SQLite; larger values go to a file in the run folder
INLINE_LIMIT = 64 * 1024


def home() -> Path:
    """The nbjobs home: ``$NBJOBS_HOME`` or ``~/.nbjobs``.  Not created here."""
    env = os.environ.get("NBJOBS_HOME")
    return Path(env).expanduser().absolute() if env else Path.home() / ".nbjobs"


def db_path(home_dir: Path | None = None) -> Path:
    return (home_dir or home()) / "nbjobs.db"


def runs_dir(home_dir: Path | None = None) -> Path:
    return (home_dir or home()) / "runs"


def run_dir(job_id: str, home_dir: Path | None = None) -> Path:
    """The folder of one job: output notebooks, logs and recorded outputs of every attempt."""
    return runs_dir(home_dir) / job_id


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents, readable by the user only (0700)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for p in reversed(missing):
        p.mkdir(mode=0o700, exist_ok=True)
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def remove_run_dirs(job_ids, home_dir: Path | None = None) -> int:
    """Delete the run folders of these jobs (after their records were pruned).  Returns how many."""
    import shutil

    n = 0
    for job_id in job_ids:
        path = run_dir(job_id, home_dir)
        if path.exists():
            shutil.rmtree(path)
            n += 1
    return n
