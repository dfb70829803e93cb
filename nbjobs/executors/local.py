"""Attempts on this machine, in runner hosts: ``python -m nbjobs.runner --serve`` processes that
run one attempt at a time, one per concurrency slot, each with papermill imported once, a kernel
zygote (``mode="fork"``) and a warm pool of kernels of its own (see `nbjobs.kernelpool.KernelPool`).
Every attempt still runs in a kernel of its own, forked or started for it, never reused.

A host that dies (or is killed to end an attempt) is replaced by a new one at the next start.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from ..procs import Proc
from ..runner import WORKER_PID_ENV
from . import Executor, Handle, Report


class LocalHandle(Handle):
    def __init__(self, spec: dict[str, Any], host: "_Host"):
        super().__init__(spec)
        self.host = host
        self.kernel: Proc | None = None  # the attempt's kernel, as its host reported it


class _Host:
    """One runner host process and the pump thread that reads its events.

    Kills go through `Proc` (pid and start time), never a bare pid: the host itself is taken when
    it is started, its kernels as it reports them; each is signalled only while it is still the
    same process (see `nbjobs.procs`).  Kernels also end by themselves within a second when their
    host dies (ipykernel watches its parent)."""

    def __init__(self, executor: "LocalExecutor", pool: int):
        self.executor = executor
        cmd = [sys.executable, "-m", "nbjobs.runner", "--serve", "--pool", str(pool), "--workdir", executor.workdir,
               "--kernels", executor.mode, "--preload", ",".join(executor.preload)]
        for name in executor.kernels:
            cmd += ["--kernel", name]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
                                     env=dict(os.environ, **{WORKER_PID_ENV: str(os.getpid())}))
        self.ref = Proc.of(self.proc.pid)  # now: our child, not reaped yet
        self.handle: LocalHandle | None = None
        self.report: Report | None = None
        self.pool: list[Proc] = []
        self._send_lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True, name=f"nbjobs-host-{self.proc.pid}").start()

    def send(self, msg: dict) -> None:
        with self._send_lock:
            try:
                self.proc.stdin.write((json.dumps(msg) + "\n").encode())
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the host is gone: its pump reports the attempt's end

    def run(self, handle: LocalHandle, report: Report) -> None:
        self.handle, self.report = handle, report
        self.send({"op": "run", "spec": handle.spec})

    def _pump(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a stray line is not an event
            kind = event.get("type")
            if kind == "pool":
                self.pool = [p for p in map(Proc.load, event.get("procs") or []) if p is not None]
                continue
            handle, report = self.handle, self.report
            if handle is None or report is None:
                continue
            if kind == "kernel":
                handle.kernel_pid, handle.kernel = event.get("pid"), Proc.load(event.get("proc"))
            report(event)
            if kind == "done":  # the attempt is over; the host is free before the worker hears so
                self.handle = self.report = None
                self.executor._release(self)
                report({"type": "exit", "returncode": 0})
        returncode = self.proc.wait()
        self.executor._forget(self)
        for kernel in self.pool:  # a killed host cannot kill its own pool
            kernel.kill()
        handle, report = self.handle, self.report
        self.handle = self.report = None
        if handle is not None and report is not None:
            report({"type": "exit", "returncode": returncode})

    def close(self) -> None:
        with self._send_lock:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def kill(self) -> None:
        handle = self.handle
        for kernel in [handle.kernel if handle else None, *self.pool]:
            if kernel is not None:
                kernel.kill()
        if self.ref is not None:
            self.ref.kill()  # and its process group, which it leads (start_new_session)


#: kernels a forking runner host keeps forked ahead by default.  A forked kernel still takes 60-70 ms
#: to start after its fork; with one ahead, a slot running short jobs back to back waited for each
#: (12.4 jobs/s at one slot, 16.2 at two, 2 cores); with two, 18.6 and 18.1.  Each costs about 24 MB
#: (PSS) while it waits, and the pool retires it after 15 idle minutes.
FORKED_AHEAD = 2


class LocalExecutor(Executor):
    """``concurrency`` runner hosts, with ``pool`` kernels kept ahead in all (default: one per host,
    two per host forking them, `FORKED_AHEAD`; 0 = the cold path, every kernel started on demand)
    of the ``kernels`` names.  ``mode``: ``fork``
    (a kernel zygote per host forks the kernels it can, the pool serves the others), ``pool`` or
    ``cold`` (no pool); ``preload``: modules every job's kernel has imported before the job."""

    name = "local"

    def __init__(self, concurrency: int = 1, pool: int | None = None, kernels: list[str] | None = None,
                 workdir: str | os.PathLike | None = None, mode: str = "pool", preload: list[str] | None = None):
        self.concurrency = max(1, int(concurrency))
        self.mode = mode
        self.preload = list(preload or [])
        per_host = FORKED_AHEAD if mode == "fork" else 1
        self.pool = 0 if mode == "cold" else per_host * self.concurrency if pool is None else max(0, int(pool))
        self.kernels = list(kernels or ["python3"])
        self.workdir = str(workdir or Path.cwd())
        self._lock = threading.Lock()
        self._hosts: list[_Host] = []
        self._idle: list[_Host] = []

    def _pool_share(self, index: int) -> int:
        return self.pool // self.concurrency + (1 if index < self.pool % self.concurrency else 0)

    def begin(self) -> None:
        """Start the hosts (and so their warm kernels) before the first job arrives."""
        with self._lock:
            while len(self._hosts) < self.concurrency:
                host = _Host(self, self._pool_share(len(self._hosts)))
                self._hosts.append(host)
                self._idle.append(host)

    def _release(self, host: _Host) -> None:
        with self._lock:
            if host in self._hosts and host not in self._idle:
                self._idle.append(host)

    def _forget(self, host: _Host) -> None:
        with self._lock:
            if host in self._hosts:
                self._hosts.remove(host)
            if host in self._idle:
                self._idle.remove(host)

    def start(self, spec: dict[str, Any], report: Report) -> LocalHandle:
        with self._lock:
            host = self._idle.pop(0) if self._idle else None
            if host is None:
                host = _Host(self, self._pool_share(len(self._hosts)))
                self._hosts.append(host)
        handle = LocalHandle(spec, host)
        host.run(handle, report)
        return handle

    def stop(self, handle: LocalHandle) -> None:
        handle.host.send({"op": "stop", "job_id": handle.job_id, "attempt": handle.number,
                          "reason": "stop requested"})

    def kill(self, handle: LocalHandle) -> None:
        if handle.host.handle is handle:
            handle.host.kill()
        elif handle.kernel is not None:
            handle.kernel.kill()

    def renew(self, handle: LocalHandle, fence_at: float) -> None:
        """The worker renewed its lease on this attempt: its host may let it run until ``fence_at``."""
        handle.host.send({"op": "lease", "job_id": handle.job_id, "attempt": handle.number, "fence_at": fence_at})

    def resize(self, pool: int) -> None:
        """Change the number of warm kernels; hosts kill the ones no longer wanted at once."""
        with self._lock:
            self.pool = max(0, int(pool))
            hosts = list(self._hosts)
        for i, host in enumerate(hosts):
            host.send({"op": "pool", "size": self._pool_share(i)})

    def pool_pids(self) -> list[int]:
        with self._lock:
            return [kernel.pid for host in self._hosts for kernel in host.pool]

    def shutdown(self, timeout: float = 5.0, kill_running: bool = False) -> None:
        """End every host: each kills its pool and exits; what is left after ``timeout`` is killed.
        ``kill_running``: kill the hosts that run an attempt at once (a Dask worker going away)."""
        import time

        with self._lock:
            hosts = list(self._hosts)
        for host in hosts:
            if kill_running and host.handle is not None:
                host.kill()
            host.close()
        deadline = time.monotonic() + timeout
        for host in hosts:
            try:
                host.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                host.kill()
                host.proc.wait()
