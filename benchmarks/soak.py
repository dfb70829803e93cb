"""Soak: N jobs through real workers while a chaos loop SIGKILLs workers, runner hosts and kernels.

Goal (the issue): **spurious 0, lost 0, duplicated 0**: infrastructure failures (a worker lost,
a runner host that died, a kernel killed while idle in a pool) must not fail a job, even one
submitted with ``retries=0``.

What it does, all with real processes (no mocks), each phase in a fresh temporary NBJOBS_HOME
with a short lease (``NBJOBS_LEASE_SECONDS=3``) so lost workers are noticed quickly:

1. **Calm baseline** (same run, same machine): ``--baseline-jobs`` jobs of the same mix through
   the same kind of workers with no chaos, for jobs/s without faults.
2. **Chaos**: submits ``--jobs`` cell jobs (the mix: mostly trivial cells that record their
   index; every 10th sleeps 1.5 s so kills land mid-cell; 2 in 100 raise on purpose; 80 % with
   ``retries=0``, the rest with 2 retries), starts ``--workers`` workers (``python -m nbjobs
   worker --concurrency C``) and every 0.5-1.5 x ``--chaos-every`` seconds SIGKILLs one of
   (``--kinds``):

   - ``worker``: a worker process (a new one is started at once);
   - ``runner``: a runner host (``python -m nbjobs.runner --serve``, a child of a worker);
   - ``idle``:   a pool kernel that is not the ``kernel_pid`` of a running attempt;
   - ``midjob``: the kernel of a running attempt (its job and attempt are recorded).

   Every kill is recorded (time, kind, pid, the attempts it hit) in ``kills.json`` in the home.
   A process is only ever signalled after ``/proc/PID/environ`` showed this soak's own
   NBJOBS_HOME and ``/proc/PID/stat`` showed it is not a zombie, right before the kill.
   Chaos goes on until every job is final (at most ``--max-minutes``); then the soak waits
   ``--drain-seconds`` more, without chaos, for what is still active.
3. **Checks and table**, read from SQLite.  Each job's code leaves evidence files
   ``evidence/<index>-<kernel pid>.start`` / ``.end`` (so one can see whether its code ran in a
   given kernel), and the deliberate failures are known from the mix.  Every job is one of:

   - *succeeded*;
   - *failed by own code*: a deliberate failure (its code raised);
   - *killed by soak*: not succeeded, and the soak killed its kernel while its attempt was
     running (a ``midjob`` kill, or any kernel kill that the evidence shows hit its running code);
   - **spurious**: any other job that did not succeed (its code never raised);
   - **lost**: its row is missing, or it is still active after the drain;

   and, across those, **duplicated**: more than one succeeded attempt, more than one
   ``succeeded`` event, or (for a succeeded job) an output whose value is wrong or that is not
   from the succeeded attempt.  Also: attempt outcomes (whatever outcomes appear), kills by kind,
   processes of the home left after the workers stopped (then killed), wall time, jobs/s and the
   ratio to the calm baseline.  Each spurious job is listed with its attempts' outcome,
   error_type and error_message (and the kills that touched it).  The last line is a one-line
   summary; the exit code is 1 if spurious, lost or duplicated is not 0.

    python benchmarks/soak.py [--jobs 2000] [--baseline-jobs 200] [--workers 2] [--concurrency 2]
                              [--chaos-every 5] [--kinds worker,runner,idle,midjob] [--seed 1]

A short check while developing: ``python benchmarks/soak.py --jobs 60 --baseline-jobs 20``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LEASE = "3"
ACTIVE = ("waiting", "queued", "running", "retrying")
KINDS = {"worker": 0.2, "runner": 0.25, "idle": 0.3, "midjob": 0.25}  # kill kinds and their weights


# --- the job mix --------------------------------------------------------------------------------------
def job_mix(i: int, evidence: Path) -> dict:
    """The i-th job of the mix: its code, retries, and whether it fails on purpose.

    Every job first writes ``<evidence>/<i>-<kernel pid>.start``; one that gets to its end writes
    ``.end``: so after the run we know whether (and in which kernel) its code began and finished.
    """
    deliberate = i % 50 == 7
    sleeps = i % 10 == 3
    mark = f"_soak_mark = __import__('os').path.join({str(evidence)!r}, '{i}-%d' % __import__('os').getpid())"
    lines = [mark, "open(_soak_mark + '.start', 'w').close()"]
    if sleeps:
        lines.append("__import__('time').sleep(1.5)")
    if deliberate:
        lines.append(f"raise ValueError('deliberate failure {i}')")
        retries = 1 if i % 100 == 7 else 0
    else:
        lines.append(f"import nbjobs\nnbjobs.record('i', {i})")
        retries = 2 if i % 5 == 1 else 0
    lines.append("open(_soak_mark + '.end', 'w').close()")
    return {"code": "\n".join(lines), "name": f"soak-{i}", "retries": retries, "deliberate": deliberate,
            "sleeps": sleeps, "backoff": {"base": 0.5, "factor": 2, "cap": 5}}


# --- processes of one home ----------------------------------------------------------------------------
def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


class Home:
    """One NBJOBS_HOME, its workers, and the processes that carry its NBJOBS_HOME."""

    def __init__(self, home: Path, n_workers: int, concurrency: int):
        self.home, self.n_workers, self.concurrency = home, n_workers, concurrency
        self.home_var = f"NBJOBS_HOME={home}".encode()
        self.env = dict(os.environ, NBJOBS_HOME=str(home), NBJOBS_LEASE_SECONDS=LEASE)
        self.workers: list[subprocess.Popen] = []
        self.worker_exits = 0
        self.log = open(home / "workers.log", "ab")

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

    def ours(self, pid: int) -> tuple[bytes, int] | None:
        """(cmdline, parent pid) if ``pid`` is a live, non-zombie process with this home's NBJOBS_HOME."""
        env = _read(f"/proc/{pid}/environ")
        if env is None or self.home_var not in env.split(b"\0"):
            return None
        stat = _read(f"/proc/{pid}/stat")
        if stat is None:
            return None
        fields = stat.rsplit(b")", 1)[1].split()
        if fields[0] in (b"Z", b"X"):
            return None
        return _read(f"/proc/{pid}/cmdline") or b"", int(fields[1])

    @staticmethod
    def kind_of(cmd: bytes) -> str:
        if b"ipykernel" in cmd:
            return "kernel"
        if b"nbjobs.runner" in cmd and b"--serve" in cmd:
            return "runner"
        if b"nbjobs.runner" in cmd:
            return "runner-once"
        if b"nbjobs\0worker" in cmd:
            return "worker"
        return "other"

    def processes(self) -> dict[int, tuple[str, int]]:
        """Live processes of this home: {pid: (kind, parent pid)}."""
        found = {}
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            got = self.ours(int(entry))
            if got is not None:
                found[int(entry)] = (self.kind_of(got[0]), got[1])
        return found

    def kill(self, pid: int, kind: str) -> bool:
        """SIGKILL ``pid`` if, right now, it is a live process of this home of that kind."""
        got = self.ours(pid)
        if got is None or self.kind_of(got[0]) != kind:
            return False
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

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

    def running_attempts(self) -> list[sqlite3.Row]:
        conn = self.db()
        try:
            return conn.execute("SELECT job_id, number, pid, kernel_pid FROM attempts WHERE outcome = 'running'").fetchall()
        finally:
            conn.close()


# --- chaos --------------------------------------------------------------------------------------------
class Chaos:
    def __init__(self, home: Home, rng: random.Random, kinds: list[str], t0: float, index: dict[str, int]):
        self.h, self.rng, self.kinds, self.t0, self.index = home, rng, kinds, t0, index
        self.kills: list[dict] = []
        self.misses = 0  # strikes that found no target of any allowed kind, or whose target vanished

    def _hit(self, rows) -> list[dict]:
        return [{"job": r["job_id"], "attempt": r["number"], "i": self.index.get(r["job_id"])} for r in rows]

    def strike(self) -> dict | None:
        procs = self.h.processes()
        running = self.h.running_attempts()
        busy = {r["kernel_pid"]: r for r in running if r["kernel_pid"]}
        kernels = [p for p, (k, _) in procs.items() if k == "kernel"]
        targets = {
            "worker": [p.pid for p in self.h.workers if p.poll() is None],
            "runner": [p for p, (k, _) in procs.items() if k == "runner"],
            "idle": [p for p in kernels if p not in busy],
            "midjob": [p for p in kernels if p in busy],
        }
        kinds = [k for k in self.kinds if targets[k]]
        if not kinds:
            self.misses += 1
            return None
        kind = self.rng.choices(kinds, weights=[KINDS[k] for k in kinds])[0]
        pid = self.rng.choice(targets[kind])
        rec = {"t": round(time.monotonic() - self.t0, 2), "kind": kind, "pid": pid, "hit": []}
        if kind == "worker":
            # the attempts this worker was running (attempts.pid is the claiming worker's pid)
            rec["hit"] = self._hit([r for r in running if r["pid"] == pid])
            if not self.h.kill(pid, "worker"):
                self.misses += 1
                return None
            proc = next(p for p in self.h.workers if p.pid == pid)
            proc.wait()
            self.h.workers.remove(proc)
            self.h.start_worker()
        elif kind == "runner":
            # the attempt it runs: the running attempt whose kernel is a child of this host
            children = {p for p, (k, ppid) in procs.items() if k == "kernel" and ppid == pid}
            rec["hit"] = self._hit([busy[p] for p in children if p in busy])
            if not rec["hit"]:  # no kernel recorded yet: the attempts of its worker not on a sibling host
                worker = procs[pid][1]
                elsewhere = {p for p, (k, ppid) in procs.items() if k == "kernel" and ppid != pid}
                rec["hit"] = [x | {"maybe": True} for x in self._hit(
                    [r for r in running if r["pid"] == worker and r["kernel_pid"] not in elsewhere])]
            if not self.h.kill(pid, "runner"):
                self.misses += 1
                return None
        else:
            # re-read the attempts right before the kill: the kernel may just have been taken
            conn = self.h.db()
            try:
                now = conn.execute("SELECT job_id, number FROM attempts WHERE outcome = 'running' AND kernel_pid = ?",
                                   (pid,)).fetchall()
            finally:
                conn.close()
            if kind == "idle" and now:
                rec["chosen_as"], kind = "idle", "midjob"
            elif kind == "midjob" and not now:
                rec["chosen_as"], kind = "midjob", "idle"
            rec["kind"], rec["hit"] = kind, self._hit(now)
            if not self.h.kill(pid, "kernel"):
                self.misses += 1
                return None
        self.kills.append(rec)
        return rec


# --- one phase ----------------------------------------------------------------------------------------
def submit_all(home: Path, n: int) -> tuple[list[str], dict[str, dict]]:
    import nbjobs

    evidence = home / "evidence"
    evidence.mkdir(parents=True, exist_ok=True)
    ids, mix = [], {}
    for i in range(n):
        m = job_mix(i, evidence)
        job = nbjobs.submit(m["code"], name=m["name"], retries=m["retries"], backoff=m["backoff"], home=home,
                            start_worker=False)
        ids.append(job.id)
        mix[job.id] = m | {"i": i}
    return ids, mix


def run_phase(home: Path, n: int, args, rng: random.Random, chaos: bool) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    ids, mix = submit_all(home, n)
    h = Home(home, args.workers, args.concurrency)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    ch = Chaos(h, rng, kinds, t0, {j: m["i"] for j, m in mix.items()})
    h.keep_workers()
    next_chaos = time.monotonic() + rng.uniform(0.5, 1.5) * args.chaos_every
    last_print = time.monotonic()
    chaos_deadline = t0 + args.max_minutes * 60
    drain_deadline = None
    tag = "chaos" if chaos else "calm"
    try:
        while True:
            counts = h.counts()
            if not any(counts.get(s, 0) for s in ACTIVE):
                break
            now = time.monotonic()
            if drain_deadline is None and now > chaos_deadline:
                drain_deadline = now + args.drain_seconds
                print(f"  [{tag}] --max-minutes reached: chaos stops, draining for {args.drain_seconds:g} s",
                      file=sys.stderr, flush=True)
            if drain_deadline is not None and now > drain_deadline:
                break
            h.keep_workers()
            if chaos and drain_deadline is None and now >= next_chaos:
                rec = ch.strike()
                if rec:
                    hit = ", ".join(f"{'maybe ' if x.get('maybe') else ''}job {x['i']} ({x['job'][:8]}) "
                                    f"attempt {x['attempt']}" for x in rec["hit"])
                    print(f"  [{tag} {rec['t']:6.1f} s] SIGKILL {rec['kind']} {rec['pid']}"
                          + (f" (chosen as {rec['chosen_as']})" if "chosen_as" in rec else "")
                          + (f": {hit}" if hit else ""), file=sys.stderr, flush=True)
                next_chaos = now + rng.uniform(0.5, 1.5) * args.chaos_every
            if now - last_print >= 15:
                last_print = now
                print(f"  [{tag} {now - t0:6.1f} s] " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
                      + (f"; {len(ch.kills)} kills" if chaos else ""), file=sys.stderr, flush=True)
            time.sleep(0.2)
        wall = time.monotonic() - t0
    finally:
        h.stop()
    time.sleep(1.5)  # an orphan gets a moment to notice (a runner polls its parent every 0.5 s)
    orphans = h.processes()
    for pid, (kind, _) in orphans.items():  # leave nothing behind (each checked again right before)
        h.kill(pid, kind)
    (home / "kills.json").write_text(json.dumps(ch.kills, indent=1))
    return {"home": home, "ids": ids, "mix": mix, "wall": wall, "drained_out": drain_deadline is not None,
            "h": h, "chaos": ch, "orphans": orphans}


# --- checks -------------------------------------------------------------------------------------------
def check(phase: dict) -> dict:
    """Classify every job (see the module docstring); everything read from SQLite and the evidence."""
    from nbjobs.outputs import load

    home, ids, mix, kills = phase["home"], phase["ids"], phase["mix"], phase["chaos"].kills
    conn = sqlite3.connect(home / "nbjobs.db", timeout=30)
    conn.row_factory = sqlite3.Row
    job_cols = {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}
    jobs = {r["id"]: r for r in conn.execute("SELECT * FROM jobs")}
    attempts: dict[str, list] = {}
    for a in conn.execute("SELECT * FROM attempts ORDER BY job_id, number"):
        attempts.setdefault(a["job_id"], []).append(a)
    succeeded_events = {r[0]: r[1] for r in conn.execute(
        "SELECT job_id, count(*) FROM events WHERE to_state = 'succeeded' GROUP BY job_id")}
    outputs: dict[str, list] = {}
    for o in conn.execute("SELECT * FROM outputs"):
        outputs.setdefault(o["job_id"], []).append(dict(o))
    conn.close()
    ev = {p.name for p in (home / "evidence").iterdir()}

    def evidence(jid: str, kernel_pid) -> str:
        i = mix[jid]["i"]
        if not kernel_pid:
            return "no kernel recorded"
        if f"{i}-{kernel_pid}.end" in ev:
            return "code ran to its end"
        if f"{i}-{kernel_pid}.start" in ev:
            return "code started, not finished"
        return "code never started"

    kernel_kills = [k for k in kills if k["kind"] in ("idle", "midjob")]
    midjob_hit = {(x["job"], x["attempt"]) for k in kills if k["kind"] == "midjob" for x in k["hit"]}
    killed_kernel_pids = {k["pid"] for k in kernel_kills}
    touched: dict[str, list] = {}  # job id -> kills that hit one of its running attempts
    for k in kills:
        for x in k["hit"]:
            touched.setdefault(x["job"], []).append(k)

    outcomes: dict[str, int] = {}
    states: dict[str, int] = {}
    classes: dict[str, list] = {"succeeded": [], "own": [], "killed": [], "spurious": [], "lost": []}
    duplicated: dict[str, str] = {}
    deliberate_succeeded, failed_outputs = [], 0
    killed_detail: dict[str, int] = {}
    killed_lines: list[str] = []
    for jid in ids:
        rows = attempts.get(jid, [])
        for a in rows:
            outcomes[a["outcome"]] = outcomes.get(a["outcome"], 0) + 1
        job = jobs.get(jid)
        if job is None:
            classes["lost"].append(jid)
            continue
        states[job["state"]] = states.get(job["state"], 0) + 1
        ok = [a for a in rows if a["outcome"] == "succeeded"]
        if len(ok) > 1:
            duplicated[jid] = f"{len(ok)} succeeded attempts"
        elif succeeded_events.get(jid, 0) > 1:
            duplicated[jid] = f"{succeeded_events[jid]} 'succeeded' events"
        outs = outputs.get(jid, [])
        if job["state"] == "succeeded":
            if not ok:
                duplicated[jid] = "succeeded without a succeeded attempt"
            elif [(o["name"], o["attempt"]) for o in outs] != [("i", ok[-1]["number"])]:
                duplicated[jid] = f"outputs {[(o['name'], o['attempt']) for o in outs]}, succeeded attempt {ok[-1]['number']}"
            else:
                try:
                    value = load(outs[0], home / "runs" / jid)
                except Exception as exc:  # noqa: BLE001 - reported, not raised
                    value = f"unreadable: {exc}"
                if value != mix[jid]["i"]:
                    duplicated[jid] = f"output i = {value!r}, expected {mix[jid]['i']}"
        elif outs:
            failed_outputs += 1  # partial outputs of a failed attempt: kept by design, only counted
        if job["state"] in ACTIVE:
            classes["lost"].append(jid)
        elif job["state"] == "succeeded":
            classes["succeeded"].append(jid)
            if mix[jid]["deliberate"]:
                deliberate_succeeded.append(jid)
        elif mix[jid]["deliberate"]:
            classes["own"].append(jid)
        else:
            hit = [a for a in rows if (jid, a["number"]) in midjob_hit
                   or (a["kernel_pid"] in killed_kernel_pids
                       and evidence(jid, a["kernel_pid"]) == "code started, not finished")]
            if hit:
                classes["killed"].append(jid)
                for a in hit:
                    e = evidence(jid, a["kernel_pid"])
                    killed_detail[e] = killed_detail.get(e, 0) + 1
                    msg = (a["error_message"] or "").replace("\n", " ")[:120]
                    killed_lines.append(f"  job {mix[jid]['i']} {jid[:8]} attempt {a['number']}: {a['outcome']} "
                                        f"{a['error_type'] or ''}: {msg} [kernel {a['kernel_pid']}: {e}]")
            else:
                classes["spurious"].append(jid)
    details = []
    for jid in classes["spurious"]:
        job = jobs[jid]
        infra = f", infra_failures {job['infra_failures']}" if "infra_failures" in job_cols else ""
        lines = [f"  job {mix[jid]['i']} {jid}: state {job['state']}, retries {job['retries']}{infra}"]
        for a in attempts.get(jid, []):
            msg = (a["error_message"] or "").replace("\n", " ")[:200]
            lines.append(f"    attempt {a['number']}: {a['outcome']}"
                         + (f" {a['error_type']}: {msg}" if a["error_type"] or msg else "")
                         + f" [kernel {a['kernel_pid']}: {evidence(jid, a['kernel_pid'])}]")
        for k in touched.get(jid, []):
            maybe = any(x.get("maybe") for x in k["hit"] if x["job"] == jid)
            lines.append(f"    soak killed {k['kind']} {k['pid']} at {k['t']} s" + (" (maybe its host)" if maybe else ""))
        details.append("\n".join(lines))
    infra_total = None
    if "infra_failures" in job_cols:
        infra_total = sum(jobs[j]["infra_failures"] or 0 for j in ids if j in jobs)
    unfinished = sum(1 for rows in attempts.values() for a in rows if a["outcome"] == "running")
    idle_taken = []  # idle kernel kills whose pid later shows up as a job's kernel
    by_kernel = {a["kernel_pid"]: a for rows in attempts.values() for a in rows if a["kernel_pid"]}
    for k in kills:
        if k["kind"] == "idle" and k["pid"] in by_kernel:
            a = by_kernel[k["pid"]]
            idle_taken.append(f"job {mix.get(a['job_id'], {}).get('i')} attempt {a['number']}: {a['outcome']}")
    return {"classes": classes, "states": states, "outcomes": outcomes, "duplicated": duplicated,
            "deliberate_succeeded": deliberate_succeeded, "failed_outputs": failed_outputs, "details": details,
            "killed_detail": killed_detail, "killed_lines": killed_lines, "infra_total": infra_total, "unfinished": unfinished,
            "idle_taken": idle_taken, "n_deliberate": sum(1 for j in ids if mix[j]["deliberate"]),
            "no_retry": sum(1 for j in ids if mix[j]["retries"] == 0 and not mix[j]["deliberate"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000, help="jobs in the chaos phase (default 2000)")
    ap.add_argument("--baseline-jobs", type=int, default=None,
                    help="jobs in the calm baseline phase (default: a tenth of --jobs, at least 20; 0 skips it)")
    ap.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ap.add_argument("--concurrency", type=int, default=2, help="jobs per worker at once (default 2)")
    ap.add_argument("--chaos-every", type=float, default=5.0,
                    help="the chaos loop strikes every 0.5 to 1.5 times this many seconds, at random (default 5)")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help=f"what the chaos loop may kill, comma-separated (default {','.join(KINDS)})")
    ap.add_argument("--seed", type=int, default=1, help="random seed of the chaos loop (default 1)")
    ap.add_argument("--max-minutes", type=float, default=60,
                    help="chaos stops after this many minutes even if jobs are still active (default 60)")
    ap.add_argument("--drain-seconds", type=float, default=60,
                    help="after chaos stopped, wait this long for active jobs; then they count as lost (default 60)")
    ap.add_argument("--home", help="folder for the run's homes (default: a new temporary folder)")
    args = ap.parse_args()
    bad = [k for k in args.kinds.split(",") if k.strip() and k.strip() not in KINDS]
    if bad:
        ap.error(f"unknown kind(s) {', '.join(bad)}; use some of {', '.join(KINDS)}")
    baseline_n = max(20, args.jobs // 10) if args.baseline_jobs is None else args.baseline_jobs
    root = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="nbjobs-soak-"))
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)
    rng = random.Random(args.seed)
    print(f"soak in {root}: {args.workers} workers x concurrency {args.concurrency}, lease {LEASE} s, "
          f"{os.cpu_count()} CPUs, kills: {args.kinds}", flush=True)

    calm = None
    if baseline_n:
        print(f"calm baseline: {baseline_n} jobs, no chaos ...", flush=True)
        calm = run_phase(root / "calm", baseline_n, args, rng, chaos=False)
        cc = check(calm)
        calm_rate = baseline_n / calm["wall"]
        print(f"  {baseline_n} jobs in {calm['wall']:.1f} s = {calm_rate:.2f} jobs/s; "
              + ", ".join(f"{k} {len(v)}" for k, v in cc["classes"].items())
              + f"; duplicated {len(cc['duplicated'])}", flush=True)
        for d in cc["details"]:
            print("  calm spurious:" + d[1:], flush=True)
    print(f"chaos: {args.jobs} jobs, a kill every {args.chaos_every / 2:g}-{args.chaos_every * 1.5:g} s ...",
          flush=True)
    phase = run_phase(root / "chaos", args.jobs, args, rng, chaos=True)
    c = check(phase)
    ch, h = phase["chaos"], phase["h"]
    n = args.jobs
    cl = c["classes"]
    n_spurious, n_lost, n_dup = len(cl["spurious"]), len(cl["lost"]), len(c["duplicated"])
    rate = n / phase["wall"]
    kills_by: dict[str, int] = {}
    for k in ch.kills:
        kills_by[k["kind"]] = kills_by.get(k["kind"], 0) + 1
    orphan_kinds: dict[str, int] = {}
    for kind, _ in phase["orphans"].values():
        orphan_kinds[kind] = orphan_kinds.get(kind, 0) + 1
    killed_detail = "; ".join(f"{v} {k}" for k, v in sorted(c["killed_detail"].items()))
    rows = [
        ("submitted", n),
        ("succeeded", len(cl["succeeded"])),
        ("failed by own code (deliberate)", f"{len(cl['own'])} of {c['n_deliberate']}"),
        ("killed by soak (kernel killed mid-job)", len(cl["killed"])),
        ("  their killed attempts", killed_detail or "-"),
        ("SPURIOUS (failed, code never raised)", f"{n_spurious} (of {c['no_retry']} jobs with retries=0)"),
        ("LOST (row missing / still active)", n_lost),
        ("DUPLICATED", n_dup),
        ("job states", ", ".join(f"{k} {v}" for k, v in sorted(c["states"].items()))),
        ("attempt outcomes", ", ".join(f"{k} {v}" for k, v in sorted(c["outcomes"].items(), key=lambda kv: -kv[1]))),
    ]
    if c["infra_total"] is not None:
        rows.append(("infra_failures (sum over jobs)", c["infra_total"]))
    rows += [
        ("attempts still 'running' at the end", c["unfinished"]),
        ("failed jobs that kept partial outputs", c["failed_outputs"]),
        ("kills", f"{len(ch.kills)}: " + ", ".join(f"{k} {v}" for k, v in sorted(kills_by.items()))
         + (f" ({ch.misses} strikes found no target)" if ch.misses else "")),
        ("idle-killed kernels later used by a job", "; ".join(c["idle_taken"]) or "0"),
        ("workers that exited on their own", h.worker_exits),
        ("processes of the home left after stop", f"{len(phase['orphans'])}"
         + (" (" + ", ".join(f"{k} {v}" for k, v in sorted(orphan_kinds.items())) + "; killed now)"
            if phase["orphans"] else "")),
        ("wall time", f"{phase['wall']:.1f} s" + (" (chaos stopped at --max-minutes)" if phase["drained_out"] else "")),
        ("throughput under chaos", f"{rate:.2f} jobs/s"),
    ]
    if calm:
        rows.append(("calm baseline (same run)", f"{calm_rate:.2f} jobs/s ({baseline_n} jobs)"))
        rows.append(("chaos / calm", f"{rate / calm_rate:.2f}x"))
    rows.append(("kill log", str(phase["home"] / "kills.json")))
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    if c["deliberate_succeeded"]:
        print(f"\nWRONG: {len(c['deliberate_succeeded'])} deliberate failure(s) succeeded: {c['deliberate_succeeded'][:5]}")
    if c["duplicated"]:
        print(f"\nduplicated jobs ({n_dup}):")
        for jid, why in c["duplicated"].items():
            print(f"  job {phase['mix'][jid]['i']} {jid}: {why}")
    if c["killed_lines"]:
        print(f"\nkilled by soak ({len(cl['killed'])} jobs; not spurious):")
        for line in c["killed_lines"]:
            print(line)
    if c["details"]:
        print(f"\nspurious jobs ({n_spurious}):")
        for d in c["details"]:
            print(d)
    if cl["lost"]:
        print(f"\nlost jobs ({n_lost}): " + ", ".join(f"{phase['mix'][j]['i']} {j[:8]}" for j in cl["lost"][:20]))
    good = not (n_spurious or n_lost or n_dup or c["deliberate_succeeded"])
    print(f"\nsoak {'OK' if good else 'FAILED'}: {n} submitted, {len(cl['succeeded'])} succeeded, "
          f"{len(cl['own'])} failed by own code, {len(cl['killed'])} killed by soak, spurious {n_spurious}, "
          f"lost {n_lost}, duplicated {n_dup}; {len(ch.kills)} kills; {phase['wall']:.0f} s, {rate:.2f} jobs/s"
          + (f" ({rate / calm_rate:.2f}x calm)" if calm else ""))
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
