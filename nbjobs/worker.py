"""The worker: claim -> execute -> record, with heartbeats, cancels, timeouts and a clean stop.

One thread owns the worker's SQLite connection and does every write; executors report from
their own threads through a queue.  When an attempt ends and its slot is free, the end and the
claim of the slot's next job are one transaction (`Store.finish_and_claim`).  A worker that is idle
sleeps in ``select`` until a submitter pokes it (`nbjobs.wake`) or an executor reports, and picks
new work up within a millisecond or two; a cheap ``PRAGMA data_version`` check every 0.25 s catches writes nobody poked about.

Stopping (SIGTERM, SIGINT/Ctrl-C, or `Worker.stop`): no new claims; running attempts get
``grace`` seconds to finish, then are interrupted and released back to the queue (the attempt
is recorded as ``released`` and does not count against retries).  A second signal skips the
grace.  A worker that dies without stopping loses its leases; any other worker reclaims them, and the
attempts it lost are re-queued as infrastructure failures (see `nbjobs.policy`), not charged to
the jobs.  A worker that is stopped or stuck past its lease is fenced twice over: its runner host
kills the attempt's kernel when the worker stops renewing (before the lease in SQLite expires),
and a worker that resumes kills at once every attempt whose job it no longer holds.

An explicit worker (``nbjobs worker``) registers before it connects to a scheduler or fills its
pool; a worker that a submit auto-started stands down (claims nothing) while an explicit worker is
alive for the home, so the user's choice of executor is never bypassed.  A worker whose kernels
keep failing to start (`KERNEL_LOST_LIMIT` in a row) stops claiming for a while and says why
(`nbjobs ls`, the panel's header and its log) instead of burning every queued job's budget.

Beside the hot path: every `SLOW_EVERY` seconds the loop flags, once per attempt, a running attempt
past its name's slow threshold (`policy.slow_threshold`, `Store.mark_slow`); and a job that asked for
a report (``--report html``) is handed, once it succeeded, to a `nbjobs.reports.Reporter` thread.

>>> Worker.__doc__ is not None
True
"""
from __future__ import annotations

import fcntl
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from . import config, policy, wake
from .executors import Executor, Handle, get_executor
from .job import JobRecord
from .errors import BadInput, StoreError
from .procs import workers_starting
from .store import Store, actor_name
from .store.schema import LOG_TAIL_BYTES

POLL = 0.25  # seconds between 'anything new?' checks of SQLite when no wake-up came (see `nbjobs.wake`)
TICK = 0.05  # longest wait while jobs run (cancel checks, deadlines, heartbeats)
RETENTION_EVERY = 600.0  # seconds between two applications of the retention setting
AUTOSTART_SETTLE = 0.5  # an auto-started worker claims nothing this long after it starts, so an explicit worker
                        # whose command started at the same moment is in /proc (its first job waits for a kernel anyway)
AUTOSTART_SCAN = 10.0  # ... and looks for explicit workers still starting (in /proc) this long, then on submits
KERNEL_LOST_LIMIT = 5  # kernels lost in a row before a worker stops claiming for a while
KERNEL_LOST_PAUSE = 30.0  # ... first for this long, doubling (to 10 minutes) while it goes on
SLOW_EVERY = 0.5  # seconds between two looks for running attempts past their slow threshold
SLOW_CACHE = 60.0  # seconds a name's slow threshold (from its recent successes) is reused



def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str | None:
    """The end of an attempt's log (at most ``limit`` bytes, from its first whole line), kept for
    `nbjobs.search`; None without a log.  The log is read where the worker runs: both executors
    write it there (the Dask executor's head copy), redacted as written."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - limit))
            data = f.read(limit)
    except OSError:
        return None
    if size > limit and b"\n" in data[:-1]:
        data = data[data.index(b"\n") + 1:]
    return data.decode(errors="replace") or None

class _Running:
    def __init__(self, handle: Handle, timeout: float | None, name: str = "", report: str | None = None):
        self.handle = handle
        self.name = name
        self.report = report                  # "html": render the output notebook once it succeeded
        self.slow_after: float | None = None  # seconds after which it is slow (0 or None: no threshold yet)
        self.slow = False                     # flagged (once per attempt)
        self.started = time.monotonic()
        self.timeout = timeout
        self.deadline = self.started + timeout if timeout else None
        self.stop_reason: str | None = None   # 'cancelled' | 'timeout' | 'release'
        self.stop_sent: float | None = None
        self.killed = False
        self.done: dict[str, Any] | None = None
        self.placing = False  # the executor holds it until a place with its resources is free

    def began(self) -> None:
        """The attempt started where it runs (a Dask worker may take it long after the claim): its
        timeout counts from now."""
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout if self.timeout else None


class Worker:
    """Runs jobs of one nbjobs home.  ``Worker(concurrency=2).run()`` blocks until stopped.

    >>> w = Worker(concurrency=2, idle_exit=0.1)  # doctest: +SKIP
    >>> w.run()                                    # doctest: +SKIP
    """

    def __init__(self, home: Path | str | None = None, *, concurrency: int | None = 1,
                 executor: str | Executor | None = "local", idle_exit: float | None = None,
                 grace: float = config.STOP_GRACE, lease: float = config.LEASE_SECONDS, autostarted: bool = False,
                 scheduler: str | None = None, pool: int | None = None, kernels: str | None = None,
                 preload: list[str] | None = None):
        self.home = Path(home) if home else config.home()
        self.idle_exit = idle_exit
        self.grace = grace
        self.lease = lease
        self.autostarted = autostarted
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.events: queue.Queue[tuple[_Running, dict]] = queue.Queue()
        self.running: dict[str, _Running] = {}
        self.attempts_started = 0  # claims handed to the executor (what `run` returns)
        self._stop_at: float | None = None
        self._lock_file = None
        self.store: Store | None = None
        self._events_r, self._events_w = os.pipe()  # a byte per event: lets the loop sleep in select
        os.set_blocking(self._events_r, False)
        os.set_blocking(self._events_w, False)
        self._wake = None
        self._poked = False
        self._ticker = None
        self._kernels_lost = 0           # kernel_lost outcomes in a row
        self._pause_until = 0.0          # no claims before this (monotonic): kernels keep failing to start
        self._pause = KERNEL_LOST_PAUSE
        self._explicit_seen = 0.0        # last check for an explicit worker (auto-started workers only)
        self._standing_down = False
        self._offered: list[dict[str, float]] | None = None  # the executor's offers, as last recorded
        self._born = time.monotonic()
        self._slow_thresholds: dict[str, tuple[float, float]] = {}  # name -> (looked up at, threshold or 0)
        self._reporter = None  # the thread that renders HTML reports (nbjobs.reports), started on first use
        if threading.current_thread() is threading.main_thread():  # before registering: a stop is heard at once
            signal.signal(signal.SIGTERM, self._signal)
            signal.signal(signal.SIGINT, self._signal)
        if not autostarted:  # before the executor connects to a scheduler or fills its pool
            self._register("starting", concurrency or 0,
                           getattr(executor, "name", executor) or os.environ.get("NBJOBS_EXECUTOR") or "local")
        try:
            if isinstance(executor, Executor):
                self.executor = executor
            else:
                name = executor or os.environ.get("NBJOBS_EXECUTOR") or "local"
                if pool is None and config.POOL_SIZE is not None:
                    pool = int(config.POOL_SIZE)
                from .forking import default_mode

                # decided now, once: fork where it applies (Linux, ipykernel), else the warm pool
                self.kernel_mode = kernels or config.KERNELS or default_mode()
                if self.kernel_mode == "fork" and default_mode() != "fork":
                    self.kernel_mode = "pool"
                self.preload = list(preload if preload is not None else [m for m in config.PRELOAD.split(",") if m])
                local = {"concurrency": max(1, int(concurrency or 1)), "pool": pool, "workdir": self.home,
                         "mode": self.kernel_mode, "preload": self.preload}
                # the Dask workers' runner hosts take the same kernel path (fork where it applies there)
                dask = {"mode": self.kernel_mode, "preload": self.preload, **({"pool": pool} if pool is not None else {})}
                self.executor = get_executor(name, scheduler=scheduler, **(local if name == "local" else dask))
        except BaseException:
            if self.store is not None:
                self.store.worker_stopped(self.id)
            raise
        # None: as many as the executor can run at once (a Dask cluster's threads), else 1
        self.concurrency = max(1, int(concurrency if concurrency else getattr(self.executor, "slots", 1)))

    # --- control --------------------------------------------------------------------------------
    def stop(self, grace: float | None = None) -> None:
        """Ask the worker to stop; safe from any thread or a signal handler."""
        deadline = time.monotonic() + (self.grace if grace is None else grace)
        self._stop_at = deadline if self._stop_at is None else min(self._stop_at, time.monotonic())

    def _signal(self, signum, frame) -> None:
        self.stop()

    def _take_autostart_lock(self) -> bool:
        """Only one auto-started worker per home: the loser of a start race exits at once."""
        path = self.home / "autostart.lock"
        self._lock_file = open(path, "a", opener=lambda p, f: os.open(p, f, 0o600))
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            return False
        return True

    def _register(self, state: str, concurrency: int, executor: str) -> None:
        if self.store is None:
            try:
                config.make_private_dir(self.home)
            except OSError as exc:  # e.g. NBJOBS_HOME under a regular file: a clear error, not a traceback
                raise StoreError(f"cannot create the nbjobs home {self.home} ({exc.strerror}); "
                                 "set NBJOBS_HOME to a folder you can write") from None
            self.store = Store(config.db_path(self.home))
        self.store.register_worker(self.id, concurrency=concurrency, executor=executor,
                                   autostarted=self.autostarted, state=state)

    def _slot_free(self, now: float) -> bool:
        """Whether this worker claims a job now: not stopping, a slot free, and `_may_claim`."""
        return self._stop_at is None and len(self.running) < self.concurrency and self._may_claim(now)

    def _may_claim(self, now: float) -> bool:
        """Whether this worker claims now: not while its kernels keep failing to start, and (for an
        auto-started worker) not while a worker started on purpose is alive for the home."""
        if self._pause_until:
            if now < self._pause_until:
                return False
            self._pause_until = 0.0  # the pause is over: try again (one more lost kernel pauses twice as long)
            self.store.set_worker_note(self.id, None)
        if self.autostarted:
            if now - self._born < AUTOSTART_SETTLE:
                return False
            # /proc is read only when it matters (a submit just poked us, or we have just started), not in
            # every idle check: an explicit worker shows in live_workers within a second of its start
            scan = self._poked or now - self._born < AUTOSTART_SCAN
            if scan or now - self._explicit_seen >= 0.5:
                self._explicit_seen = now
                explicit = [f"worker {w['id']}" for w in self.store.live_workers(self.lease) if not w["autostarted"]] \
                    or ([f"`nbjobs worker` (pid {pid}, starting)" for pid in workers_starting(self.home)] if scan else [])
                if bool(explicit) != self._standing_down:
                    self._standing_down = bool(explicit)
                    self.store.set_worker_note(self.id, f"standing down: {explicit[0]} was started on purpose for "
                                               "this home" if explicit else None)
            if self._standing_down:
                return False
        return True

    def _kernel_outcome(self, outcome: str | None) -> None:
        """Count kernels lost in a row; past `KERNEL_LOST_LIMIT`, stop claiming for a while and say why."""
        if outcome != "kernel_lost":
            self._kernels_lost, self._pause = 0, KERNEL_LOST_PAUSE
            return
        self._kernels_lost += 1
        if self._kernels_lost >= KERNEL_LOST_LIMIT:
            until = time.time() + self._pause
            note = (f"not claiming until {time.strftime('%H:%M:%S', time.localtime(until))}: {self._kernels_lost} "
                    "kernels in a row failed to start or died before their job's code ran (see `nbjobs show` of "
                    "a job re-queued with kernel_lost)")
            print(f"nbjobs worker {self.id}: {note}", file=sys.stderr, flush=True)
            self.store.set_worker_note(self.id, note)
            self._pause_until = time.monotonic() + self._pause
            self._pause = min(600.0, self._pause * 2)

    def _fence(self) -> None:
        """Renew our attempts' leases with their executors, and end at once every attempt whose job
        we no longer hold (we were stopped or stuck past the lease, and another worker took it)."""
        held = self.store.held(self.id)
        fence_at = time.time() + self.lease - self._fence_margin()
        for job_id, run in list(self.running.items()):
            if job_id in held:
                self.executor.renew(run.handle, fence_at)
            elif not run.killed:
                print(f"nbjobs worker {self.id}: job {job_id} was reclaimed after our lease expired; ending its "
                      "attempt here", file=sys.stderr, flush=True)
                run.killed = True
                self.executor.kill(run.handle)

    def _fence_margin(self) -> float:
        """How long before the lease in SQLite expires a runner host ends an attempt it heard no renewal for."""
        return min(5.0, self.lease / 5)

    # --- the loop -------------------------------------------------------------------------------
    def run(self) -> int:
        """Work until stopped (or idle for ``idle_exit`` seconds).  Returns the number of attempts run."""
        if self.autostarted:
            try:
                config.make_private_dir(self.home)
            except OSError as exc:  # e.g. NBJOBS_HOME under a regular file: a clear error, not a traceback
                raise StoreError(f"cannot create the nbjobs home {self.home} ({exc.strerror}); "
                                 "set NBJOBS_HOME to a folder you can write") from None
            if not self._take_autostart_lock():
                return 0
        self._register("running", self.concurrency, getattr(self.executor, "description", self.executor.name))
        store = self.store
        from .ticker import Ticker  # schedules, webhooks, dependency sweep: a thread of its own

        self._ticker = Ticker(self.home, self.id)
        self._ticker.start()
        actor = f"worker:{self.id}"
        self._wake = wake.listen(config.db_path(self.home))
        last_beat = last_reclaim = last_cancel_check = last_claim = last_checkpoint = last_slow = last_index = 0.0
        last_retention = -RETENTION_EVERY  # apply the retention setting at start, whatever the uptime
        last_version = -1
        idle_since = time.monotonic()
        beat_every = min(5.0, self.lease / 4)
        try:
            self.executor.begin()
            store.reclaim_expired(actor)
            while True:
                self._drain(timeout=TICK if self.running else POLL)
                now = time.monotonic()
                if self._stop_at is not None:
                    if not self.running:
                        break
                    if now >= self._stop_at:
                        for r in self.running.values():
                            self._request_stop(r, "release")
                elif self._slot_free(now):
                    version = store.data_version()
                    if self._poked or version != last_version or now - last_claim > 0.5:
                        last_version, last_claim = version, now
                        while len(self.running) < self.concurrency and self._stop_at is None:
                            if not self._claim_one():
                                break
                if (self._poked or now - last_cancel_check >= 0.2) and self.running:
                    last_cancel_check = now
                    for job_id in store.cancel_requests(self.id):
                        if job_id in self.running:
                            self._request_stop(self.running[job_id], "cancelled")
                self._poked = False
                self._enforce_deadlines(now)
                if self.running and now - last_slow >= SLOW_EVERY:
                    last_slow = now
                    self._check_slow(now)
                if now - last_beat >= beat_every:
                    last_beat = now
                    store.heartbeat(self.id, self.lease)
                    if self.running:
                        self._fence()
                if now - last_reclaim >= self.lease / 3:
                    last_reclaim = now
                    store.reclaim_expired(actor)
                if now - last_retention >= RETENTION_EVERY:
                    last_retention = now
                    self._apply_retention(actor)
                if self.running or self._ticker.busy:
                    idle_since = now
                elif now - idle_since > 1.0 and now - last_index > 2.0:
                    last_index = now
                    store.index_pending(limit=2000)  # searches then rarely wait (see Store.index_pending)
                    if now - last_checkpoint > 30.0:
                        last_checkpoint = now
                        store.checkpoint()
                if not self.running and self.idle_exit is not None and now - idle_since >= self.idle_exit:
                    break
        finally:
            self._shutdown()
        return self.attempts_started

    def _apply_retention(self, actor: str) -> int:
        """Prune finished jobs older than the home's retention setting (``nbjobs retention 30d``)."""
        setting = self.store.get_setting("retention")
        if not setting:
            return 0
        try:
            seconds = policy.parse_duration(setting, "retention")
        except BadInput as exc:  # set by hand to something odd: say so, keep everything
            print(f"nbjobs worker: retention setting ignored: {exc}", file=sys.stderr, flush=True)
            return 0
        ids = self.store.prunable(time.time() - seconds)
        if ids:
            config.remove_run_dirs(ids, self.home)  # files first, as in api.prune
            self.store.prune(ids, actor)
        return len(ids)

    def _offers(self) -> list[dict[str, float]]:
        """What the executor offers jobs that need resources; recorded for `nbjobs show` when it changes."""
        offers = self.executor.offers()
        if offers != self._offered:
            self._offered = offers
            self.store.set_worker_offers(self.id, offers)
        return offers

    def _claim_one(self) -> bool:
        claimed = self.store.claim(self.id, self.lease, offers=self._offers())
        if claimed is None:
            return False
        self._start(*claimed)
        return True

    def _start(self, rec: JobRecord, number: int) -> None:
        """Hand a job this worker just claimed (attempt ``number``) to the executor."""
        self.attempts_started += 1
        spec = {
            "fence_at": time.time() + self.lease - self._fence_margin(),  # see `_fence`
            "job_id": rec.id, "attempt": number, "kind": rec.kind, "notebook": rec.notebook,
            "source": rec.source, "parameters": rec.parameters, "kernel": rec.kernel, "cwd": rec.cwd,
            "run_dir": str(config.run_dir(rec.id, self.home)), "cell_timeout": rec.options.get("cell_timeout"),
            "options": rec.options,  # cell jobs: "inputs" (manifest) and "outputs" (names), see api.submit
            "resources": rec.resources,  # placement: the Dask executor passes them to Dask
        }
        box: list[_Running] = []
        ready = threading.Event()

        def report(event: dict, box=box) -> None:
            ready.wait()
            self.events.put((box[0], event))
            try:
                os.write(self._events_w, b"\0")
            except BlockingIOError:  # the pipe is full: the loop is awake already
                pass

        try:
            handle = self.executor.start(spec, report)
        except Exception as exc:  # the executor could not even start: record it, never lose the job
            self.store.finish_attempt(rec.id, number, self.id, "runner_died",
                                      error={"type": type(exc).__name__, "message": f"could not start: {exc}"})
            return
        run = _Running(handle, rec.timeout, rec.name, rec.options.get("report"))
        box.append(run)
        ready.set()
        self.running[rec.id] = run

    def _drain(self, timeout: float) -> None:
        """Wait up to ``timeout`` for an executor event or a poke, then handle every queued event."""
        try:
            run, event = self.events.get_nowait()
        except queue.Empty:
            waiting = [self._events_r] + ([self._wake] if self._wake is not None else [])
            ready, _, _ = select.select(waiting, [], [], timeout)
            if self._wake is not None and self._wake in ready:
                self._poked = wake.drain(self._wake) > 0 or self._poked
            if self._events_r in ready:
                try:
                    os.read(self._events_r, 65536)
                except BlockingIOError:
                    pass
            try:
                run, event = self.events.get_nowait()
            except queue.Empty:
                return
        while True:
            self._handle(run, event)
            try:
                run, event = self.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, run: _Running, event: dict) -> None:
        h, store, kind = run.handle, self.store, event.get("type")
        if kind == "started":
            run.began()
            if run.placing:
                run.placing = False
                store.set_placing(h.job_id, self.id, None)
            store.set_attempt_info(h.job_id, h.number, **event)
        elif kind == "placing":
            run.placing = True
            run.deadline = None  # its timeout starts when it starts (`_Running.began`), not while Dask holds it
            store.set_placing(h.job_id, self.id, "placing")
        elif kind == "kernel":
            path = event.get("path") or ("warm" if event.get("warm") else "cold")
            store.set_attempt_info(h.job_id, h.number, kernel_pid=event.get("pid"), kernel_path=path)
        elif kind == "began":
            store.set_began(h.job_id, h.number, self.id, time.time())  # our clock, as the claim's
        elif kind == "progress":
            store.set_progress(h.job_id, self.id, event["done"], event["total"])
        elif kind == "done":
            run.done = event
        elif kind == "exit":
            self.running.pop(h.job_id, None)
            self._finish(run, event.get("returncode"))
            self._poked = True  # a slot is free: claim now (our own commits leave data_version as it was)

    def _finish(self, run: _Running, returncode: int | None) -> None:
        h, done = run.handle, run.done or {}
        outcome = done.get("outcome")
        error = done.get("error")
        elapsed = time.monotonic() - run.started
        if outcome != "succeeded" and run.stop_reason == "release":
            self.store.release(h.job_id, h.number, self.id, "worker stopping")
            return
        if outcome != "succeeded" and run.stop_reason == "timeout":
            outcome = "timeout"
            error = {"type": "Timeout", "message": f"job exceeded its timeout of {run.timeout:g} s "
                     f"(stopped after {elapsed:.1f} s)", "traceback": (error or {}).get("traceback")}
        elif outcome != "succeeded" and run.stop_reason == "cancelled":
            outcome = "cancelled"
            error = {"type": "Cancelled", "message": f"cancelled while running (after {elapsed:.1f} s)",
                     "traceback": (error or {}).get("traceback")}
        elif outcome in (None, "interrupted"):
            outcome = "runner_died"
            error = error or {"type": "RunnerDied", "message": f"the job's runner process exited with code "
                              f"{returncode} before reporting an outcome"}
        self._kernel_outcome(outcome)
        tail = log_tail(config.run_dir(h.job_id, self.home) / str(h.number) / "log.txt")
        end = {"error": error, "outputs": done.get("outputs") or (), "output_path": done.get("output_path"),
               "log_tail": tail}
        claimed = None
        if self._slot_free(time.monotonic()):
            # the slot is free: end this attempt and claim the slot's next job in one transaction
            try:
                state, claimed = self.store.finish_and_claim(h.job_id, h.number, self.id, outcome,
                                                             lease=self.lease, offers=self._offers(), **end)
            except Exception:  # rolled back whole: the end is recorded alone (a failing claim fails in the loop)
                state = self.store.finish_attempt(h.job_id, h.number, self.id, outcome, **end)
        else:
            state = self.store.finish_attempt(h.job_id, h.number, self.id, outcome, **end)
        if state == "succeeded":  # its name's history grew: look its slow threshold up afresh
            self._slow_thresholds.pop(run.name, None)
        if state == "succeeded" and run.report and done.get("output_path"):
            self._render_later(h.job_id, h.number, done["output_path"], run.name)
        if claimed is not None:
            self._start(*claimed)

    # --- slow runs and reports (beside the hot path) ------------------------------------------------
    def _slow_threshold(self, name: str, now: float) -> float:
        """The seconds after which an attempt of ``name`` is slow (0: none, too little history),
        from its recent successes (`policy.slow_threshold`), looked up at most every `SLOW_CACHE` s
        (and again after an attempt of that name succeeded here)."""
        hit = self._slow_thresholds.get(name)
        if hit is None or now - hit[0] >= SLOW_CACHE:
            hit = (now, policy.slow_threshold(self.store.success_runtimes(name)) or 0.0)
            self._slow_thresholds[name] = hit
        return hit[1]

    def _check_slow(self, now: float) -> None:
        """Flag (once per attempt) every running attempt past its name's slow threshold."""
        for run in self.running.values():
            if run.slow or run.stop_reason is not None:
                continue
            if not run.slow_after:  # none yet (too little history): the cache makes asking again cheap
                run.slow_after = self._slow_threshold(run.name, now)
            if run.slow_after and now - run.started >= run.slow_after:
                run.slow = True
                self.store.mark_slow(run.handle.job_id, run.handle.number, self.id, run.slow_after)

    def _render_later(self, job_id: str, number: int, output_path: str, title: str) -> None:
        """Hand a succeeded attempt's output notebook to the report thread (`nbjobs.reports.Reporter`)."""
        from .reports import Reporter

        if self._reporter is None:
            self._reporter = Reporter(self.home)
            self._reporter.start()
        self._reporter.put(job_id, number, output_path, title)

    def _request_stop(self, run: _Running, reason: str) -> None:
        if run.stop_reason is None:
            run.stop_reason = reason
            run.stop_sent = time.monotonic()
            self.executor.stop(run.handle)

    def _enforce_deadlines(self, now: float) -> None:
        for run in list(self.running.values()):
            if run.deadline is not None and now >= run.deadline and run.stop_reason is None:
                self._request_stop(run, "timeout")
            if run.stop_sent is not None and not run.killed and now - run.stop_sent > 2 * config.KILL_GRACE + 2:
                run.killed = True
                self.executor.kill(run.handle)

    def _shutdown(self) -> None:
        """Leave nothing behind: stop and release what still runs, then deregister."""
        if self._stop_at is None:  # whatever ended the loop: an attempt that ends now claims nothing
            self._stop_at = time.monotonic()
        try:
            if self.running:
                for run in self.running.values():
                    self._request_stop(run, "release")
                deadline = time.monotonic() + 2 * config.KILL_GRACE + 3
                while self.running and time.monotonic() < deadline:
                    self._drain(timeout=0.05)
                for run in list(self.running.values()):
                    self.executor.kill(run.handle)
                    self.store.release(run.handle.job_id, run.handle.number, self.id, "worker stopped")
            self.executor.shutdown()
        finally:
            if self._reporter is not None:  # reports of attempts that just succeeded are rendered first
                self._reporter.stop()
            if self._ticker is not None:
                self._ticker.stop()
            if self.store is not None:
                self.store.worker_stopped(self.id)
            if self._lock_file is not None:
                self._lock_file.close()
            if self._wake is not None:
                self._wake.close()


def start_background(home: Path | str | None = None, idle_exit: float = config.AUTOSTART_IDLE_EXIT,
                     concurrency: int = config.AUTOSTART_CONCURRENCY) -> int:
    """Start a detached auto-worker for ``home`` (it exits after ``idle_exit`` idle seconds,
    ``$NBJOBS_IDLE_EXIT``, default 15 minutes) that runs ``concurrency`` jobs at once
    (``$NBJOBS_AUTOSTART_CONCURRENCY``, default the machine's cores).

    Returns its pid.  If another auto-worker holds the home's lock, the new one exits at once,
    so a start race never leaves two.
    """
    import subprocess
    import sys

    home = Path(home) if home else config.home()
    config.make_private_dir(home)
    env = dict(os.environ, NBJOBS_HOME=str(home))
    log = open(home / "worker.log", "ab", opener=lambda p, f: os.open(p, f, 0o600))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nbjobs", "worker", "--autostarted", "--idle-exit", str(idle_exit),
             "--concurrency", str(concurrency)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=str(home), start_new_session=True)
    finally:
        log.close()
    return proc.pid


__all__ = ["Worker", "start_background", "actor_name"]
