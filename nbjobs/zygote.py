"""The kernel zygote: a Python process that has imported ipykernel (and the ``--preload`` modules)
and forks one fresh kernel per job.  `nbjobs.forking.Zygote` starts and talks to it; this file is
run as a script (``python .../nbjobs/zygote.py FD CONFIG``), never imported, so that nothing of
nbjobs is in the zygote's ``sys.modules`` (a forked kernel's modules are a cold kernel's, plus the
preloads).

The zygote imports with the garbage collector off and then freezes what it imported (``gc.freeze``):
a collection in a child would otherwise walk, and so copy, every object it inherited (a forked
child spent 150 ms of its start in one); each child turns the collector on again, as a cold kernel
has it.  Objects inherited from the zygote are never collected in a child (they were alive when it
was forked), and ``gc.get_objects()`` does not list them.

Before it forks, the zygote holds no ZeroMQ context, no socket but its control socket, and no thread
(a ZeroMQ context created before a fork breaks the child: jupyter_client #437).  The child does what
``python -m ipykernel_launcher ...`` does after the interpreter started: it runs the launcher as
``__main__`` with the kernel's arguments, so its context, sockets, connection file and threads are
created after the fork.  Before that the child becomes what a cold start would have made it: a
session of its own, stdin from /dev/null, stdout and stderr to the pipe the runner host sent, the
job's working directory and environment, ``sys.argv``/``sys.orig_argv``/``sys.path`` as a cold
kernel's, ``random`` (and numpy's global generator, if loaded) re-seeded.  Children share the
zygote's string-hash seed (``PYTHONHASHSEED``).

Control messages (SOCK_SEQPACKET, one JSON object each):

    zygote -> host  {"op": "ready", "pid", "path": sys.path, "files": [preloaded module files], "failed": {name: error}}
    host -> zygote  {"op": "fork", "argv": [exe, -X..., "-m", "ipykernel_launcher", ...], "cwd", "env", "move"}
                    + the stdout fd (and, with "move", one end of a socket pair)
    zygote -> host  {"op": "forked", "pid"} | {"op": "error", "message"}

A kernel forked ahead of its job ("move") keeps, until its job comes, a thread that waits on that
socket for the job's folder and environment (one JSON line ``{"cwd", "env"}``), moves the kernel
there (working directory, ``os.environ``, IPython's starting dir and ``_dh``, as the silent prepare
request of a warm kernel does), answers ``ok`` (or ``error ...``) and ends: the job does not pay a
request to its kernel for the move.

The zygote reaps its children and exits when the control socket closes (its runner host is gone);
its children, whose ``JPY_PARENT_PID`` is the zygote, then end too (ipykernel's parent poller).
"""
import os
import sys

#: modules every cold ipykernel imports before it runs a cell (the kernel's classes; its debugger, which
#: `IPythonKernel` imports whether or not debugging is used; what the shell's and the app's start-up
#: import: pdb, the history's sqlite3, tornado's asyncio loop, faulthandler), imported ahead in the
#: zygote: nothing more, so a forked kernel's modules are a cold one's (the tests compare them)
KERNEL_MODULES = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell", "ipykernel.debugger",
                  "IPython.core.completerlib", "IPython.core.logger", "IPython.core.oinspect",
                  "IPython.extensions.storemagic", "IPython.core.debugger", "pdb", "sqlite3",
                  "tornado.platform.asyncio", "faulthandler")


def _send(ctl, msg):
    import json

    ctl.send(json.dumps(msg).encode())


def _fds(ancillary):
    import socket

    fds = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i:i + 4], sys.byteorder) for i in range(0, len(data) - len(data) % 4, 4)]
    return fds


def _show_command(argv):
    """Make ``/proc/self/cmdline`` (what ``ps`` shows) the kernel's command, as a cold kernel's is:
    written over the zygote's own argument area, which its padding argument makes long enough."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])
        text = "\0".join(argv).encode()[:end - start - 1]
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(start)
            mem.write(text + b"\0" * (end - start - len(text)))
    except (OSError, ValueError, IndexError):
        pass  # ps shows the zygote's command; nothing else depends on it


def _await_job(sock):
    """In a kernel forked ahead, on a thread of its own: move the kernel into its job's folder and
    environment when they come (see the module's docstring), then end."""
    import json
    import pathlib

    try:
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:  # dropped without a job
                return
            data += chunk
        job = json.loads(data)
        os.chdir(job["cwd"])
        os.environ.update(job["env"])
        from IPython.core.getipython import get_ipython

        ip = get_ipython()
        ip.starting_dir = os.getcwd()
        ip.history_manager.dir_hist[:] = [pathlib.Path(os.getcwd())]
        sock.sendall(b"ok\n")
    except Exception as exc:  # noqa: BLE001 - told to the host, which fails the start (not the job)
        try:
            sock.sendall(f"error {type(exc).__name__}: {exc}\n".encode())
        except OSError:
            pass
    finally:
        sock.close()


def _child(req, out, mover, closing, base_path, set_by_imports):
    """In the forked child: become the job's kernel (never returns); ``mover``: the socket of a
    kernel forked ahead of its job (`_await_job`), or None."""
    import gc
    import signal

    code = 1
    try:
        gc.enable()
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in closing:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        for name, value in set_by_imports.items():  # as a cold kernel's imports would have set them
            os.environ.setdefault(name, value)
        kernelapp = sys.modules.get("ipykernel.kernelapp")
        if kernelapp is not None:  # defaults read from the environment when the zygote imported it: the job's now
            app = kernelapp.IPKernelApp
            traits, static = app.class_traits(), getattr(app, "_static_immutable_initial_values", {})
            for name, variable in (("parent_handle", "JPY_PARENT_PID"), ("interrupt", "JPY_INTERRUPT_EVENT")):
                value = int(os.environ.get(variable) or 0)
                if name in traits:
                    traits[name].default_value = value
                if name in static:  # traitlets' cache of immutable defaults
                    static[name] = value
        argv = list(req["argv"])
        sys.orig_argv = argv
        _show_command(argv)
        at = argv.index("-m")
        sys.argv = argv[at + 1:at + 2] + argv[at + 2:]  # run_module sets argv[0] to the launcher's file, as -m does
        sys.path[:] = [os.getcwd()] + base_path  # -m puts the working directory first; the launcher drops it
        if "random" in sys.modules:
            sys.modules["random"].seed()
        numpy = sys.modules.get("numpy")
        if numpy is not None and hasattr(numpy, "random"):
            numpy.random.seed()
        import runpy

        if mover is not None:
            import socket
            import threading

            threading.Thread(target=_await_job, args=(socket.socket(fileno=mover),), daemon=True,
                             name="nbjobs-await-job").start()
        runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - what a cold kernel would print before dying
        import traceback

        traceback.print_exc()
    finally:
        try:
            import atexit

            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _compile_ahead():
    """Compile once here what every kernel compiles at its first cell: tokenize's token pattern (a
    cached function, used by IPython's input transformers), 45 of the 60 ms of regular-expression
    compiling profiled in four forked kernels' starts.  Only a cache is filled: nothing is imported."""
    import tokenize

    compile_pattern, pattern = getattr(tokenize, "_compile", None), getattr(tokenize, "PseudoToken", None)
    if callable(compile_pattern) and isinstance(pattern, str):
        compile_pattern(pattern)


def main():
    import gc

    gc.disable()  # see the module's docstring
    del sys.path[0]  # this script's folder: the launcher imports ipykernel without it too
    import json
    import select
    import signal
    import socket

    ctl = socket.socket(fileno=int(sys.argv[1]))
    config = json.loads(sys.argv[2])
    base_path = list(sys.path)
    environ = dict(os.environ)
    for name in KERNEL_MODULES:
        __import__(name)
    _compile_ahead()
    failed, files = {}, []
    for name in config.get("preload") or ():
        try:
            __import__(name)
        except BaseException as exc:  # noqa: BLE001 - reported to the host, which says so
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        path = getattr(sys.modules.get(name), "__file__", None)
        if path:
            files.append(path)
    set_by_imports = {k: v for k, v in os.environ.items() if environ.get(k) != v}  # e.g. debugpy's PYDEVD_*
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the worker's terminal is the worker's to handle
    sys.stdout.flush()
    sys.stderr.flush()
    gc.collect()
    gc.freeze()
    with open("/proc/self/status") as f:  # a thread started by an import would not survive the fork
        threads = int(next((line.split()[1] for line in f if line.startswith("Threads:")), "1"))
    _send(ctl, {"op": "ready", "pid": os.getpid(), "path": base_path, "files": files, "failed": failed,
                "threads": threads})
    while True:
        try:
            readable, _, _ = select.select([ctl, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            while True:
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
        if ctl not in readable:
            continue
        try:
            data, ancillary, _, _ = ctl.recvmsg(1 << 20, socket.CMSG_SPACE(16))
        except InterruptedError:
            continue
        except OSError:
            break
        fds = _fds(ancillary)
        if not data:  # the runner host is gone
            break
        try:
            req = json.loads(data)
            want = 2 if req.get("move") else 1
            if req.get("op") != "fork" or len(fds) != want:
                raise ValueError(f"not a fork request with {want} fd(s): {req.get('op')!r}, {len(fds)} fd(s)")
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                _child(req, fds[0], fds[1] if want == 2 else None, [ctl.detach(), wake_r, wake_w], base_path,
                       set_by_imports)
            _send(ctl, {"op": "forked", "pid": pid})
        except Exception as exc:  # noqa: BLE001 - the host falls back to another kernel path
            _send(ctl, {"op": "error", "message": f"{type(exc).__name__}: {exc}"})
        finally:
            for fd in fds:
                os.close(fd)


if __name__ == "__main__":
    main()
