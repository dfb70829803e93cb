"""Soak: N jobs through real workers while a chaos loop SIGKILLs workers and kernels.

What it does, all with real processes (no mocks):

1. **Calm baseline** (same run, same machine): ``--baseline-jobs`` jobs of the same mix through the
   same workers with no chaos, for jobs/s without faults.
2. **Chaos**: submits ``--jobs`` cell jobs (trivial cells that record their index; every 10th
   sleeps 1.5 s so kills land mid-cell; 80 % with ``retries=4``, 20 % with none; every 50th fails
   on purpose with ``retries=1``), starts ``--workers`` workers (``--concurrency`` each,
   ``NBJOBS_LEASE_SECONDS=2``), and every 2.5-7.5 s (``--chaos-every 5``) either SIGKILLs a random
   worker (and starts a new one) or SIGKILLs a random kernel of the home (found in ``/proc``:
   an ``ipykernel`` with the home's ``NBJOBS_HOME``: a job's, or a warm one waiting in a pool), until every job is in a final state.
3. **Checks and table**: submitted / succeeded / failed (on purpose, or by chaos with no retry
   left) / lost (rows missing, or still active at the end) / duplicated (more than one succeeded
   attempt, more than one 'succeeded' event, or outputs not from the succeeded attempt or with
   the wrong value), attempt outcomes, kills, orphaned processes, wall time, jobs/s and the ratio
   to the calm baseline.  The last line is a one-line summary.

    python benchmarks/soak.py [--jobs 500] [--workers 2] [--concurrency 2] [--seed 1]
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LEASE = "2"
ACTIVE = ("waiting", "queued", "running", "retrying")


def job_mix(i: int) -> dict:
    """The i-th job of the mix: its code and retry settings, and whether it fails on purpose."""
    deliberate = i % 50 == 7
    sleep = "import time\ntime.sleep(1.5)\n" if i % 10 == 3 else ""
    if deliberate:
        code = f"raise ValueError('deliberate failure {i}')"
        retries = 1
    else:
        code = f"{sleep}import nbjobs\nnbjobs.record('i', {i})"
        retries = 0 if i % 5 == 0 else 4
    return {"code": code, "name": f"soak-{i}", "retries": retries, "deliberate": deliberate,
            "backoff": {"base": 0.5, "factor": 2, "cap": 5}}


class Soak:
    def __init__(self, home: Path, n_workers: int, concurrency: int, rng: random.Random):
        self.home, self.n_workers, self.concurrency, self.rng = home, n_workers, concurrency, rng
        self.env = dict(os.environ, NBJOBS_HOME=str(home), NBJOBS_LEASE_SECONDS=LEASE)
        self.workers: list[subprocess.Popen] = []
        self.worker_kills = self.kernel_kills = self.worker_exits = 0
        self.log = open(home / "soak-workers.log", "ab")

    # --- processes --------------------------------------------------------------------------------
    def start_worker(self) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "worker", "--concurrency", str(self.concurrency),
                                 "--grace", "5"], env=self.env, stdout=self.log, stderr=self.log,
                                stdin=subprocess.DEVNULL)
        self.workers.append(proc)
        return proc

    def keep_workers(self) -> None:
        """A worker that exited on its own (it should not) is counted and replaced."""
        for proc in list(self.workers):
            if proc.poll() is not None:
                self.workers.remove(proc)
                self.worker_exits += 1
        while len(self.workers) < self.n_workers:
            self.start_worker()

    def processes(self) -> dict[int, str]:
        """Live runners, kernels (and their short-lived helpers) of this home: {pid: kind}."""
        home_var = f"NBJOBS_HOME={self.home}".encode()
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
                if home_var not in env:
                    continue
                stat = Path(f"/proc/{entry}/stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] in "ZX":
                    continue
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                if b"ipykernel" in cmd:  # a job's kernel, or a warm one waiting in a pool (a job must survive that too)
                    found[int(entry)] = "kernel"
                elif any(v.startswith(b"NBJOBS_JOB_ID=") for v in env):  # set for what a cold kernel starts
                    found[int(entry)] = "helper"  # e.g. `ip addr`
                elif b"nbjobs.runner" in cmd:
                    found[int(entry)] = "runner"
            except OSError:
                continue
        return found

    def chaos(self) -> str:
        """Kill a random worker (and start another) or a random kernel; returns what it did."""
        kernels = [pid for pid, kind in self.processes().items() if kind == "kernel"]
        if kernels and self.rng.random() < 0.5:
            pid = self.rng.choice(kernels)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return "kernel already gone"
            self.kernel_kills += 1
            return f"killed kernel {pid}"
        victim = self.rng.choice(self.workers)
        victim.kill()
        victim.wait()
        self.workers.remove(victim)
        self.worker_kills += 1
        self.start_worker()
        return f"killed worker {victim.pid}"

    def stop(self) -> None:
        for proc in self.workers:
            proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers = []

    # --- the database -----------------------------------------------------------------------------
    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.home / "nbjobs.db", timeout=30)
        conn.row_factory = sqlite3.Row
        return conn

    def counts(self) -> dict[str, int]:
        conn = self.db()
        try:
            return {r[0]: r[1] for r in conn.execute("SELECT state, count(*) FROM jobs GROUP BY state")}
        finally:
            conn.close()


def submit_all(home: Path, n: int) -> tuple[list[str], dict[str, dict]]:
    import nbjobs

    ids, mix = [], {}
    for i in range(n):
        m = job_mix(i)
        job = nbjobs.submit(m["code"], name=m["name"], retries=m["retries"], backoff=m["backoff"], home=home,
                            start_worker=False)
        ids.append(job.id)
        mix[job.id] = m | {"i": i}
    return ids, mix


def run_phase(home: Path, n: int, args, rng: random.Random, chaos: bool) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    ids, mix = submit_all(home, n)
    soak = Soak(home, args.workers, args.concurrency, rng)
    soak.keep_workers()
    next_chaos = time.monotonic() + rng.uniform(0.5, 1.5) * args.chaos_every
    last_print = time.monotonic()
    deadline = t0 + args.max_minutes * 60
    stuck = False
    try:
        while True:
            counts = soak.counts()
            if not any(counts.get(s, 0) for s in ACTIVE):
                break
            now = time.monotonic()
            if now > deadline:
                stuck = True
                break
            soak.keep_workers()
            if chaos and now >= next_chaos:
                soak.chaos()
                next_chaos = now + rng.uniform(0.5, 1.5) * args.chaos_every
            if now - last_print >= 15:
                last_print = now
                print(f"  [{'chaos' if chaos else 'calm'} {now - t0:5.0f} s] "
                      + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                      + f"; kills: {soak.worker_kills} workers, {soak.kernel_kills} kernels",
                      file=sys.stderr, flush=True)
            time.sleep(0.2)
        wall = time.monotonic() - t0
    finally:
        soak.stop()
    time.sleep(1.0)  # an orphan gets a moment (the runner polls its parent every 0.5 s)
    orphans = soak.processes()
    return {"ids": ids, "mix": mix, "wall": wall, "stuck": stuck, "soak": soak, "orphans": orphans}


def check(home: Path, phase: dict) -> dict:
    """Everything the table reports, read from SQLite."""
    import nbjobs

    ids, mix = phase["ids"], phase["mix"]
    conn = sqlite3.connect(home / "nbjobs.db")
    conn.row_factory = sqlite3.Row
    jobs = {r["id"]: r for r in conn.execute("SELECT * FROM jobs")}
    attempts: dict[str, list] = {}
    for a in conn.execute("SELECT * FROM attempts ORDER BY job_id, number"):
        attempts.setdefault(a["job_id"], []).append(a)
    succeeded_events = {r[0]: r[1] for r in conn.execute(
        "SELECT job_id, count(*) FROM events WHERE to_state = 'succeeded' GROUP BY job_id")}
    outputs: dict[str, list] = {}
    for o in conn.execute("SELECT job_id, name, attempt FROM outputs"):
        outputs.setdefault(o["job_id"], []).append(o)
    outcomes: dict[str, int] = {}
    for rows in attempts.values():
        for a in rows:
            outcomes[a["outcome"]] = outcomes.get(a["outcome"], 0) + 1
    missing = [i for i in ids if i not in jobs]
    active = [i for i in ids if i in jobs and jobs[i]["state"] in ACTIVE]
    states: dict[str, int] = {}
    for i in ids:
        if i in jobs:
            states[jobs[i]["state"]] = states.get(jobs[i]["state"], 0) + 1
    duplicated, wrong = [], []
    for i in ids:
        if i not in jobs:
            continue
        ok = [a for a in attempts.get(i, []) if a["outcome"] == "succeeded"]
        if len(ok) > 1 or succeeded_events.get(i, 0) > 1:
            duplicated.append(i)
        if jobs[i]["state"] == "succeeded":
            outs = outputs.get(i, [])
            if len(ok) != 1 or [(o["name"], o["attempt"]) for o in outs] != [("i", ok[0]["number"])] \
                    or nbjobs.result(i, home=home) != {"i": mix[i]["i"]}:
                wrong.append(i)
    deliberate = [i for i in ids if mix[i]["deliberate"]]
    # a job that fails on purpose must end failed (its last attempt may have been lost to chaos)
    deliberate_ok = [i for i in deliberate if i in jobs and jobs[i]["state"] == "failed"]
    failed_by_chaos = [i for i in ids if i in jobs and jobs[i]["state"] in ("failed", "timed_out")
                       and not mix[i]["deliberate"]]
    unfinished_attempts = sum(1 for rows in attempts.values() for a in rows
                              if a["outcome"] == "running" or a["finished_at"] is None)
    conn.close()
    return {"states": states, "missing": missing, "active": active, "duplicated": duplicated, "wrong": wrong,
            "deliberate": deliberate, "deliberate_ok": deliberate_ok, "failed_by_chaos": failed_by_chaos,
            "outcomes": outcomes, "unfinished_attempts": unfinished_attempts,
            "no_retry": sum(1 for i in ids if mix[i]["retries"] == 0 and not mix[i]["deliberate"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=500, help="jobs in the chaos phase (default 500)")
    ap.add_argument("--baseline-jobs", type=int, default=None,
                    help="jobs in the calm baseline phase (default: a tenth of --jobs, at least 20; 0 skips it)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--concurrency", type=int, default=2, help="jobs per worker at once (default 2)")
    ap.add_argument("--chaos-every", type=float, default=5.0,
                    help="the chaos loop strikes every 0.5 S to 1.5 S seconds, at random (default 5)")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the chaos loop (default 1)")
    ap.add_argument("--max-minutes", type=float, default=60, help="give up (and count active jobs as lost) after this")
    ap.add_argument("--home", help="folder for the run's homes (default: a new temporary folder)")
    args = ap.parse_args()
    baseline_n = max(20, args.jobs // 10) if args.baseline_jobs is None else args.baseline_jobs
    root = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="nbjobs-soak-"))
    os.chdir(root)
    rng = random.Random(args.seed)
    print(f"soak in {root}: {args.workers} workers x concurrency {args.concurrency}, lease {LEASE} s, "
          f"{os.cpu_count()} CPUs", flush=True)

    calm = None
    if baseline_n:
        print(f"calm baseline: {baseline_n} jobs, no chaos ...", flush=True)
        calm = run_phase(root / "calm", baseline_n, args, rng, chaos=False)
        calm_rate = baseline_n / calm["wall"]
        print(f"  {baseline_n} jobs in {calm['wall']:.1f} s = {calm_rate:.2f} jobs/s", flush=True)
    print(f"chaos: {args.jobs} jobs, a kill every {args.chaos_every / 2:g}-{args.chaos_every * 1.5:g} s ...",
          flush=True)
    phase = run_phase(root / "chaos", args.jobs, args, rng, chaos=True)
    c = check(root / "chaos", phase)
    soak = phase["soak"]
    n = args.jobs
    lost = len(c["missing"]) + len(c["active"])
    rate = n / phase["wall"]
    rows = [
        ("submitted", n),
        ("succeeded", c["states"].get("succeeded", 0)),
        ("failed", c["states"].get("failed", 0) + c["states"].get("timed_out", 0)),
        ("  on purpose (expected)", f"{len(c['deliberate_ok'])} of {len(c['deliberate'])}"),
        ("  by chaos, no retry left", f"{len(c['failed_by_chaos'])} (of {c['no_retry']} jobs without retries)"),
        ("cancelled", c["states"].get("cancelled", 0)),
        ("lost (missing rows / stuck active)", f"{lost} ({len(c['missing'])} / {len(c['active'])})"),
        ("duplicated (succeeded twice)", len(c["duplicated"])),
        ("outputs wrong or from another attempt", len(c["wrong"])),
        ("attempts never finished", c["unfinished_attempts"]),
        ("attempt outcomes", ", ".join(f"{k} {v}" for k, v in sorted(c["outcomes"].items()))),
        ("kills: workers / kernels", f"{soak.worker_kills} / {soak.kernel_kills}"),
        ("workers that exited on their own", soak.worker_exits),
        ("runner/kernel processes left after stop", len(phase["orphans"])),
        ("wall time", f"{phase['wall']:.1f} s" + (" (gave up: --max-minutes)" if phase["stuck"] else "")),
        ("throughput under chaos", f"{rate:.2f} jobs/s"),
    ]
    if calm:
        rows.append(("calm baseline (same run)", f"{calm_rate:.2f} jobs/s ({baseline_n} jobs)"))
        rows.append(("chaos / calm", f"{rate / calm_rate:.2f}x"))
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    good = (lost == 0 and not c["duplicated"] and not c["wrong"] and not c["unfinished_attempts"]
            and len(c["deliberate_ok"]) == len(c["deliberate"]) and not phase["orphans"])
    print(f"soak {'OK' if good else 'FAILED'}: {n} submitted, {c['states'].get('succeeded', 0)} succeeded, "
          f"{c['states'].get('failed', 0) + c['states'].get('timed_out', 0)} failed "
          f"({len(c['deliberate_ok'])} on purpose), {lost} lost, {len(c['duplicated'])} duplicated; "
          f"{soak.worker_kills} worker + {soak.kernel_kills} kernel kills; {phase['wall']:.0f} s, {rate:.2f} jobs/s"
          + (f" ({rate / calm_rate:.2f}x calm)" if calm else ""))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
