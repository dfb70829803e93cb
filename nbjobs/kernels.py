"""Kernels: which kernels exist (cheaply), and one kernel process for one job (`Kernel`,
`start_kernel`): forked by a zygote (`nbjobs.forking`), or started as a process of its own, ahead of
need (kept by `nbjobs.kernelpool.KernelPool`) or with its job.  Each `Kernel` records its ``path``
(``forked``, ``warm`` or ``cold``) and whether it was started ahead (``ahead``: the job moves it
into its folder and environment with `prepare_code`).

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
    """One kernel process for one job: forked from the zygote (``path`` ``forked``), or a process
    started ahead of need (``warm``) or on demand (``cold``); ``ahead``: started (or forked) before
    its job was known, in the pool's folder and environment.  Its raw stdout/stderr (what ipykernel does not forward to the
    notebook, e.g. a crash message) goes to ``sink`` once a job has taken it; its last `TAIL` lines
    are kept whoever listens (`tail`), so a kernel that dies explains itself in the attempt's error."""

    TAIL = 20

    def __init__(self, km: Any, name: str, path: str, ahead: bool = False):
        from collections import deque

        self.km, self.name, self.path, self.ahead = km, name, path, ahead
        self.generation: int | None = getattr(km, "nbjobs_generation", None)  # of the zygote that forked it
        self.kc: Any = None  # its client, once connected (`nbjobs.engine.connect`: ahead of the job, or by it)
        self.info: dict[str, Any] = {}  # the content of its kernel_info reply, once connected
        self.mover: Any = getattr(km, "nbjobs_mover", None)  # forked ahead: the socket `move` uses
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

    def move(self, cwd: str, env: dict[str, str], timeout: float = 10.0) -> None:
        """Move a kernel forked ahead (``mover`` set) into its job's folder and environment, through
        the socket its zygote gave it (see `nbjobs.zygote`), instead of a prepare request; raises
        RuntimeError if it cannot (the kernel's start failed: not the job's failure)."""
        import json

        sock, self.mover = self.mover, None
        try:
            sock.settimeout(timeout)
            sock.sendall(json.dumps({"cwd": cwd, "env": env}).encode() + b"\n")
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except OSError as exc:
            answer = f"error {exc}".encode()
        finally:
            sock.close()
        if answer.strip() != b"ok":
            text = answer.decode(errors="replace").strip().removeprefix("error ") or "no answer"
            raise RuntimeError(f"the kernel started ahead could not be prepared for the job ({text})")

    def listening(self) -> bool:
        """Whether the kernel has bound its sockets (for ``ipc``: their files exist), so a client that
        connects now is not put off by ZeroMQ's reconnection interval (100 ms)."""
        km = self.km
        if km.transport != "ipc":
            return True
        ports = (km.shell_port, km.iopub_port, km.stdin_port, km.control_port, km.hb_port)
        return all(os.path.exists(f"{km.ip}-{port}") for port in ports)

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
        if self.kc is not None:
            self.kc.stop_channels()
            self.kc = None
        if self.mover is not None:
            self.mover.close()
            self.mover = None
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


_contexts: dict[str, Any] = {}


def zmq_context(asynchronous: bool = False) -> Any:
    """This process's one ZeroMQ context for its kernels' managers (``asynchronous``: for their
    clients).  jupyter_client makes one per manager and one per client, each with an I/O thread
    that ending the kernel must then join: about 4 ms of every job on its runner host."""
    kind = "async" if asynchronous else "sync"
    with _sockets_lock:
        if kind not in _contexts:
            import zmq
            import zmq.asyncio

            _contexts[kind] = zmq.asyncio.Context() if asynchronous else zmq.Context()
        return _contexts[kind]


_manager: list[type] = []


def manager_class() -> type:
    """jupyter_client's KernelManager without the control socket it connects at every start: it
    is for shutdown requests, which nbjobs never sends (it kills its kernels, `Kernel.kill`), and
    `request_shutdown` would still connect it.  Defined on first use (jupyter_client is imported
    only when a kernel starts)."""
    if not _manager:
        from jupyter_client import KernelManager

        class NbjobsKernelManager(KernelManager):
            async def _async_post_start_kernel(self, **kw: Any) -> None:
                self.start_restarter()
                await self.provisioner.post_launch(**kw)

        _manager.append(NbjobsKernelManager)
    return _manager[0]


def start_kernel(name: str, cwd: str, env: dict[str, str] | None = None, ahead: bool = False,
                 zygote: Any = None) -> Kernel:
    """Start a kernel called ``name`` in ``cwd`` (jupyter_client's KernelManager, asynchronous
    client class so nbclient can drive it); returns at once, before it is ready.  With ``zygote``
    (a `nbjobs.forking.Zygote`, and a kernelspec it can fork: `Zygote.forks`), the kernel is forked
    from it (``path`` ``forked``); else a new process (``warm`` if started ``ahead`` of need, else
    ``cold``).

    It listens on Unix sockets (ZeroMQ's ``ipc`` transport), not TCP ports: jupyter_client picks
    free ports per process, so two runner hosts could hand out the same port and the second kernel
    to bind it died at start ("Address already in use"), about one job in 600 at concurrency 2."""
    import subprocess

    if zygote is not None:
        from .forking import forked_manager_class

        cls = forked_manager_class()
    else:
        cls = None
    if cls is None:
        cls = manager_class()
    km = cls(kernel_name=name, client_class="jupyter_client.asynchronous.AsyncKernelClient",
             transport="ipc", ip=_socket_prefix(), context=zmq_context())
    km.nbjobs_zygote, km.nbjobs_ahead = zygote, ahead
    km.nbjobs_path = "warm" if ahead else "cold"
    km.start_kernel(extra_arguments=list(KERNEL_ARGS), cwd=cwd, env=dict(env if env is not None else os.environ),
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    return Kernel(km, name, km.nbjobs_path, ahead)


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
