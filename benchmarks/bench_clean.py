"""Clean throughput check: N trivial notebook jobs at concurrency 2, all of which must succeed.

No chaos, nothing killed: this is the run where every job has to succeed (the issue: "600
trivial jobs at concurrency 2, 600 succeeded").  In a fresh temporary NBJOBS_HOME it starts one
``nbjobs worker --concurrency 2`` process (with its warm kernel pool, the default), waits until
that worker is registered, then submits ``--jobs`` trivial two-cell notebook jobs (``x = 1`` /
``print(x)``, kernelspec ``python3``) with ``nbjobs.run_notebook(path, start_worker=False)`` in
``--rounds`` rounds, waiting for each round with ``nbjobs.wait``.  Every job that did not succeed
is listed with its attempts' outcome, error_type, error_message and error_traceback.

In the same run, a baseline: papermill's own Python API in a loop (``papermill.execute_notebook``
on the same notebook, in this process, one after the other) for ``--papermill-n`` runs, whose
rate is extrapolated to N (the table says so).  Printed: jobs/s of both and their ratio, and how
many pids each part used (from ``/proc/sys/kernel/ns_last_pid`` before and after; other work on
the machine uses pids too, so this is an upper bound).

The exit code is 1 if any job did not succeed.  The last line is a one-line summary.

    python benchmarks/bench_clean.py [--jobs 600] [--rounds 3] [--papermill-n 20]

A short check: ``python benchmarks/bench_clean.py --jobs 60 --rounds 1``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOK = {
    "cells": [
        {"cell_type": "code", "id": "c1", "metadata": {}, "source": "x = 1", "outputs": [], "execution_count": None},
        {"cell_type": "code", "id": "c2", "metadata": {}, "source": "print(x)", "outputs": [], "execution_count": None},
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4, "nbformat_minor": 5,
}


def last_pid() -> int | None:
    try:
        return int(Path("/proc/sys/kernel/ns_last_pid").read_text())
    except (OSError, ValueError):
        return None


def pids_used(before: int | None, after: int | None) -> str:
    """Pids allocated between two readings of ns_last_pid (mod pid_max), and whether it wrapped."""
    if before is None or after is None:
        return "n/a (no /proc/sys/kernel/ns_last_pid)"
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        pid_max = 32768
    used = (after - before) % pid_max
    wrapped = after < before
    return f"{used} ({before} -> {after}{', wrapped past pid_max ' + str(pid_max) if wrapped else ''})"


def bench_papermill(nb: Path, n: int, out: Path) -> float:
    import papermill

    # the kernels papermill starts inherit our stderr (and say "running over TCP" each time): to a file
    sys.stderr.flush()
    saved = os.dup(2)
    with open(out / "stderr.log", "ab") as f:
        os.dup2(f.fileno(), 2)
    try:
        t = time.perf_counter()
        for i in range(n):
            papermill.execute_notebook(str(nb), str(out / f"pm-{i}.ipynb"), progress_bar=False, log_output=False)
        return time.perf_counter() - t
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=600, help="notebook jobs in all (default 600)")
    ap.add_argument("--rounds", type=int, default=3, help="submitted in this many rounds, each waited for (default 3)")
    ap.add_argument("--concurrency", type=int, default=2, help="the worker's concurrency (default 2)")
    ap.add_argument("--papermill-n", type=int, default=20,
                    help="papermill.execute_notebook runs for the baseline, extrapolated to --jobs (default 20)")
    ap.add_argument("--timeout", type=float, default=900, help="seconds to wait for one round (default 900)")
    args = ap.parse_args()
    if args.jobs < 1 or args.rounds < 1 or args.rounds > args.jobs:
        ap.error("need --jobs >= --rounds >= 1")

    import nbjobs
    from nbjobs.errors import WaitTimeout

    tmp = Path(tempfile.mkdtemp(prefix="nbjobs-clean-"))
    nb = tmp / "trivial.ipynb"
    nb.write_text(json.dumps(NOTEBOOK))
    home = tmp / "home"
    home.mkdir()
    print(f"bench_clean in {tmp}: {args.jobs} jobs in {args.rounds} round(s), one worker at concurrency "
          f"{args.concurrency} (warm pool), {os.cpu_count()} CPUs", flush=True)

    # --- papermill's Python API, in this process ----------------------------------------------------
    pm_out = tmp / "papermill"
    pm_out.mkdir()
    pm_n = max(0, args.papermill_n)
    pid0 = last_pid()
    pm_wall = bench_papermill(nb, pm_n, pm_out) if pm_n else 0.0
    pm_pids = pids_used(pid0, last_pid())
    pm_rate = pm_n / pm_wall if pm_wall else None
    print(f"papermill.execute_notebook: {pm_n} runs in {pm_wall:.1f} s"
          + (f" = {pm_rate:.2f} notebooks/s" if pm_rate else ""), flush=True)

    # --- nbjobs ---------------------------------------------------------------------------------------
    env = dict(os.environ, NBJOBS_HOME=str(home))
    log = open(tmp / "worker.log", "ab")
    worker = subprocess.Popen([sys.executable, "-m", "nbjobs", "worker", "--concurrency", str(args.concurrency)],
                              env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=str(tmp))
    ids: list[str] = []
    try:
        t_ready = time.perf_counter()
        while nbjobs.summary(home=home).get("workers", 0) < 1:  # registered (its pool may still be warming)
            if worker.poll() is not None:
                raise SystemExit(f"bench_clean: the worker exited with code {worker.returncode}; see {tmp / 'worker.log'}")
            if time.perf_counter() - t_ready > 60:
                raise SystemExit("bench_clean: the worker did not register within 60 s")
            time.sleep(0.05)
        print(f"worker registered after {time.perf_counter() - t_ready:.1f} s", flush=True)
        pid1 = last_pid()
        t0 = time.perf_counter()
        per = [args.jobs // args.rounds + (1 if r < args.jobs % args.rounds else 0) for r in range(args.rounds)]
        for r, n in enumerate(per, 1):
            tr = time.perf_counter()
            batch = [nbjobs.run_notebook(nb, home=home, start_worker=False).id for _ in range(n)]
            ids += batch
            try:
                nbjobs.wait(batch, timeout=args.timeout, home=home)
            except WaitTimeout as exc:
                print(f"  round {r}: {exc}", flush=True)
            print(f"  round {r}: {n} jobs in {time.perf_counter() - tr:.1f} s", flush=True)
        nj_wall = time.perf_counter() - t0
        nj_pids = pids_used(pid1, last_pid())
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    # --- results ----------------------------------------------------------------------------------------
    states: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    bad = []
    for jid in ids:
        job = nbjobs.get(jid, home=home)
        state = job.state.value
        states[state] = states.get(state, 0) + 1
        attempts = job.attempts()
        for a in attempts:
            outcomes[a["outcome"]] = outcomes.get(a["outcome"], 0) + 1
        if state != "succeeded":
            bad.append((jid, state, attempts))
    n = len(ids)
    ok = states.get("succeeded", 0)
    nj_rate = n / nj_wall
    rows = [
        ("jobs submitted", n),
        ("succeeded", ok),
        ("not succeeded", len(bad)),
        ("job states", ", ".join(f"{k} {v}" for k, v in sorted(states.items()))),
        ("attempt outcomes", ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items(), key=lambda kv: -kv[1]))),
        ("nbjobs wall (first submit -> last done)", f"{nj_wall:.1f} s"),
        ("nbjobs throughput", f"{nj_rate:.2f} jobs/s"),
    ]
    if pm_rate:
        rows += [
            ("papermill API, one after the other", f"{pm_rate:.2f} notebooks/s ({pm_n} runs measured; "
             f"{n} extrapolated: {n / pm_rate:.1f} s)"),
            ("nbjobs / papermill", f"{nj_rate / pm_rate:.2f}x"),
        ]
    rows += [
        ("pids used by nbjobs part", f"{nj_pids}" + (f", {int(nj_pids.split()[0]) / n:.1f} per job"
                                                      if nj_pids[0].isdigit() else "")),
        ("pids used by papermill part", f"{pm_pids}" + (f", {int(pm_pids.split()[0]) / pm_n:.1f} per run"
                                                         if pm_pids[0].isdigit() and pm_n else "")),
        ("home", str(home)),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    if bad:
        print(f"\njobs that did not succeed ({len(bad)}):")
        for jid, state, attempts in bad:
            print(f"  {jid}: {state}")
            for a in attempts:
                print(f"    attempt {a['number']}: {a['outcome']} {a.get('error_type') or ''}: "
                      f"{a.get('error_message') or ''}")
                if a.get("error_traceback"):
                    print("      " + a["error_traceback"].rstrip().replace("\n", "\n      "))
    print(f"\nsummary: {ok} of {n} trivial notebook jobs succeeded at concurrency {args.concurrency} "
          f"({args.rounds} round(s)); nbjobs {nj_rate:.2f} jobs/s"
          + (f" vs papermill API {pm_rate:.2f}/s (extrapolated from {pm_n}) = {nj_rate / pm_rate:.2f}x" if pm_rate else "")
          + f"; pids used: {nj_pids.split()[0]}")
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
