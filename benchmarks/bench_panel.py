"""The live panel's cost with 100,000 jobs in the database, next to a baseline read in the same run.

Set-up: a new home with ``--jobs`` (100,000) ended jobs bulk-loaded through ``insert_rows``
(tests/support/loaders.py; a mix of succeeded / failed / timed-out / cancelled, 50 names, some
tags) plus 20 queued and 5 running jobs, all under the real schema and indexes (every SQL
statement lives in nbjobs/store/).

What is timed (median of many runs, milliseconds):

- **baseline**: ``Store.list_jobs(limit=50)``, i.e. ``SELECT * FROM jobs ORDER BY submitted_at DESC
  LIMIT 50`` decoded into records: what ``nbjobs ls --limit 50`` reads.
- **change check, idle**: one poll of the updater when nothing was committed
  (``PRAGMA data_version`` only).
- **change check + changed-row read**: one poll after another connection updated one running job's
  progress: ``data_version``, the changed IDs from the ``jobs_updated`` index, and that one row.
  This is "one panel refresh" in the issue's sense.
- **refresh of a displayed panel** (limit 50, real ipywidgets without a front end) after that
  change: poll + model update + render diff + the widget traits set; with and without the header's
  counts re-read (``api.summary``, at most once a second).
- **full re-read** of the panel's rows (``PanelModel.query``), done at most every 10 s, and
  ``api.summary`` alone.

Then the real updater thread runs with a displayed panel (limit 50) and a receipt for ``--seconds``
(60) in each of two idle situations - nothing commits; a live worker heartbeats every 0.5 s (so
``data_version`` changes every tick) - and its CPU share is its ``time.thread_time`` over wall time.

Targets (issue 5): a refresh <= 20 ms, the thread <= 2 % of one core while idle.

    python benchmarks/bench_panel.py [--jobs 100000] [--seconds 60]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

# tests/support: the loaders tests and benchmarks share, and the updater's counters
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import updater  # noqa: E402


def median_ms(fn, n: int, setup=None) -> float:
    times = []
    for _ in range(n):
        if setup is not None:
            setup()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def seed(store, n: int) -> float:
    from support.loaders import insert_rows

    now = time.time()
    rng = random.Random(5)
    ended = ["succeeded"] * 85 + ["failed"] * 9 + ["timed_out"] + ["cancelled"] * 5

    def rows():
        for i in range(n):
            t = now - (n - i) * 3.0
            state = rng.choice(ended)
            err = {"error_type": "ValueError", "error_message": "bad input"} if state in ("failed", "timed_out") else {}
            yield dict(name=f"job-{i % 50}", kind="cell" if i % 3 else "notebook", state=state, attempts=1,
                       source="x = 1", tags=["nightly"] if i % 7 == 0 else [], submitted_at=t, started_at=t + 0.5,
                       finished_at=t + 2.5, progress_done=3, progress_total=3, **err)
        for i in range(20):
            yield dict(name=f"waiting-{i}", kind="cell", state="queued", source="x = 1", submitted_at=now - 30 + i)

    t = time.perf_counter()
    insert_rows(store, rows())
    return time.perf_counter() - t


def run_thread(seconds: float, heartbeat_home: Path | None) -> dict[str, float]:
    from nbjobs.store import Store

    stop = threading.Event()
    beats = 0

    def heartbeats():
        nonlocal beats
        s = Store(heartbeat_home / "nbjobs.db")
        s.register_worker("bench-worker", concurrency=1)
        while not stop.wait(0.5):
            s.heartbeat("bench-worker")
            beats += 1
        s.worker_stopped("bench-worker")
        s.close()

    hb = threading.Thread(target=heartbeats, daemon=True) if heartbeat_home else None
    if hb:
        hb.start()
    with updater.count() as stats:
        wall = time.perf_counter()
        time.sleep(seconds)
        stats["wall"] = time.perf_counter() - wall  # the thread's share of the wall clock, not the ticks'
    stop.set()
    if hb:
        hb.join()
    return {"beats": beats, **{k: stats[k] for k in ("ticks", "cpu", "wall")}}


def thread_cpu_seconds(thread: threading.Thread) -> float:
    """CPU seconds (user + system) of one thread of this process, from /proc."""
    with open(f"/proc/self/task/{thread.native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each idle CPU measurement")
    args = ap.parse_args(argv)

    home = Path(tempfile.mkdtemp(prefix="nbjobs-bench-panel-")) / "home"
    os.environ["NBJOBS_HOME"] = str(home)
    import nbjobs
    from nbjobs import panel, watch
    from nbjobs.api.handle import _store
    from nbjobs.store import Store

    writer = Store(home / "nbjobs.db")
    load_s = seed(writer, args.jobs)
    writer.register_worker("bench-claimer", concurrency=5)
    running = [writer.claim("bench-claimer")[0] for _ in range(5)]
    reader = _store(home)
    print(f"nbjobs panel benchmark: {args.jobs:,} jobs loaded in {load_s:.1f} s "
          f"(+20 queued, 5 running); schema v{reader.version}; python {sys.version.split()[0]}")

    baseline = median_ms(lambda: reader.list_jobs(limit=50), 200)

    h = watch.Home(home)
    h.poll(time.time())
    idle_poll = median_ms(lambda: h.poll(time.time()), 2000)

    counter = iter(range(10**9))

    def change():
        job = running[next(counter) % len(running)]
        writer.set_progress(job.id, "bench-claimer", next(counter) % 3, 3)

    changed_poll = median_ms(lambda: h.poll(time.time()), 300, setup=change)
    t = h.poll(time.time())
    assert t.changed == {} and not t.flood

    # a displayed panel driven tick by tick (the thread is kept out of it here)
    active = watch.activate
    watch.activate = lambda view: None
    try:
        p = nbjobs.panel(home=home, limit=50)
        root = p.widget()
        root._view_count = 1
        view = p.view
        ph = watch.Home(home)
        view.refresh(ph.poll(time.time()))

        def refresh_no_summary():
            ph.summary_at = time.time() + 3600  # header counts not due
            view.refresh(ph.poll(time.time()))

        def refresh_with_summary():
            ph.summary_at = -1e9  # header counts due
            view.refresh(ph.poll(time.time()))

        refresh = median_ms(refresh_no_summary, 200, setup=change)
        refresh_sum = median_ms(refresh_with_summary, 100, setup=change)
        reread = median_ms(lambda: view.model.query(lambda **kw: nbjobs.records(home=home, **kw)), 50)
        summary = median_ms(lambda: nbjobs.summary(home=home), 50)
        p.close()
    finally:
        watch.activate = active

    print()
    print(f"{'what':<52}{'ms':>9}{'x baseline':>12}{'target':>10}")
    rows = [
        ("baseline: list_jobs(limit=50) (nbjobs ls)", baseline, ""),
        ("change check, nothing committed", idle_poll, "<= 20"),
        ("change check + changed-row read (1 row changed)", changed_poll, "<= 20"),
        ("panel refresh after a change (no header re-read)", refresh, "<= 20"),
        ("panel refresh after a change + header counts", refresh_sum, "<= 20"),
        ("full re-read of the panel's 50 rows (<= every 10 s)", reread, ""),
        ("api.summary() alone (<= 1/s after changes, every 5 s)", summary, ""),
    ]
    for what, ms, target in rows:
        print(f"{what:<52}{ms:>9.3f}{ms / baseline:>12.2f}{target:>10}")

    # the real thread, idle, with a displayed panel and a receipt
    print()
    p = nbjobs.panel(home=home, limit=50)
    root = p.widget()
    root._view_count = 1
    receipt = panel.Receipt(nbjobs.get(running[0].id, home=home))
    receipt.widget()._view_count = 1
    for job in running:  # end the running jobs: idle means nothing moves
        writer.finish_attempt(job.id, job.attempts, "bench-claimer", "succeeded")
    writer.worker_stopped("bench-claimer")
    time.sleep(2)
    thread = watch.UPDATER.thread
    assert thread is not None and thread.is_alive()
    for label, hb in (("idle, nothing commits", None), ("idle, a live worker heartbeats every 0.5 s", home)):
        cpu0, wall0 = thread_cpu_seconds(thread), time.perf_counter()
        info = run_thread(args.seconds, hb)
        cpu, wall = thread_cpu_seconds(thread) - cpu0, time.perf_counter() - wall0
        tt = 100 * info["cpu"] / info["wall"]
        print(f"updater thread, {label}: {info['cpu'] * 1000:.0f} ms CPU (time.thread_time) in {info['wall']:.0f} s "
              f"= {tt:.3f} % of a core; /proc: {100 * cpu / wall:.3f} %; {info['ticks']} ticks, "
              f"{info['cpu'] / max(info['ticks'], 1) * 1000:.3f} ms/tick (target <= 2 %)")
    p.close()
    receipt.close()
    panel.unwatch_all()
    deadline = time.monotonic() + 5
    while updater.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
