"""What dependencies, webhooks and schedules cost, next to baselines measured in the same run.

1. The store's job path (insert, claim, finish in three write transactions) for ``--n`` jobs:
   ``plain`` jobs (the baseline), jobs with a webhook (each end also writes an outbox row in the
   same transaction), and a chain (each job ``after`` the previous one: inserted ``waiting``,
   moved to ``queued`` in the transaction that ends its upstream).
2. Fire times: croniter's own ``get_next`` on a UTC datetime (the baseline) against
   `schedule.next_fire` (croniter on the zone's wall clock + the DST rules) in UTC and in
   America/New_York, for an every-minute expression.
3. The firer: `schedule.tick` over one simulated day (a tick a minute) for one every-minute
   schedule (1440 fires: a job inserted per tick), and for one daily schedule (1 fire, 1439 ticks
   with nothing to do).

    python benchmarks/bench_flow.py [--n 2000]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path


def job_path(store, n: int, mode: str) -> float:
    t0 = time.perf_counter()
    prev = None
    for i in range(n):
        spec = {"kind": "cell", "source": "1", "name": f"{mode}{i}"}
        if mode == "webhook":
            spec["options"] = {"notify": "http://127.0.0.1:9/hook"}
        if mode == "chain" and prev:
            spec["after"] = [prev]
        rec, _ = store.insert_job(spec, actor="bench")
        claimed = store.claim("w1")
        assert claimed is not None and claimed[0].id == rec.id, mode
        store.finish_attempt(rec.id, claimed[1], "w1", "succeeded")
        prev = rec.id
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="jobs per mode (default 2000)")
    a = ap.parse_args()
    from croniter import croniter

    from nbjobs import schedule as sch
    from nbjobs.store import Store

    print(f"load average: {os.getloadavg()[0]:.2f}")
    home = Path(tempfile.mkdtemp(prefix="nbjobs-bench-flow-"))
    store = Store(home / "nbjobs.db")
    times = {}
    for mode in ("plain", "webhook", "chain", "plain"):  # the baseline twice: first and last
        times.setdefault(mode, []).append(job_path(store, a.n, mode))
    base = min(times["plain"])
    print(f"\n1. insert + claim + finish, {a.n} jobs each")
    for mode in ("plain", "webhook", "chain"):
        t = min(times[mode])
        print(f"   {mode:<8} {t / a.n * 1e3:6.3f} ms/job   x{t / base:.2f} of plain")
    assert store.conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == a.n

    n = 5000
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    it = croniter("* * * * *", start)
    t0 = time.perf_counter()
    for _ in range(n):
        it.get_next(datetime)
    raw = time.perf_counter() - t0
    print(f"\n2. next fire time, {n} consecutive slots of '* * * * *'")
    print(f"   croniter.get_next (UTC)     {raw / n * 1e6:7.1f} us/slot   x1.00")
    for tz in ("UTC", "America/New_York"):
        t, t0 = start.timestamp(), time.perf_counter()
        for _ in range(n):
            t = sch.next_fire("* * * * *", tz, t)
        took = time.perf_counter() - t0
        print(f"   schedule.next_fire {tz:<16} {took / n * 1e6:7.1f} us/slot   x{took / raw:.2f}")

    print("\n3. the firer over one simulated day, a tick a minute")
    for cron in ("* * * * *", "30 2 * * *"):
        s2 = Store(home / f"tick-{cron.count('*')}.db")
        t_start = datetime(2026, 1, 5, tzinfo=timezone.utc).timestamp()
        s2.add_schedule("b", cron, "UTC", {"kind": "cell", "source": "1", "name": "b"}, misfire="once",
                        misfire_cap=10, overlap="allow", now=t_start)
        t0 = time.perf_counter()
        for k in range(1, 1441):
            sch.tick(s2, "w1", now=t_start + 60 * k)
        took = time.perf_counter() - t0
        fired = s2.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        print(f"   '{cron}': {fired:4d} fires, {took / 1440 * 1e3:6.2f} ms/tick")
        s2.close()
    store.close()


if __name__ == "__main__":
    main()
