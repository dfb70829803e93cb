"""The kernel pool of a runner host: kernels started (or forked) ahead of need, one job each."""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable

from .forking import Zygote, ZygoteError
from .kernels import Kernel, start_kernel
from .procs import Proc


#: seconds a kernel forked ahead waits for the job running beside it to end (`KernelPool._defer`)
FORK_DEFER = 0.25


class KernelPool:
    """Kernels started ahead of need, ``size`` per kernel name, each handed to exactly one job: for
    the kernel names the ``zygote`` forks (`Zygote.forks`), children forked from it; for the others,
    warm kernel processes.

    `take` gives the kernel `prime` connected, if it is of the job's kernel name; else one kept
    ahead (its replacement starts in the background); else, with none ready, one forked or started
    on demand (the cold path: a kernel name the pool does not hold, or ``size=0``).  A kernel kept
    ahead (``kernel.ahead``) was started in the pool's folder and environment: the job moves it
    into its own with `nbjobs.kernels.prepare_code`.  A forked one is handed out only while its
    zygote is the current one in an unchanged environment (`Zygote.fresh`).  ``preload``: modules
    every job's kernel has imported before the job (the zygote's, or imported by the prepare cell on
    the other paths: `nbjobs.kernels.preload_code`).  Names asked for on demand join the pool (at
    most ``max_names``).  Kernels idle for ``idle_retire`` seconds are retired; no new one starts
    while the pool's kernels use more than ``max_memory`` bytes.  `shutdown` (and `resize` down)
    kill what is no longer wanted.

    >>> pool = KernelPool(["python3"], size=1, workdir="/tmp")   # doctest: +SKIP
    >>> kernel = pool.take("python3", cwd="/data")                # doctest: +SKIP
    """

    def __init__(self, names: list[str], size: int = 1, *, workdir: str, idle_retire: float = 900.0,
                 max_memory: int = 2 << 30, max_names: int = 4, on_change: Callable[[list[Proc]], Any] | None = None,
                 zygote: Zygote | None = None, preload: list[str] | tuple[str, ...] = (),
                 on_prime: Callable[[], Any] | None = None):
        self.zygote = zygote
        self.on_prime = on_prime  # told when `prime` has work: a kernel joined the pool, or the pool shrank to 0
        self.preload = list(preload)
        self.names = list(dict.fromkeys(names))
        self.size = max(0, int(size))
        self.workdir = workdir
        self.idle_retire = idle_retire
        self.max_memory = max_memory
        self.max_names = max_names
        self.on_change = on_change  # told the processes of the pool's idle kernels whenever they change
        self.idle: dict[str, list[Kernel]] = {}
        self.primed: Kernel | None = None  # taken from `idle` and connected by `prime` (the host's main thread)
        self.busy_since: float | None = None  # when the job running now took its kernel (`take`, `ended`)
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._keep, daemon=True, name="nbjobs-kernel-pool")
        self._thread.start()

    # --- used by the runner ---------------------------------------------------------------------
    def take(self, name: str, cwd: str, env: dict[str, str] | None = None) -> Kernel:
        """A kernel for one job: the primed one, or one kept ahead (``kernel.ahead``: the caller moves
        it into ``cwd`` and the job's environment with `prepare_code`); or, with none of that name
        ready, one forked by the zygote, or started, now in ``cwd`` with ``env``.  A zygote that
        cannot fork (it died just now) is said on stderr, and the job's kernel starts cold."""
        with self._cond:
            kernel = self.primed if self.primed is not None and self.primed.name == name else None
            if kernel is not None:
                self.primed = None
            dead: list[Kernel] = []
            if kernel is not None and not self._usable(kernel):
                dead.append(kernel)
                kernel = None
            kernels = self.idle.get(name) or []
            while kernel is None and kernels:
                candidate = kernels.pop(0)
                if self._usable(candidate):
                    kernel = candidate
                else:
                    dead.append(candidate)  # killed or crashed while waiting, or forked by a replaced zygote
            if name not in self.names and len(self.names) < self.max_names:
                self.names.append(name)
            self.busy_since = time.monotonic()
            self._cond.notify_all()
        for k in dead:
            k.kill()
        if kernel is not None:
            self._changed()
            return kernel
        if self.zygote is not None and self.zygote.forks(name):
            try:
                return start_kernel(name, cwd, env, zygote=self.zygote)
            except ZygoteError as exc:
                print(f"nbjobs: {exc}; this job's kernel starts cold", file=sys.stderr, flush=True)
        return start_kernel(name, cwd, env)

    def ended(self) -> None:
        """The job that took a kernel has reported its outcome: the pool may fork its replacement now
        (see `FORK_DEFER`)."""
        with self._cond:
            self.busy_since = None
            self._cond.notify_all()

    def prime(self, connect: Callable[[Kernel], Any]) -> None:
        """From the runner host's main thread, between jobs: make sure the kernel the next job of
        the pool's first name takes is connected (``connect(kernel)``: a client on it, ready), so that
        job does not wait for the connection; drop a primed kernel that died, was retired or came
        from a replaced zygote.  Returns at once when there is nothing to do."""
        with self._cond:
            drop = self.primed if self.primed is not None and (
                self.size == 0 or self._closed or not self._usable(self.primed)
                or time.monotonic() - self.primed.born > self.idle_retire) else None
            if drop is not None:
                self.primed = None
            kernel = None
            if self.primed is None and self.size and not self._closed and self.names:
                kernels = self.idle.get(self.names[0]) or []
                kernel = next((k for k in kernels if k.alive()), None)
                if kernel is not None:
                    kernels.remove(kernel)
                    self.primed = kernel  # counted as the pool's while it connects
            self._cond.notify_all()
        if drop is not None:
            drop.kill()
        if kernel is None:
            if drop is not None:
                self._changed()
            return
        try:
            connect(kernel)
        except Exception as exc:  # noqa: BLE001 - it died or never answered: the pool starts another
            print(f"nbjobs: a kernel kept ahead did not answer ({exc}); another one starts",
                  file=sys.stderr, flush=True)
            with self._cond:
                if self.primed is kernel:
                    self.primed = None
                self._cond.notify_all()
            kernel.kill()
        self._changed()

    def _usable(self, kernel: Kernel) -> bool:
        """Alive, and (if forked) forked by the current zygote in an unchanged environment."""
        if not kernel.alive():
            return False
        return kernel.path != "forked" or self.zygote is None or self.zygote.fresh(kernel.generation)

    def procs(self) -> list[Proc]:
        """The processes of the kernels kept ahead (the primed one included)."""
        with self._cond:
            return [k.proc for k in self._kept() if k.proc is not None]

    def _kept(self) -> list[Kernel]:
        return [*(k for ks in self.idle.values() for k in ks), *([self.primed] if self.primed else [])]

    def resize(self, size: int) -> None:
        """Keep ``size`` kernels per name ahead (the primed one counts); kill the others (the primed
        one, if the size is 0, from the host's main thread: `prime`)."""
        with self._cond:
            self.size = max(0, int(size))
            primed = self.primed.name if self.primed is not None else None
            extra: list[Kernel] = []
            for name, ks in self.idle.items():
                keep = max(0, self.size - (name == primed))
                extra += ks[keep:]
                del ks[keep:]
            self._cond.notify_all()
        for k in extra:
            k.kill()
        if primed is not None and self.size == 0 and self.on_prime is not None:
            self.on_prime()
        self._changed()

    def shutdown(self) -> None:
        if self.zygote is not None:
            self.zygote.shutdown()
        with self._cond:
            self._closed = True
            kernels = self._kept()
            self.idle.clear()
            self.primed = None
            self._cond.notify_all()
        for k in kernels:
            k.kill()
        self._thread.join(5)

    def kill_now(self) -> None:
        """From a dying process (no locks, no waiting): SIGKILL every kernel kept ahead and the zygote."""
        if self.zygote is not None:
            self.zygote.kill_now()
        for k in [*(k for ks in list(self.idle.values()) for k in list(ks)), self.primed]:
            if k is not None and k.proc is not None:
                k.proc.kill()

    # --- the keeper thread ----------------------------------------------------------------------
    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.procs())

    def _defer(self, name: str | None, now: float) -> float:
        """How long to wait before forking a kernel of ``name`` ahead: while a job is running, up to
        `FORK_DEFER` seconds from its start.  A forked kernel's start takes 60-70 ms of a core; on a
        small machine, taken from the job running beside it, it slowed a 20 ms job by a third.  A
        warm kernel's start (a second or more) is not deferred: the next job would wait for it."""
        if name is None or self.busy_since is None or self.zygote is None or not self.zygote.forks(name):
            return 0.0
        return max(0.0, self.busy_since + FORK_DEFER - now)

    def _memory(self) -> int:
        return sum(k.rss() for k in self._kept())

    def _keep(self) -> None:
        while True:
            start: str | None = None
            retire: list[Kernel] = []
            with self._cond:
                if self._closed:
                    return
                now = time.monotonic()
                for ks in self.idle.values():
                    retire += [k for k in ks if now - k.born > self.idle_retire]
                    ks[:] = [k for k in ks if k not in retire]
                if retire:  # a retired name stays cold until a job asks for it again
                    gone = {k.name for k in retire}
                    self.names = [n for n in self.names if n not in gone or self.idle.get(n)]
                elif self._memory() < self.max_memory:
                    primed = self.primed.name if self.primed is not None else None
                    start = next((n for n in self.names
                                  if len(self.idle.get(n, [])) + (n == primed) < self.size), None)
                if start is None and not retire:
                    self._cond.wait(min(30.0, self.idle_retire))
                    continue
                defer = self._defer(start, now)
                if defer and not retire:
                    self._cond.wait(defer)
                    continue
            for k in retire:
                k.kill()
            if start is not None:
                forks = self.zygote is not None and self.zygote.forks(start)
                try:
                    kernel = start_kernel(start, self.workdir, ahead=True, zygote=self.zygote if forks else None)
                except ZygoteError as exc:  # it died, or is being replaced: its keeper starts another
                    print(f"nbjobs: {exc}; the pool forks again once the zygote is up", file=sys.stderr, flush=True)
                    self.zygote.ready(30.0)
                    time.sleep(0.5)
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a kernelspec removed: stop warming it
                    print(f"nbjobs: cannot keep a {start!r} kernel ahead ({exc}); jobs start it on demand",
                          file=sys.stderr, flush=True)
                    with self._cond:
                        self.names = [n for n in self.names if n != start]
                    continue
                with self._cond:
                    if self._closed or start not in self.names:
                        kernel_to_kill: Kernel | None = kernel
                    else:
                        self.idle.setdefault(start, []).append(kernel)
                        kernel_to_kill = None
                if kernel_to_kill is not None:
                    kernel_to_kill.kill()
                elif self.on_prime is not None:
                    self.on_prime()
            self._changed()
