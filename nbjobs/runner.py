"""One attempt of one job: build the notebook, run it with papermill, collect its outputs.

The runner never writes SQLite: everything it learns (start, kernel pid, progress, the outcome
with recorded outputs) goes through a ``report(event: dict)`` callback, which the executor
forwards to the worker.  Papermill runs the notebook through the engine in `nbjobs.engine`
(imported when an attempt runs: ``import nbjobs.runner`` stays light), which gets the attempt's
state as an `nbjobs.engine.Attempt`.

Run as a program, ``python -m nbjobs.runner`` runs one attempt (`main`): it reads the attempt's
spec as JSON on stdin and writes events as JSON lines on stdout; ``python -m nbjobs.runner
--serve`` is a runner host (`RunnerHost`) that runs attempts one after another on control
messages, with warm kernels.

Events::

    {"type": "started", "output_path", "log_path", "code_hash", "kernel", "versions"}
    {"type": "kernel", "pid", "proc", "path"}     # the kernel process ([pid, start time]: a `Proc`) and
                                                   # how it came: "forked", "warm" or "cold"
    {"type": "progress", "done", "total"}          # code cells finished / code cells
    {"type": "done", "outcome", "error", "outputs", "output_path"}
    {"type": "pool", "procs"}                      # a runner host's idle kernels (see `RunnerHost`)

``outcome`` is ``succeeded``, ``error`` (the job's code raised, or its input was wrong),
``kernel_died`` (the kernel died while the job's code ran), ``kernel_lost`` (the kernel failed to
start, or died before the job's first cell ran: the system's failure, not the job's),
``cell_timeout`` (a cell ran past ``cell_timeout``), ``worker_lost`` (a runner host whose worker
stopped renewing the lease ended the attempt) or ``interrupted`` (stopped on request).

A stop (`request_stop`: from SIGTERM, a runner host's control message or fence, or the watch on
the worker's pid) acts on the attempt's `_Stop`, one per attempt.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from . import config, outputs
from .job import code_hash
from .procs import Proc

Report = Callable[[dict], None]


def attempt_dir(run_dir: Path, number: int) -> Path:
    """``runs/<job id>/<attempt>/``: output.ipynb, log.txt and outputs/ of one attempt."""
    return run_dir / str(number)


def build_cell_notebook(source: str, kernel: str = "python3", *, inputs_dir: str | None = None,
                        outputs: list[str] | tuple[str, ...] = (), origin: dict[str, Any] | None = None) -> Any:
    """A cell job as a notebook: a ``parameters`` cell (papermill injects after it), a cell that
    loads the inputs from ``inputs_dir`` (only with inputs), the source, and a cell that records the
    variables named in ``outputs`` (only with outputs; a missing one fails the job with a NameError).
    The helper cells are one expression each and leave no names behind in the job's namespace.

    ``origin`` (a ``%%job`` cell's): ``{"cell": 13, "magic": "%%job --name x"}``.  The source then
    runs as ``In [13]`` below its magic line (as a comment), so a traceback says ``Cell In[13],
    line 7`` where the user's editor shows line 7 of cell [13]."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("# parameters", metadata={"tags": ["parameters", "nbjobs-parameters"]})
    nb.cells = [params]
    helper = '__import__("nbjobs.outputs").outputs.'
    if inputs_dir:
        nb.cells.append(nbformat.v4.new_code_cell(f"{helper}load_inputs_into(globals(), {str(inputs_dir)!r})",
                                                  metadata={"tags": ["nbjobs-inputs"]}))
    count = (origin or {}).get("cell")
    if isinstance(count, int) and count > 1:  # this cell runs as In [count - 1]: the next one is In [count]
        nb.cells.append(nbformat.v4.new_code_cell(f"get_ipython().execution_count = {count - 1}",
                                                  metadata={"tags": ["nbjobs-origin"]}))
        magic = str((origin or {}).get("magic") or "%%job").splitlines()[0]
        source = f"# {magic}\n{source}"
    nb.cells.append(nbformat.v4.new_code_cell(source))
    if outputs:
        nb.cells.append(nbformat.v4.new_code_cell(f"{helper}record_outputs(globals(), {list(outputs)!r})",
                                                  metadata={"tags": ["nbjobs-outputs"]}))
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


class Redactor:
    """Replaces known secret values with ``[secret NAME]`` in text, notebooks and errors.

    >>> Redactor({"TOKEN": "s3cr3t-value"})("auth s3cr3t-value ok")
    'auth [secret TOKEN] ok'
    """

    MIN_LEN = 4  # shorter values would blank out ordinary text; they are still never stored

    def __init__(self, secrets: dict[str, str]):
        pairs = sorted(((v, n) for n, v in secrets.items() if len(v) >= self.MIN_LEN), key=lambda p: -len(p[0]))
        self.pairs = [(v, f"[secret {n}]") for v, n in pairs]

    def __bool__(self) -> bool:
        return bool(self.pairs)

    def __call__(self, text: Any) -> Any:
        if not self.pairs or not isinstance(text, str):
            return text
        for value, label in self.pairs:
            if value in text:
                text = text.replace(value, label)
        return text

    def deep(self, obj: Any) -> Any:
        """Redact every string inside lists and dicts (a notebook's outputs, an error dict), in place."""
        if isinstance(obj, dict):
            for k, v in obj.items():
                obj[k] = self.deep(v)
            return obj
        if isinstance(obj, list):
            for i, v in enumerate(obj):
                obj[i] = self.deep(v)
            return obj
        return self(obj)


class _LogFile:
    """The attempt's log: papermill's stdout/stderr file, and the sink of the kernel's own output.
    Writes pass through the job's `Redactor` and a lock (the kernel's output arrives on its own
    thread)."""

    def __init__(self, f):
        self.f, self.redact, self.lock = f, Redactor({}), threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            return self.f.write(self.redact(text))

    def flush(self) -> None:
        with self.lock:
            self.f.flush()

    def close(self) -> None:
        with self.lock:
            self.f.close()


def load_secrets(names: list[str]) -> dict[str, str]:
    """Values of the job's secrets from this process's environment (the worker's)."""
    missing = [n for n in names if n not in os.environ]
    if missing:
        raise LookupError(f"secret {', '.join(missing)} is not set in the worker's environment; start the "
                          f"worker with it set (e.g. `{missing[0]}=... nbjobs worker`)")
    short = [n for n in names if len(os.environ[n]) < Redactor.MIN_LEN]
    if short:  # it could not be told apart from ordinary text, so it could not be kept out of the logs
        raise ValueError(f"secret {', '.join(short)} is shorter than {Redactor.MIN_LEN} characters, too short "
                         "to redact reliably from logs and notebooks; use a real secret")
    return {n: os.environ[n] for n in names}


def _redact_stderr(redact: Redactor) -> threading.Thread:
    """Route fd 1 and 2 (ours and the kernel's, which inherits them) through a redacting thread."""
    target = os.dup(2)
    r, w = os.pipe()
    os.dup2(w, 2)
    os.dup2(w, 1)
    os.close(w)

    def pump() -> None:
        with os.fdopen(r, "rb") as src, os.fdopen(target, "wb", buffering=0) as dst:
            for line in src:
                dst.write(redact(line.decode(errors="replace")).encode())

    thread = threading.Thread(target=pump, daemon=True, name="nbjobs-redact")
    thread.start()
    return thread


class _Stop:
    """The stop state of one attempt, shared between a stop request (`request_stop`, from a
    signal, a runner host's control thread or fence, the parent watch) and the attempt's run: the
    kernel to stop, whether we did, and whether the job's own code has begun.  A new one for every
    attempt (`_next_attempt`), so that a late escalation of an earlier stop cannot reach this one."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self.outcome = "interrupted"  # what a stop makes of the attempt (``worker_lost`` for a lost lease)
        self.kernel: Proc | None = None
        self.began = False     # a cell of the job's own code has started (before: a kernel death is not the job's)
        self.finished = False  # the run is over: a late escalation must not interrupt the reporting

    def kill_kernel(self) -> None:
        if self.kernel is not None:
            self.kernel.kill()


#: the stop state of the attempt this process runs (or runs next)
_stop = _Stop()


def _next_attempt() -> _Stop:
    """A fresh stop state for the next attempt of this process (a runner host runs many)."""
    global _stop
    _stop = _Stop()
    return _stop


def _versions() -> dict[str, str]:
    import papermill

    from . import __version__

    return {"nbjobs": __version__, "papermill": papermill.__version__, "python": sys.version.split()[0],
            "host": socket.gethostname(), "pid": str(os.getpid())}


#: how jupyter_client, nbclient, `nbjobs.engine` and `run_attempt` say that a kernel did not come up
_KERNEL_NOT_STARTED = "the kernel could not be started"
_START_FAILURES = ("Kernel died before replying", "Kernel didn't respond", "the kernel started ahead could not be prepared",
                   _KERNEL_NOT_STARTED)


def _error_from(exc: BaseException, began: bool = True) -> tuple[str, dict[str, Any]]:
    """(outcome, error dict) for an exception raised while running the notebook; ``began``: whether
    a cell of the job's own code had started (a kernel lost before that is not the job's failure)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from .engine import ANSI

    if isinstance(exc, PapermillExecutionError):
        tb = ANSI.sub("", "\n".join(exc.traceback or []))
        return "error", {"type": exc.ename, "message": ANSI.sub("", str(exc.evalue)), "cell": exc.cell_index,
                         "traceback": tb}
    if isinstance(exc, CellTimeoutError):
        message = ANSI.sub("", str(exc)).strip().splitlines()[0]
        return "cell_timeout", {"type": "CellTimeoutError", "message": message, "cell": getattr(exc, "cell_index", None)}
    died = isinstance(exc, DeadKernelError)
    if died or (isinstance(exc, RuntimeError) and str(exc).startswith(_START_FAILURES)):
        if not began:
            return "kernel_lost", {"type": "KernelLost", "message": "the kernel died or failed to start before the "
                                   f"job's code ran ({str(exc).strip() or type(exc).__name__}); not the job's failure"}
        if died:
            return "kernel_died", {"type": "DeadKernelError", "message": "the kernel died while running the job "
                                   "(it may have run out of memory or called os._exit)"}
    name = type(exc).__name__
    message = str(exc).strip() or name
    if name == "NoSuchKernel":
        message = f"kernel {exc} is not installed; list kernels with `jupyter kernelspec list`"
    import traceback

    return "error", {"type": name, "message": message, "traceback": "".join(traceback.format_exception(exc))}


def run_attempt(spec: dict[str, Any], report: Report, pool: Any = None) -> dict[str, Any]:
    """Run one attempt described by ``spec`` and return (and report) its ``done`` event.

    ``spec`` keys: ``job_id``, ``attempt``, ``kind`` ('notebook'|'cell'), ``notebook`` or
    ``source``, ``parameters``, ``kernel``, ``cwd``, ``run_dir``, optional ``cell_timeout``.
    With ``pool`` (a `nbjobs.kernelpool.KernelPool`), the kernel comes from the pool (kept ahead,
    or forked or started on demand); without it, one is started for the attempt.  Either way the job runs in a
    kernel no other job has used, killed once the outcome is reported.  A stop (`request_stop`)
    acts on the current `_Stop`: a runner host makes a new one before each attempt.
    """
    from .kernels import preload_code, prepare_code, start_kernel

    stop = _stop

    run_dir = Path(spec["run_dir"])
    adir = attempt_dir(run_dir, spec["attempt"])
    out_dir = adir / "outputs"
    config.make_private_dir(out_dir)
    output_path = adir / "output.ipynb"
    log_path = adir / "log.txt"
    kind, kernel_name = spec["kind"], spec.get("kernel") or "python3"
    options = spec.get("options") or {}
    done: dict[str, Any] = {"type": "done", "output_path": str(output_path), "outputs": []}
    log = _LogFile(open(log_path, "a", buffering=1, opener=lambda p, f: os.open(p, f, 0o600)))
    kernel, secrets = None, {}
    try:
        try:
            digest = code_hash(kind, spec.get("notebook"), spec.get("source"))
        except OSError as exc:
            digest = None
            raise FileNotFoundError(f"notebook {spec.get('notebook')} cannot be read ({exc.strerror})") from None
        finally:
            report({"type": "started", "output_path": str(output_path), "log_path": str(log_path),
                    "code_hash": digest, "kernel": kernel_name, "versions": _versions()})
        secrets = load_secrets(options.get("secrets") or [])
        job_env = {outputs.ENV_OUTPUT_DIR: str(out_dir), outputs.ENV_JOB_ID: spec["job_id"],
                   outputs.ENV_SECRET_NAMES: ",".join(secrets)}  # so `record` refuses their values
        log.redact = Redactor(secrets)
        import papermill

        from .engine import ENGINE, Attempt

        if kind == "cell":
            source: Any = build_cell_notebook(spec["source"], kernel_name, outputs=options.get("outputs") or (),
                                              inputs_dir=str(run_dir / outputs.INPUTS_DIR) if options.get("inputs") else None,
                                              origin=options.get("origin"))
        else:
            source = str(spec["notebook"])
        cwd = spec.get("cwd")
        if stop.requested:  # before the attempt began (a runner host busy starting up)
            raise KeyboardInterrupt
        if cwd and not Path(cwd).is_dir():
            raise NotADirectoryError(f"working directory {cwd} does not exist any more; submit from an existing folder")
        env = dict(os.environ, **job_env)
        try:
            kernel = start_kernel(kernel_name, cwd or os.getcwd(), env) if pool is None else \
                pool.take(kernel_name, cwd or os.getcwd(), env=env)
        except Exception as exc:
            if type(exc).__name__ == "NoSuchKernel":  # the job asked for a kernel that is not installed
                raise
            raise RuntimeError(f"{_KERNEL_NOT_STARTED} ({type(exc).__name__}: {exc})") from exc
        kernel.sink = log.write
        preload = pool.preload if pool is not None else []  # a forked kernel has them from its zygote
        move = (cwd or os.getcwd(), job_env) if kernel.mover is not None else None
        prepare = None if move else prepare_code(cwd or os.getcwd(), job_env, [] if kernel.path == "forked" else preload) \
            if kernel.ahead else preload_code(preload) if kernel.path == "cold" else None
        papermill.execute_notebook(
            source, str(output_path), parameters=spec.get("parameters") or {}, engine_name=ENGINE,
            kernel_name=kernel_name, cwd=cwd, progress_bar=False, stdout_file=log, stderr_file=log,
            execution_timeout=spec.get("cell_timeout"),
            attempt=Attempt(report, kernel, stop, redact=log.redact, prepare=prepare, move=move))
        done["outcome"] = "succeeded"
    except BaseException as exc:  # every failure becomes a recorded outcome
        if stop.requested:
            done["outcome"] = stop.outcome
            done["error"] = {"type": "Interrupted", "message": f"stopped: {stop.requested}"}
            if not isinstance(exc, KeyboardInterrupt):
                done["error"] = _error_from(exc)[1] | {"message": f"stopped: {stop.requested}"}
            if stop.outcome == "worker_lost":
                done["error"]["type"] = "WorkerLost"
        elif isinstance(exc, KeyboardInterrupt):
            done["outcome"], done["error"] = "interrupted", {"type": "KeyboardInterrupt", "message": "interrupted"}
        else:
            done["outcome"], done["error"] = _error_from(exc, stop.began)
        if done["outcome"] in ("kernel_died", "kernel_lost") and kernel is not None:
            last = kernel.tail(wait=1.0).strip()
            if last:
                done["error"]["message"] += f"; its last output: {last.splitlines()[-1][:300]}"
                done["error"]["traceback"] = f"the kernel's last output:\n{last}"
        log.redact.deep(done["error"])
        tb = done["error"].get("traceback")
        log.write(f"\n[nbjobs] attempt failed: {done['error']['type']}: {done['error']['message']}\n")
        if tb:
            log.write(tb + "\n")
    finally:
        stop.finished = True
        if kernel is not None:
            kernel.sink = None
        log.close()
        if stop.requested:
            stop.kill_kernel()
    dropped = outputs.drop_secrets(out_dir, secrets)
    if dropped:
        with open(log_path, "a") as f:
            f.writelines(log.redact(f"[nbjobs] output {name!r} dropped: it contains the value of secret {secret}; "
                                    "secrets are never recorded\n") for name, secret in dropped)
    prefix = f"{spec['attempt']}/outputs/"
    for entry in outputs.read_manifest(out_dir):
        if entry.get("path"):
            entry["path"] = prefix + entry["path"]
        done["outputs"].append(entry)
    if not output_path.exists():
        done["output_path"] = None
    report(done)
    if pool is not None:
        pool.ended()
    if kernel is not None:
        kernel.kill()  # one job per kernel
    return done


def request_stop(reason: str, outcome: str = "interrupted", now: bool = False) -> None:
    """Stop the current attempt: interrupt the kernel (the cell raises KeyboardInterrupt and the
    traceback shows where it was), kill it if it has not stopped after a grace period, and as a
    last resort interrupt our own main thread.  ``now``: kill the kernel at once, without the
    interrupt (the job's code must not run one more instruction: its lease is running out).  The
    attempt ends with ``outcome``.  Safe from a signal handler or another thread."""
    import _thread

    stop = _stop
    if stop.requested or stop.finished:
        return
    stop.requested, stop.outcome = reason, outcome
    interrupted = not now and stop.kernel is not None and stop.kernel.signal(signal.SIGINT)

    def escalate():
        if stop.finished or stop is not _stop:  # over, or another attempt runs now
            return
        stop.kill_kernel()
        time.sleep(config.KILL_GRACE)
        if not stop.finished and stop is _stop:
            _thread.interrupt_main()

    t = threading.Timer(config.KILL_GRACE if interrupted else 0.0, escalate)
    t.daemon = True
    t.start()


def _install_stop_handler() -> None:
    """SIGTERM from the worker stops the attempt (`request_stop`)."""
    signal.signal(signal.SIGTERM, lambda signum, frame: request_stop(
        os.environ.get("NBJOBS_STOP_REASON", "stop requested")))


def _watch_parent(parent: int, every: float = 0.5, on_exit: Callable[[], Any] | None = None) -> None:
    """Stop this attempt if the worker that started us dies without stopping it (SIGKILL, the
    OOM killer): its lease expires and another worker runs the job again, so this attempt must
    not go on beside that one, and nobody is left to read our report.  We notice by our parent
    pid changing (we were re-parented); then the kernel is killed and the runner exits.
    ``parent`` is the worker's pid as the worker told us (`WORKER_PID_ENV`), not our parent at
    start-up: a worker killed before this runs has already left us re-parented."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        stop = _stop
        stop.requested = "the worker died"
        print(f"\n[nbjobs] the worker (pid {parent}) is gone; stopping this attempt", file=sys.stderr, flush=True)
        stop.kill_kernel()
        if on_exit is not None:
            on_exit()
        os._exit(3)

    threading.Thread(target=watch, daemon=True, name="nbjobs-parent-watch").start()


#: the executor passes the worker's pid here, so a runner notices a worker that died before it started
WORKER_PID_ENV = "NBJOBS_WORKER_PID"


def _channel() -> Report:
    """Our stdout becomes the event channel (JSON lines); anything else printed goes to stderr."""
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    lock = threading.Lock()

    def report(event: dict) -> None:
        with lock:
            channel.write(json.dumps(event) + "\n")
            channel.flush()

    return report


def _worker_pid() -> int:
    worker_pid = os.environ.pop(WORKER_PID_ENV, "")  # popped: the kernel must not inherit it
    return int(worker_pid) if worker_pid.isdigit() else os.getppid()


def main() -> int:
    """``python -m nbjobs.runner``: one attempt, its spec on stdin, events as JSON lines on stdout."""
    _watch_parent(_worker_pid())
    os.umask(0o077)  # everything an attempt writes (output notebook, logs, outputs) is private
    spec = json.loads(sys.stdin.read())
    report = _channel()
    names = (spec.get("options") or {}).get("secrets") or []
    pump = None
    if names and all(len(os.environ.get(n, "")) >= Redactor.MIN_LEN for n in names):  # else run_attempt fails it
        pump = _redact_stderr(Redactor(load_secrets(names)))
    _install_stop_handler()
    run_attempt(spec, report)
    if pump is not None:  # let the last lines through the redactor before we exit
        sys.stdout.flush(), sys.stderr.flush()
        os.close(1), os.close(2)
        pump.join(2)
    return 0


#: put in a runner host's queue of runs when its pool has a kernel to prime
PRIME = "prime"


class RunnerHost:
    """``python -m nbjobs.runner --serve``: a runner host that runs attempts one after another,
    with papermill imported once and a `nbjobs.kernelpool.KernelPool` of its own: ``mode`` ``fork``
    gives it a `nbjobs.forking.Zygote` (its kernels are forked: ``pool_size`` of them ahead), ``pool``
    warm kernels only, ``cold`` neither (``pool_size`` 0); ``preload``: modules every job's kernel
    has imported.  Between jobs, the main thread connects a client to the next job's kernel.

    Messages arrive as JSON lines on stdin: ``{"op": "run", "spec": {...}}``, ``{"op": "stop",
    "job_id", "attempt", "reason"}`` (stop that attempt: interrupt it if it runs, end it at once if
    it has not begun), ``{"op": "lease", "job_id", "attempt", "fence_at": epoch}`` (the worker renewed
    its lease: that attempt may go on until then), ``{"op": "pool", "size": n}`` (resize the pool); end of
    input ends the host, after killing its pool.

    Self-fencing: an attempt whose worker stops renewing (a worker stopped with SIGSTOP, or stuck)
    has its kernel killed at its ``fence_at`` (the spec's, then each renewal's), which the worker
    sets before its lease in SQLite expires, so the job never runs here beside the attempt another
    worker starts when it reclaims the job.  The attempt ends ``worker_lost``.

    Events go out as JSON lines on stdout, as in `main`, plus ``{"type": "pool", "procs"}`` (the
    idle kernels' ``[pid, start time]``) whenever they change, so the executor can kill them if it
    must kill the host.

    Three threads: the control thread (`read_control`) reads the messages, the fence thread
    (`fence`) ends an attempt whose lease ran out, and the main thread (`run`) runs the attempts.
    """

    def __init__(self, pool_size: int = 1, kernels: list[str] | None = None, workdir: str | None = None,
                 mode: str = "pool", preload: list[str] | None = None):
        import queue

        self.mode = mode
        self.preload = list(preload or [])
        self.size = 0 if mode == "cold" else pool_size
        self.kernels = kernels or ["python3"]
        self.workdir = workdir or os.getcwd()
        self.pool: Any = None  # the KernelPool, once papermill is imported
        self.report: Report = lambda event: None  # the event channel, once `run` opens it
        self.runs: queue.Queue = queue.Queue()  # run specs (and PRIME), then None at the end of input
        self.lock = threading.Lock()  # guards what follows, shared by the three threads
        self.current: tuple[str, int] | None = None  # (job id, attempt) running now
        self.fence_at = float("inf")  # when the running attempt's lease runs out
        self.waiting: set[tuple[str, int]] = set()  # runs received, not begun
        self.dropped: set[tuple[str, int]] = set()  # runs stopped before they began: skip them
        self.renewed: dict[tuple[str, int], float] = {}  # renewals of runs received, not begun

    # --- the control thread ---
    def read_control(self) -> None:
        """Read control messages from stdin until it ends, then end the run loop."""
        for line in sys.stdin:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            op = msg.get("op")
            if op == "run":
                self.on_run(msg["spec"])
            elif op == "stop":
                self.on_stop((msg.get("job_id"), msg.get("attempt")), msg.get("reason") or "stop requested")
            elif op == "lease":
                self.on_lease((msg.get("job_id"), msg.get("attempt")), float(msg.get("fence_at") or "inf"))
            elif op == "pool":
                self.on_pool(int(msg.get("size", 0)))
        self.runs.put(None)

    def on_run(self, spec: dict[str, Any]) -> None:
        with self.lock:
            self.waiting.add((spec["job_id"], spec["attempt"]))
        self.runs.put(spec)

    def on_stop(self, key: tuple[Any, Any], reason: str) -> None:
        with self.lock:
            if self.current == key:
                request_stop(reason)
            elif key in self.waiting:  # not begun (the host may still be starting up): it ends now
                self.waiting.discard(key)
                self.dropped.add(key)
                self.report({"type": "done", "outcome": "interrupted", "outputs": [], "output_path": None,
                             "error": {"type": "Interrupted", "message": f"stopped before it began: {reason}"}})

    def on_lease(self, key: tuple[Any, Any], until: float) -> None:
        with self.lock:
            if self.current == key:
                self.fence_at = until
            elif key in self.waiting:
                self.renewed[key] = until

    def on_pool(self, size: int) -> None:
        with self.lock:
            self.size = size
            if self.pool is not None:
                self.pool.resize(size)

    # --- the fence thread ---
    def fence(self) -> None:
        """Stop the running attempt at once when its lease runs out (see the class's docstring)."""
        while True:
            time.sleep(0.1)
            with self.lock:
                if self.current is not None and time.time() >= self.fence_at:
                    request_stop("its worker stopped renewing the lease (stopped, stuck or gone); the job runs "
                                 "again elsewhere", outcome="worker_lost", now=True)

    # --- the main thread ---
    def run(self) -> int:
        """Serve until stdin ends; the exit code of the host.  Between jobs, the pool's next kernel
        is connected ahead (`KernelPool.prime`)."""
        import queue

        from jupyter_core.utils import run_sync

        from .forking import zygote_for
        from .kernelpool import KernelPool

        _watch_parent(_worker_pid(), on_exit=self._kill_pool)  # first: papermill takes a while
        os.umask(0o077)
        self.report = _channel()
        threading.Thread(target=self.read_control, daemon=True, name="nbjobs-host-control").start()
        threading.Thread(target=self.fence, daemon=True, name="nbjobs-host-fence").start()
        # the zygote first (its own process: it imports ipykernel while we import papermill)
        zygote = zygote_for(self.kernels[0], self.preload, self.workdir) if self.mode == "fork" else None
        import gc

        import papermill  # noqa: F401 - once per host, not once per job

        from .engine import connect

        gc.collect()
        gc.freeze()  # what the host imported lives as long as it: the collector need not walk it again

        with self.lock:
            self.pool = KernelPool(self.kernels, size=self.size, workdir=self.workdir, zygote=zygote,
                                   preload=self.preload,
                                   idle_retire=config.POOL_IDLE_RETIRE, max_memory=config.POOL_MAX_MEMORY,
                                   on_change=lambda procs: self.report({"type": "pool",
                                                                        "procs": [p.dump() for p in procs]}),
                                   on_prime=lambda: self.runs.put(PRIME))
        stderr = os.dup(2)
        prime = run_sync(connect)
        while True:
            try:
                self.pool.prime(lambda kernel: prime(kernel, 30.0, warm_up=True))
                try:  # woken by a run, the end of input, or the pool (`on_prime`)
                    spec = self.runs.get(timeout=5.0)
                except queue.Empty:  # now and then: a primed kernel that died is replaced
                    continue
                if spec is PRIME:
                    continue
                if spec is None:
                    break
                if self._begin(spec):
                    self._run(spec, stderr)
            except KeyboardInterrupt:  # a stop's last resort that arrived as the attempt ended
                continue
        self.pool.shutdown()
        return 0

    def _begin(self, spec: dict[str, Any]) -> bool:
        """Make ``spec``'s attempt the current one (a fresh `_Stop`, its fence); False if it was
        stopped before it began."""
        key = (spec["job_id"], spec["attempt"])
        with self.lock:
            if key in self.dropped:
                self.dropped.discard(key)
                self.renewed.pop(key, None)
                return False
            self.waiting.discard(key)
            _next_attempt()
            self.current = key
            self.fence_at = max(float(spec.get("fence_at") or "inf"), self.renewed.pop(key, 0.0))
        return True

    def _run(self, spec: dict[str, Any], stderr: int) -> None:
        """Run the current attempt, with our stderr in its log; ``stderr``: ours to restore."""
        log = attempt_dir(Path(spec["run_dir"]), spec["attempt"]) / "log.txt"
        config.make_private_dir(log.parent)
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(fd, 2), os.close(fd)  # what papermill or Python itself prints goes to the attempt log
        try:
            run_attempt(spec, self.report, self.pool)
        finally:
            with self.lock:
                self.current = None
            sys.stderr.flush()
            os.dup2(stderr, 2)

    def _kill_pool(self) -> None:
        if self.pool is not None:
            self.pool.kill_now()


def serve(pool_size: int = 1, kernels: list[str] | None = None, workdir: str | None = None,
          mode: str = "pool", preload: list[str] | None = None) -> int:
    """``python -m nbjobs.runner --serve``: run a `RunnerHost` until its input ends."""
    return RunnerHost(pool_size, kernels, workdir, mode, preload).run()


if __name__ == "__main__":
    if "--serve" in sys.argv:
        import argparse

        ap = argparse.ArgumentParser(prog="python -m nbjobs.runner")
        ap.add_argument("--serve", action="store_true")
        ap.add_argument("--pool", type=int, default=1)
        ap.add_argument("--kernel", action="append", default=[])
        ap.add_argument("--workdir")
        ap.add_argument("--kernels", default="pool", choices=("fork", "pool", "cold"))
        ap.add_argument("--preload", default="")
        a = ap.parse_args()
        sys.exit(serve(a.pool, a.kernel, a.workdir, a.kernels, [m for m in a.preload.split(",") if m]))
    sys.exit(main())
