"""Kernels: which kernels exist (cheaply), and the warm pool of pre-started kernels handed to papermill.

`kernel_exists` answers from the kernelspec folders without importing jupyter_client, so a
submit can refuse an unknown kernel in well under a millisecond.

>>> kernel_exists("python3")
True
>>> kernel_exists("no-such-kernel")
False
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import threading
import time
from typing import Any, Callable

from .procs import Proc

_cache: dict[str, tuple[float, list[str]]] = {}


def kernel_dirs() -> list[str]:
    from jupyter_core.paths import jupyter_path  # light: jupyter_core only

    return jupyter_path("kernels")


def kernel_names(max_age: float = 5.0) -> list[str]:
    """Names of installed kernels (cached for ``max_age`` seconds)."""
    hit = _cache.get("names")
    if hit and time.monotonic() - hit[0] < max_age:
        return hit[1]
    names = set()
    for d in kernel_dirs():
        try:
            for entry in os.scandir(d):
                if os.path.isfile(os.path.join(entry.path, "kernel.json")):
                    names.add(entry.name.lower())
        except OSError:
            continue
    if "python3" not in names and importlib.util.find_spec("ipykernel") is not None:
        names.add("python3")  # ipykernel's built-in spec, as jupyter_client's KernelSpecManager does
    result = sorted(names)
    _cache["names"] = (time.monotonic(), result)
    return result


def kernel_exists(name: str) -> bool:
    return name.lower() in kernel_names()


_PLAIN_PYTHONS = frozenset({"python", "python3", "python%d.%d" % __import__("sys").version_info[:2]})


def kernel_for_python(executable: str | None = None) -> str:
    """The name of the kernelspec that runs ``executable`` (default: this Python), so a job runs
    in the caller's own environment; ``'python3'`` when none does.

    A spec whose ``argv[0]`` is this very interpreter path wins (paths are not resolved through
    symlinks: two virtual environments share one binary but not their packages); next one whose
    ``argv[0]`` is a bare ``python``/``python3`` (jupyter_client runs those with the launching
    interpreter, here the worker's, which is this Python when it was started from here);
    ``python3`` is preferred among equals.  Reads only the ``kernel.json`` files; cached per
    interpreter.

    >>> isinstance(kernel_for_python(), str)
    True
    """
    import json
    import sys

    exe = os.path.normpath(os.path.abspath(executable or sys.executable))
    hit = _cache.get("for:" + exe)
    if hit:
        return hit[1][0]
    best: tuple[int, int, str] | None = None
    for d in kernel_dirs():
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                with open(os.path.join(entry.path, "kernel.json")) as f:
                    argv = json.load(f).get("argv") or []
            except (OSError, ValueError, AttributeError):
                continue
            if not argv or not isinstance(argv[0], str):
                continue
            if os.path.sep in argv[0] and os.path.normpath(os.path.abspath(argv[0])) == exe:
                rank = 0
            elif argv[0] in _PLAIN_PYTHONS:
                rank = 1
            else:
                continue
            candidate = (rank, 0 if entry.name.lower() == "python3" else 1, entry.name.lower())
            best = candidate if best is None or candidate < best else best
    name = best[2] if best else "python3"
    _cache["for:" + exe] = (time.monotonic(), [name])
    return name


# --- the warm pool ---------------------------------------------------------------------------------
#: the IPython history of a job kernel lives in memory, as papermill/nbclient start it
KERNEL_ARGS = ["--HistoryManager.hist_file=:memory:"]
#: run (silently, without touching history or the execution count) in a warm kernel when a job takes
#: it, so that from inside the job it is the kernel a cold start in the job's folder would have given
PREPARE = """exec({code!r}, {{"get_ipython": get_ipython}})"""
_PREPARE_CODE = """\
import os, pathlib
os.chdir({cwd!r})
os.environ.update({env!r})
ip = get_ipython()
ip.starting_dir = os.getcwd()
ip.history_manager.dir_hist[:] = [pathlib.Path(os.getcwd())]
"""


def prepare_code(cwd: str, env: dict[str, str]) -> str:
    """The silent cell that moves a warm kernel into a job: its working directory (also as IPython's
    ``_dh`` and starting dir) and the job's own environment variables.  Runs in a throwaway
    namespace, so it leaves no names in the job's."""
    return PREPARE.format(code=_PREPARE_CODE.format(cwd=cwd, env=env))


class Kernel:
    """One kernel process for one job: started ahead of need (``warm``) or on demand.  Its raw
    stdout/stderr (what ipykernel does not forward to the notebook, e.g. a crash message) goes to
    ``sink`` once a job has taken it; its last `TAIL` lines are kept whoever listens (`tail`), so a
    kernel that dies explains itself in the attempt's error."""

    TAIL = 20

    def __init__(self, km: Any, name: str, warm: bool):
        from collections import deque

        self.km, self.name, self.warm = km, name, warm
        self.pid: int | None = getattr(km.provisioner, "pid", None)
        self.proc: Proc | None = Proc.of(self.pid)  # taken now: our child, not reaped yet
        self.born = time.monotonic()
        self.sink: Callable[[str], Any] | None = None
        self._tail: deque[str] = deque(maxlen=self.TAIL)
        self._pump = threading.Thread(target=self._read, daemon=True, name=f"nbjobs-kernel-{self.pid}")
        self._pump.start()

    def _read(self) -> None:
        stream = getattr(getattr(self.km.provisioner, "process", None), "stdout", None)
        if stream is None:
            return
        with stream:
            for line in stream:
                text = line.decode(errors="replace")
                self._tail.append(text)
                sink = self.sink
                if sink is not None:
                    sink(text)

    def tail(self, wait: float = 0.0) -> str:
        """The last lines the kernel printed (after up to ``wait`` seconds for its pipe to close,
        so the last words of a kernel that just died are in)."""
        if wait:
            self._pump.join(wait)
        return "".join(self._tail)

    def alive(self) -> bool:
        process = getattr(self.km.provisioner, "process", None)
        return process is not None and process.poll() is None

    def rss(self) -> int:
        """Resident memory in bytes (0 if unknown)."""
        try:
            with open(f"/proc/{self.pid}/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def kill(self) -> None:
        """End the kernel and its process group now (one job only: it is never reused).  A kill,
        not jupyter_client's ``shutdown_kernel``, which polls for the exit every 0.1 s."""
        self.sink = None
        if self.proc is not None:
            self.proc.kill()
        process = getattr(self.km.provisioner, "process", None)
        if process is not None:
            process.wait()
        self.km.cleanup_resources()  # the connection file and the ipc sockets
        self._pump.join(1)


_sockets: list[str] = []  # this process's private folder of kernel sockets, made on first use
_sockets_lock = threading.Lock()
_kernel_numbers = itertools.count(1)


def _socket_prefix() -> str:
    """A path prefix for one kernel's ipc sockets (jupyter_client appends ``-1`` ... ``-5``), in a
    folder private to this process, ``$TMPDIR/nbjobs-k<pid>.<start time>`` (short: a Unix socket's
    path has at most 107 bytes).  Folders left by processes that were killed are removed then."""
    with _sockets_lock:
        if not _sockets:
            import atexit
            import shutil
            import tempfile

            base, me = tempfile.gettempdir(), Proc.of(os.getpid())
            for entry in os.scandir(base):
                owner = entry.name[len("nbjobs-k"):].split(".") if entry.name.startswith("nbjobs-k") else []
                if len(owner) != 2 or not all(p.isdigit() for p in owner) or Proc(int(owner[0]), int(owner[1])).alive():
                    continue
                try:  # another process may be sweeping the same leftovers right now
                    if entry.stat(follow_symlinks=False).st_uid == os.getuid():
                        shutil.rmtree(entry.path)
                except OSError:
                    continue
            path = os.path.join(base, f"nbjobs-k{me.pid}.{me.start}")
            os.makedirs(path, mode=0o700, exist_ok=True)
            _sockets.append(path)
            atexit.register(shutil.rmtree, path, True)
        return os.path.join(_sockets[0], str(next(_kernel_numbers)))


def start_kernel(name: str, cwd: str, env: dict[str, str] | None = None, warm: bool = False) -> Kernel:
    """Start a kernel called ``name`` in ``cwd`` (jupyter_client's KernelManager, asynchronous
    client class so nbclient can drive it); returns at once, before it is ready.

    It listens on Unix sockets (ZeroMQ's ``ipc`` transport), not TCP ports: jupyter_client picks
    free ports per process, so two runner hosts could hand out the same port and the second kernel
    to bind it died at start ("Address already in use"), about one job in 600 at concurrency 2."""
    import subprocess

    from jupyter_client import KernelManager

    km = KernelManager(kernel_name=name, client_class="jupyter_client.asynchronous.AsyncKernelClient",
                       transport="ipc", ip=_socket_prefix())
    km.start_kernel(extra_arguments=list(KERNEL_ARGS), cwd=cwd, env=dict(env if env is not None else os.environ),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Kernel(km, name, warm)


class KernelPool:
    """Kernels started ahead of need, ``size`` per kernel name, each handed to exactly one job.

    `take` gives a warm kernel of that name if one is there (and starts its replacement in the
    background), or starts one on demand (the cold path: a kernel name the pool does not hold, or
    ``size=0``).  Names asked for on demand join the pool (at most ``max_names``).  Warm kernels idle
    for ``idle_retire`` seconds are retired; no new warm kernel starts while the pool's kernels
    use more than ``max_memory`` bytes.  `shutdown` (and `resize` down) kill what is no longer wanted.

    >>> pool = KernelPool(["python3"], size=1, workdir="/tmp")   # doctest: +SKIP
    >>> kernel = pool.take("python3", cwd="/data")                # doctest: +SKIP
    """

    def __init__(self, names: list[str], size: int = 1, *, workdir: str, idle_retire: float = 900.0,
                 max_memory: int = 2 << 30, max_names: int = 4, on_change: Callable[[list[Proc]], Any] | None = None):
        self.names = list(dict.fromkeys(names))
        self.size = max(0, int(size))
        self.workdir = workdir
        self.idle_retire = idle_retire
        self.max_memory = max_memory
        self.max_names = max_names
        self.on_change = on_change  # told the processes of the pool's idle kernels whenever they change
        self.idle: dict[str, list[Kernel]] = {}
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._keep, daemon=True, name="nbjobs-kernel-pool")
        self._thread.start()

    # --- used by the runner ---------------------------------------------------------------------
    def take(self, name: str, cwd: str, env: dict[str, str] | None = None) -> Kernel:
        """A kernel for one job: a warm one (``kernel.warm``; the caller moves it into ``cwd``
        and the job's environment with `prepare_code`), or, with none of that name ready, one
        started now in ``cwd`` with ``env``."""
        with self._cond:
            kernels = self.idle.get(name) or []
            dead = [k for k in kernels if not k.alive()]  # killed or crashed while waiting
            kernels[:] = [k for k in kernels if k not in dead]
            kernel = kernels.pop(0) if kernels else None
            if name not in self.names and len(self.names) < self.max_names:
                self.names.append(name)
            self._cond.notify_all()
        for k in dead:
            k.kill()
        if kernel is not None:
            self._changed()
            return kernel
        return start_kernel(name, cwd, env)

    def procs(self) -> list[Proc]:
        """The idle kernels' processes."""
        with self._cond:
            return [k.proc for ks in self.idle.values() for k in ks if k.proc is not None]

    def resize(self, size: int) -> None:
        with self._cond:
            self.size = max(0, int(size))
            extra = [k for ks in self.idle.values() for k in ks[self.size:]]
            for ks in self.idle.values():
                del ks[self.size:]
            self._cond.notify_all()
        for k in extra:
            k.kill()
        self._changed()

    def shutdown(self) -> None:
        with self._cond:
            self._closed = True
            kernels = [k for ks in self.idle.values() for k in ks]
            self.idle.clear()
            self._cond.notify_all()
        for k in kernels:
            k.kill()
        self._thread.join(5)

    def kill_now(self) -> None:
        """From a dying process (no locks, no waiting): SIGKILL every idle kernel."""
        for ks in list(self.idle.values()):
            for k in list(ks):
                if k.proc is not None:
                    k.proc.kill()

    # --- the keeper thread ----------------------------------------------------------------------
    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.procs())

    def _memory(self) -> int:
        return sum(k.rss() for ks in self.idle.values() for k in ks)

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
                    start = next((n for n in self.names if len(self.idle.get(n, [])) < self.size), None)
                if start is None and not retire:
                    self._cond.wait(min(30.0, self.idle_retire))
                    continue
            for k in retire:
                k.kill()
            if start is not None:
                try:
                    kernel = start_kernel(start, self.workdir, warm=True)
                except Exception as exc:  # noqa: BLE001 - e.g. a kernelspec removed: stop warming it
                    print(f"nbjobs: cannot keep a warm {start!r} kernel ({exc}); jobs start it on demand",
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
            self._changed()
