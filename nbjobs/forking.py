"""Forked kernels: the client side of the kernel zygote (`nbjobs.zygote`, the process).

A `Zygote` starts that process (one per runner host), restarts it when it dies, replaces it when its
environment changed, and asks it to `fork` a fresh kernel; `ForkedKernelManager` (jupyter_client's
KernelManager with the launch replaced) makes the forked process a kernel jupyter_client and
nbclient drive like any other.  `zygote_for` says whether a kernelspec can be forked here at all.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
import time
from typing import Any

from .kernels import _cache, launcher_command, spec_command
from .procs import Proc

_forked_manager: list[type] = []


def forked_manager_class() -> type:
    """jupyter_client's KernelManager, launching through a `Zygote` (defined on first use: jupyter_client
    is imported only when a kernel starts).  Everything but the launch is jupyter_client's own: the
    connection file, the ipc socket paths, the kernel's environment and command."""
    if _forked_manager:
        return _forked_manager[0]
    from jupyter_client.utils import run_sync

    from .kernels import manager_class

    class ForkedKernelManager(manager_class()):
        nbjobs_zygote: "Zygote | None" = None
        nbjobs_path = "cold"
        nbjobs_ahead = False  # forked before its job is known: it waits for the job's folder (`Kernel.move`)
        nbjobs_mover: Any = None

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            zygote = self.nbjobs_zygote
            if zygote is None or not zygote.forks_command(kernel_cmd):
                return await super()._async_launch_kernel(kernel_cmd, **kw)
            process = zygote.fork(kernel_cmd, kw.get("env") or dict(os.environ), str(kw.get("cwd") or os.getcwd()),
                                  move=self.nbjobs_ahead)
            provisioner = self.provisioner
            provisioner.process, provisioner.pid, provisioner.pgid = process, process.pid, None
            provisioner.cwd = kw.get("cwd")
            self.nbjobs_path, self.nbjobs_generation = "forked", process.generation
            self.nbjobs_mover = process.mover
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

    def __init__(self, pid: int, stdout: Any, generation: int = 0, mover: Any = None):
        self.pid, self.stdout, self.generation, self.mover = pid, stdout, generation, mover
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
    def fork(self, argv: list[str], env: dict[str, str], cwd: str, move: bool = False) -> _ForkedProcess:
        """A new kernel process running ``argv`` in ``cwd`` with ``env``; its stdout and stderr come
        back as the process's ``stdout`` pipe.  With ``move`` (a kernel forked ahead of its job), the
        process's ``mover`` is our end of the socket on which it waits for its job's folder and
        environment (`nbjobs.kernels.Kernel.move`).  Raises `ZygoteError` when the zygote cannot."""
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
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) if move else (None, None)
            fds = [w] + ([theirs.fileno()] if theirs is not None else [])
            try:
                try:
                    self._sock.sendmsg([json.dumps({"op": "fork", "argv": list(argv), "cwd": cwd, "env": env,
                                                    "move": move}).encode()],
                                       [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                         b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))])
                finally:
                    os.close(w)
                    if theirs is not None:
                        theirs.close()
                reply = _recv(self._sock, 30.0)
            except OSError:  # it died: the keeper starts another
                reply = None
            except BaseException:
                os.close(r)
                if ours is not None:
                    ours.close()
                raise
            if reply is None or reply.get("op") != "forked":
                os.close(r)
                if ours is not None:
                    ours.close()
                if reply is None:
                    self._drop(kill=True)
                raise ZygoteError(f"the kernel zygote could not fork a kernel ({(reply or {}).get('message', 'it died')})")
            return _ForkedProcess(int(reply["pid"]), os.fdopen(r, "rb"), self.starts, ours)

    def fresh(self, generation: int | None) -> bool:
        """Whether a kernel forked by zygote ``generation`` (`starts` when it was forked) came from
        the zygote that runs now, in an environment that did not change since (else the zygote is
        replaced, and such a kernel must not take a job: its preloads may be stale)."""
        with self._cond:
            if self._info is not None and self._stale():
                self._drop(kill=True)
            return self._sock is not None and generation == self.starts

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
