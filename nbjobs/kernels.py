"""Kernels: which kernels exist (cheaply), and how a job gets a fresh one for papermill: forked by a
`Zygote` (the process in `nbjobs.zygote`), warm from the `KernelPool` of pre-started kernels, or
started cold (`start_kernel`).  Each `Kernel` records its ``path``: ``forked``, ``warm`` or ``cold``.

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


def prepare_code(cwd: str, env: dict[str, str], preload: list[str] | tuple[str, ...] = ()) -> str:
    """The silent cell that moves a warm kernel into a job: its working directory (also as IPython's
    ``_dh`` and starting dir) and the job's own environment variables, then the ``preload`` modules
    imported.  Runs in a throwaway namespace, so it leaves no names in the job's."""
    return PREPARE.format(code=_PREPARE_CODE.format(cwd=cwd, env=env) + _preload_lines(preload))


def preload_code(preload: list[str] | tuple[str, ...]) -> str | None:
    """The silent cell that imports the ``preload`` modules in a kernel that did not come from the
    zygote (so every path gives the job the same ``sys.modules``); None without preloads."""
    return PREPARE.format(code=_preload_lines(preload)) if preload else None


def _preload_lines(preload: list[str] | tuple[str, ...]) -> str:
    return "".join(f"__import__({name!r})\n" for name in preload)


#: the paths a job's kernel can take: forked from the zygote, warm from the pool, started cold
PATHS = ("forked", "warm", "cold")
#: how a worker gets its kernels (``nbjobs worker --kernels``): fork where it applies (else the pool),
#: the warm pool, or every kernel started with its job
MODES = ("fork", "pool", "cold")


class Kernel:
    """One kernel process for one job: forked from the zygote, started ahead of need (warm) or on
    demand (cold): ``path``.  Its raw stdout/stderr (what ipykernel does not forward to the
    notebook, e.g. a crash message) goes to ``sink`` once a job has taken it; its last `TAIL` lines
    are kept whoever listens (`tail`), so a kernel that dies explains itself in the attempt's error."""

    TAIL = 20

    def __init__(self, km: Any, name: str, path: str):
        from collections import deque

        self.km, self.name, self.path = km, name, path
        self.pid: int | None = getattr(km.provisioner, "pid", None)
        self.proc: Proc | None = Proc.of(self.pid)  # taken now: our child, not reaped yet
        self.born = time.monotonic()
        self.sink: Callable[[str], Any] | None = None
        self._tail: deque[str] = deque(maxlen=self.TAIL)
        self._pump = threading.Thread(target=self._read, daemon=True, name=f"nbjobs-kernel-{self.pid}")
        self._pump.start()

    @property
    def warm(self) -> bool:
        """Started ahead of need: the job must move it into its folder and environment (`prepare_code`)."""
        return self.path == "warm"

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


def start_kernel(name: str, cwd: str, env: dict[str, str] | None = None, warm: bool = False,
                 zygote: "Zygote | None" = None) -> Kernel:
    """Start a kernel called ``name`` in ``cwd`` (jupyter_client's KernelManager, asynchronous
    client class so nbclient can drive it); returns at once, before it is ready.  With ``zygote``
    (and a kernelspec it can fork: `Zygote.forks`), the kernel is forked from it (``path``
    ``forked``); else a new process (``warm`` if started ahead of need, else ``cold``).

    It listens on Unix sockets (ZeroMQ's ``ipc`` transport), not TCP ports: jupyter_client picks
    free ports per process, so two runner hosts could hand out the same port and the second kernel
    to bind it died at start ("Address already in use"), about one job in 600 at concurrency 2."""
    import subprocess

    cls = _forked_manager_class() if zygote is not None else None
    if cls is None:
        from jupyter_client import KernelManager as cls  # noqa: N813
    km = cls(kernel_name=name, client_class="jupyter_client.asynchronous.AsyncKernelClient",
             transport="ipc", ip=_socket_prefix())
    km.nbjobs_zygote = zygote
    km.nbjobs_path = "warm" if warm else "cold"
    km.start_kernel(extra_arguments=list(KERNEL_ARGS), cwd=cwd, env=dict(env if env is not None else os.environ),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Kernel(km, name, km.nbjobs_path)


_forked_manager: list[type] = []


def _forked_manager_class() -> type:
    """jupyter_client's KernelManager, launching through a `Zygote` (defined on first use: jupyter_client
    is imported only when a kernel starts).  Everything but the launch is jupyter_client's own: the
    connection file, the ipc socket paths, the kernel's environment and command."""
    if _forked_manager:
        return _forked_manager[0]
    from jupyter_client import KernelManager
    from jupyter_client.utils import run_sync

    class ForkedKernelManager(KernelManager):
        nbjobs_zygote: "Zygote | None" = None
        nbjobs_path = "cold"

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            zygote = self.nbjobs_zygote
            if zygote is None or not zygote.forks_command(kernel_cmd):
                return await super()._async_launch_kernel(kernel_cmd, **kw)
            process = zygote.fork(kernel_cmd, kw.get("env") or dict(os.environ), str(kw.get("cwd") or os.getcwd()))
            provisioner = self.provisioner
            provisioner.process, provisioner.pid, provisioner.pgid = process, process.pid, None
            provisioner.cwd = kw.get("cwd")
            self.nbjobs_path = "forked"
            self._reconcile_connection_info(provisioner.connection_info)

        _launch_kernel = run_sync(_async_launch_kernel)

    _forked_manager.append(ForkedKernelManager)
    return ForkedKernelManager


# --- the zygote ------------------------------------------------------------------------------------
def fork_supported() -> bool:
    """Whether kernels can be forked here: Linux (fork, ``/proc``, SCM_RIGHTS) with ipykernel installed."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and importlib.util.find_spec("ipykernel") is not None


def default_mode() -> str:
    """``fork`` where it applies (`fork_supported`), else ``pool``."""
    return "fork" if fork_supported() else "pool"


class ZygoteError(RuntimeError):
    """The zygote could not fork a kernel (it died, or it could not start); the job falls back."""


class _ForkedProcess:
    """The part of `subprocess.Popen` jupyter_client and `Kernel` use, for a kernel forked by the
    zygote (our grandchild: its exit is seen in ``/proc``, its signals go through its `Proc`)."""

    stdin = stderr = None

    def __init__(self, pid: int, stdout: Any):
        self.pid, self.stdout = pid, stdout
        self.proc = Proc.of(pid)
        self.returncode: int | None = None if self.proc is not None else -9

    def poll(self) -> int | None:
        if self.returncode is None and not self.proc.alive():
            self.returncode = -9  # its exit status went to the zygote, which reaped it
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.002)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.proc is not None:
            self.proc.signal(sig, group=True)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()

    def terminate(self) -> None:
        import signal

        self.send_signal(signal.SIGTERM)


class Zygote:
    """A kernel zygote (see `nbjobs.zygote`) for this interpreter: a process that has imported
    ipykernel and the ``preload`` modules, and forks one fresh kernel per job (`fork`).

    A keeper thread starts it, and starts it again whenever it dies (a job that crashes its kernel
    leaves the zygote alone).  Each `fork` first checks, with a few ``stat`` calls, that the
    zygote's environment did not change since it started (the folders on its ``sys.path``, which an
    install or upgrade touches, and the preloaded modules' files); if it did, the zygote is replaced
    first, so no job runs stale preloaded code.  Only a kernelspec whose command is
    ``<this interpreter> -m ipykernel_launcher ...`` is forked (`forks`); others take another path.

    >>> z = Zygote(["pandas"], workdir="/tmp")   # doctest: +SKIP
    >>> kernel = start_kernel("python3", "/data", zygote=z)   # doctest: +SKIP
    """

    START_TIMEOUT = 120.0

    def __init__(self, preload: list[str] | tuple[str, ...] = (), *, workdir: str | None = None,
                 executable: str | None = None, flags: list[str] | tuple[str, ...] = ()):
        self.preload = list(preload)
        self.flags = list(flags)  # the interpreter's -X options, as in the kernelspecs it forks
        self.workdir = workdir or os.getcwd()
        self.executable = executable or sys.executable
        self.failed: dict[str, str] = {}  # preloads that could not be imported
        self.error: str | None = None     # why the last start failed (None: it is up, or starting)
        self.starts = 0
        self.proc: Proc | None = None
        self._cond = threading.Condition()
        self._popen: Any = None
        self._sock: Any = None
        self._info: dict[str, Any] | None = None
        self._signature: Any = None
        self._closed = False
        self._thread = threading.Thread(target=self._keep, daemon=True, name="nbjobs-zygote")
        self._thread.start()

    # --- which kernels it forks -----------------------------------------------------------------
    def forks_command(self, argv: list[str]) -> bool:
        """Whether ``argv`` (a kernel command, as jupyter_client formats it) is one the zygote runs:
        this interpreter, with the zygote's ``-X`` options, running ``-m ipykernel_launcher``."""
        split = launcher_command(argv)
        return split is not None and split[0] == os.path.normpath(os.path.abspath(self.executable)) \
            and split[1] == self.flags

    def forks(self, name: str) -> bool:
        """Whether kernelspec ``name`` is one the zygote forks (`forks_command` of its command, a bare
        ``python``/``python3`` being this interpreter, as jupyter_client has it), through the default
        provisioner.  Cached for 5 seconds."""
        key = "forks:" + name.lower()
        hit = _cache.get(key)
        if hit and time.monotonic() - hit[0] < 5.0:
            return bool(hit[1])
        argv = spec_command(name, self.executable)
        ok = argv is not None and self.forks_command(argv)
        _cache[key] = (time.monotonic(), [ok] if ok else [])
        return ok

    # --- forking --------------------------------------------------------------------------------
    def fork(self, argv: list[str], env: dict[str, str], cwd: str) -> _ForkedProcess:
        """A new kernel process running ``argv`` in ``cwd`` with ``env``; its stdout and stderr come
        back as the process's ``stdout`` pipe.  Raises `ZygoteError` when the zygote cannot."""
        import json
        import socket

        with self._cond:
            if self._info is not None and self._stale():
                self._drop(kill=True)  # replaced: the keeper starts a new one
            deadline = time.monotonic() + self.START_TIMEOUT
            while self._sock is None and self.error is None and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ZygoteError("the kernel zygote did not start in time")
                self._cond.wait(left)
            if self._sock is None:
                raise ZygoteError(self.error or "the kernel zygote is closed")
            env = dict(env, JPY_PARENT_PID=str(self.proc.pid if self.proc else 0))
            r, w = os.pipe()
            try:
                try:
                    self._sock.sendmsg([json.dumps({"op": "fork", "argv": list(argv), "cwd": cwd, "env": env}).encode()],
                                       [(socket.SOL_SOCKET, socket.SCM_RIGHTS, w.to_bytes(4, sys.byteorder))])
                finally:
                    os.close(w)
                reply = _recv(self._sock, 30.0)
            except OSError:  # it died: the keeper starts another
                reply = None
            except BaseException:
                os.close(r)
                raise
            if reply is None or reply.get("op") != "forked":
                os.close(r)
                if reply is None:
                    self._drop(kill=True)
                raise ZygoteError(f"the kernel zygote could not fork a kernel ({(reply or {}).get('message', 'it died')})")
            return _ForkedProcess(int(reply["pid"]), os.fdopen(r, "rb"))

    def _stale(self) -> bool:
        return _signature(self._info) != self._signature

    # --- the keeper thread ----------------------------------------------------------------------
    def _spawn(self) -> tuple[Any, Any, dict[str, Any]]:
        import json
        import socket
        import subprocess
        from pathlib import Path

        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            script = str(Path(__file__).with_name("zygote.py"))
            # the last argument is room for a forked kernel's command line (see `nbjobs.zygote`)
            popen = subprocess.Popen([self.executable, *self.flags, script, str(theirs.fileno()), json.dumps({"preload": self.preload}),
                                      "-" * 1024],
                                     pass_fds=[theirs.fileno()], cwd=self.workdir, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        info = _recv(ours, self.START_TIMEOUT)
        if info is None or info.get("op") != "ready":
            ours.close()
            Proc.of(popen.pid) and Proc.of(popen.pid).kill(group=False)
            popen.wait()
            raise ZygoteError(f"the kernel zygote exited while starting (exit code {popen.poll()})")
        return popen, ours, info

    def _keep(self) -> None:
        pause = 0.5
        while True:
            with self._cond:
                if self._closed:
                    return
            born = time.monotonic()
            try:
                popen, sock, info = self._spawn()
            except Exception as exc:  # noqa: BLE001 - jobs take another path meanwhile
                with self._cond:
                    self.error = str(exc)
                    self._cond.notify_all()
                print(f"nbjobs: cannot start the kernel zygote ({exc}); jobs start their kernels without it",
                      file=sys.stderr, flush=True)
                time.sleep(min(pause, 30.0))
                pause *= 2
                continue
            with self._cond:
                if self._closed:
                    sock.close()
                    Proc.of(popen.pid) and Proc.of(popen.pid).kill(group=False)
                    return
                self._popen, self._sock, self._info = popen, sock, info
                self.proc, self.error, self.failed = Proc.of(popen.pid), None, dict(info.get("failed") or {})
                self._signature = _signature(info)
                self.starts += 1
                self._cond.notify_all()
            if int(info.get("threads") or 1) > 1:
                print(f"nbjobs: the kernel zygote runs {info['threads']} threads after its imports (a preloaded "
                      "module started them); forked kernels get only the main one", file=sys.stderr, flush=True)
            if self.failed:
                print("nbjobs: the kernel zygote could not preload "
                      + "; ".join(f"{k} ({v})" for k, v in self.failed.items()), file=sys.stderr, flush=True)
            popen.wait()
            with self._cond:
                replaced = self._popen is not popen  # by `fork`, for a changed environment
                if not replaced:
                    self._drop(kill=False)
            if not replaced and time.monotonic() - born < 5.0:  # it died young: do not start one after another
                time.sleep(min(pause, 30.0))
                pause *= 2
            else:
                pause = 0.5

    def _drop(self, kill: bool) -> None:
        """Forget the current zygote (under the lock); ``kill``: end it (its keeper then starts another)."""
        if self._sock is not None:
            self._sock.close()  # the zygote exits when its control socket closes
        if kill and self.proc is not None:
            self.proc.kill(group=False)
        self._popen = self._sock = self._info = None
        self.proc = None

    def pid(self) -> int | None:
        """The zygote's pid (None while none runs)."""
        with self._cond:
            return self.proc.pid if self.proc is not None else None

    def ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a zygote to be up."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._sock is None and not self._closed and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return self._sock is not None

    def shutdown(self, timeout: float = 2.0) -> None:
        """End the zygote: its control socket closes and it exits (it is killed after ``timeout``)."""
        import subprocess

        with self._cond:
            self._closed = True
            popen, proc = self._popen, self.proc
            self._drop(kill=False)
            self._cond.notify_all()
        if popen is not None:
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                if proc is not None:
                    proc.kill(group=False)
                popen.wait()

    def kill_now(self) -> None:
        """From a dying process (no locks): SIGKILL the zygote."""
        proc = self.proc
        if proc is not None:
            proc.kill(group=False)


def launcher_command(argv: list[str]) -> tuple[str, list[str], list[str]] | None:
    """``(interpreter, -X options, arguments)`` of a kernel command ``INTERPRETER [-X...] -m
    ipykernel_launcher ARGUMENTS``, or None for any other command.

    >>> launcher_command(["/v/bin/python", "-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "c.json"])
    ('/v/bin/python', ['-Xfrozen_modules=off'], ['-f', 'c.json'])
    >>> launcher_command(["/usr/bin/env", "python", "-m", "ipykernel_launcher"]) is None
    True
    """
    if not argv or os.path.sep not in argv[0] or "-m" not in argv:
        return None
    at = argv.index("-m")
    flags = argv[1:at]
    if argv[at + 1:at + 2] != ["ipykernel_launcher"] or not all(f.startswith("-X") and len(f) > 2 for f in flags):
        return None
    return os.path.normpath(os.path.abspath(argv[0])), flags, argv[at + 2:]


def spec_command(name: str, executable: str | None = None) -> list[str] | None:
    """The command of kernelspec ``name`` (a bare ``python``/``python3`` replaced by ``executable``,
    as jupyter_client does), or None if it has none, cannot be read, or uses another provisioner."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec(name)
    except Exception:  # noqa: BLE001 - not installed, unreadable: no command
        return None
    argv = list(spec.argv or [])
    if argv and argv[0] in _PLAIN_PYTHONS:
        argv[0] = executable or sys.executable
    provisioner = ((spec.metadata or {}).get("kernel_provisioner") or {}).get("provisioner_name")
    return argv if provisioner in (None, "local-provisioner") else None


def zygote_for(name: str, preload: list[str] | tuple[str, ...] = (), workdir: str | None = None) -> "Zygote | None":
    """A `Zygote` that forks kernelspec ``name`` (with its ``-X`` options), or None where forking
    does not apply (`fork_supported`; a kernelspec not of the form ``THIS_PYTHON [-X...] -m
    ipykernel_launcher``)."""
    if not fork_supported():
        return None
    argv = spec_command(name)
    split = launcher_command(argv) if argv else None
    if split is None or split[0] != os.path.normpath(os.path.abspath(sys.executable)):
        return None
    return Zygote(preload, workdir=workdir, flags=split[1])


def _recv(sock: Any, timeout: float) -> dict[str, Any] | None:
    """The zygote's next message, or None when it is gone (or silent for ``timeout`` seconds)."""
    import json
    import select

    try:
        if not select.select([sock], [], [], timeout)[0]:
            return None
        data = sock.recv(1 << 20)
    except OSError:
        return None
    return json.loads(data) if data else None


def _signature(info: dict[str, Any] | None) -> tuple:
    """What tells that a zygote's environment changed: the modification times of the folders on
    its ``sys.path`` (an install, upgrade or removal changes their entries) and of its preloaded
    modules' files.  A few ``stat`` calls."""
    if not info:
        return ()
    out = []
    for path in [*(info.get("path") or []), *(info.get("files") or [])]:
        try:
            out.append(os.stat(path or ".").st_mtime_ns)
        except OSError:
            out.append(None)
    return tuple(out)


class KernelPool:
    """Kernels started ahead of need, ``size`` per kernel name, each handed to exactly one job; and,
    with a ``zygote``, kernels forked from it for the kernel names it forks (`Zygote.forks`).

    `take` forks a kernel when the zygote forks that name; else gives a warm kernel of that name if
    one is there (and starts its replacement in the background), or starts one on demand (the cold
    path: a kernel name the pool does not hold, or ``size=0``).  The names the zygote forks are
    never kept warm.  ``preload``: modules every job's kernel has imported before the job (the
    zygote's, or imported by the prepare cell on the other paths: `preload_code`).  Names asked for on demand join the pool (at most ``max_names``).  Warm kernels idle
    for ``idle_retire`` seconds are retired; no new warm kernel starts while the pool's kernels
    use more than ``max_memory`` bytes.  `shutdown` (and `resize` down) kill what is no longer wanted.

    >>> pool = KernelPool(["python3"], size=1, workdir="/tmp")   # doctest: +SKIP
    >>> kernel = pool.take("python3", cwd="/data")                # doctest: +SKIP
    """

    def __init__(self, names: list[str], size: int = 1, *, workdir: str, idle_retire: float = 900.0,
                 max_memory: int = 2 << 30, max_names: int = 4, on_change: Callable[[list[Proc]], Any] | None = None,
                 zygote: Zygote | None = None, preload: list[str] | tuple[str, ...] = ()):
        self.zygote = zygote
        self.preload = list(preload)
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
        """A kernel for one job: forked by the zygote in ``cwd`` with ``env``; a warm one
        (``kernel.warm``; the caller moves it into ``cwd`` and the job's environment with
        `prepare_code`); or, with none of that name ready, one started now in ``cwd`` with ``env``.
        A zygote that cannot fork (it died just now) is said on stderr, and the job takes the pool."""
        if self.zygote is not None and self.zygote.forks(name):
            try:
                return start_kernel(name, cwd, env, zygote=self.zygote)
            except ZygoteError as exc:
                print(f"nbjobs: {exc}; this job's kernel takes the pool", file=sys.stderr, flush=True)
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
        if self.zygote is not None:
            self.zygote.shutdown()
        with self._cond:
            self._closed = True
            kernels = [k for ks in self.idle.values() for k in ks]
            self.idle.clear()
            self._cond.notify_all()
        for k in kernels:
            k.kill()
        self._thread.join(5)

    def kill_now(self) -> None:
        """From a dying process (no locks, no waiting): SIGKILL every idle kernel and the zygote."""
        if self.zygote is not None:
            self.zygote.kill_now()
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
                    start = next((n for n in self.names if len(self.idle.get(n, [])) < self.size
                                  and not (self.zygote is not None and self.zygote.forks(n))), None)
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
