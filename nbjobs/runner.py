"""One attempt of one job: build the notebook, run it with papermill, collect its outputs.

The runner is the only module that imports papermill.  It never writes SQLite: everything it
learns (start, kernel pid, progress, the outcome with recorded outputs) goes through a
``report(event: dict)`` callback, which the executor forwards to the worker.  Run as a program
(``python -m nbjobs.runner``) it reads the attempt's spec as JSON on stdin and writes events as
JSON lines on stdout.

Events::

    {"type": "started", "output_path", "log_path", "code_hash", "kernel", "versions"}
    {"type": "kernel", "pid", "proc", "warm"}     # the kernel process ([pid, start time]: a `Proc`)
    {"type": "progress", "done", "total"}          # code cells finished / code cells
    {"type": "done", "outcome", "error", "outputs", "output_path"}

``outcome`` is ``succeeded``, ``error`` (the job's code raised, or its input was wrong),
``kernel_died`` (the kernel died while the job's code ran), ``kernel_lost`` (the kernel failed to
start, or died before the job's first cell ran: the system's failure, not the job's),
``cell_timeout`` (a cell ran past ``cell_timeout``), ``worker_lost`` (a runner host whose worker
stopped renewing the lease ended the attempt) or ``interrupted`` (stopped on request).
"""
from __future__ import annotations

import json
import os
import re
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
SAVE_EVERY = 1.0  # seconds between two saves of the output notebook while cells run
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def attempt_dir(run_dir: Path, number: int) -> Path:
    """``runs/<job id>/<attempt>/``: output.ipynb, log.txt and outputs/ of one attempt."""
    return run_dir / str(number)


def build_cell_notebook(source: str, kernel: str = "python3", *, inputs_dir: str | None = None,
                        outputs: list[str] | tuple[str, ...] = ()) -> Any:
    """A cell job as a notebook: a ``parameters`` cell (papermill injects after it), a cell that
    loads the inputs from ``inputs_dir`` (only with inputs), the source, and a cell that records the
    variables named in ``outputs`` (only with outputs; a missing one fails the job with a NameError).
    The helper cells are one expression each and leave no names behind in the job's namespace."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("# parameters", metadata={"tags": ["parameters", "nbjobs-parameters"]})
    nb.cells = [params]
    helper = '__import__("nbjobs.outputs").outputs.'
    if inputs_dir:
        nb.cells.append(nbformat.v4.new_code_cell(f"{helper}load_inputs_into(globals(), {str(inputs_dir)!r})",
                                                  metadata={"tags": ["nbjobs-inputs"]}))
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
    """Shared between the stop request (a signal, or a message to a runner host) and the run of
    the current attempt: the kernel to stop, whether we did, and whether the job's own code has
    begun.  Reset for every attempt."""

    requested: str | None = None
    outcome = "interrupted"  # what a stop makes of the attempt (``worker_lost`` for a lost lease)
    kernel: Proc | None = None
    began = False     # a cell of the job's own code has started (before: a kernel death is not the job's)
    finished = False  # the run is over: a late escalation must not interrupt the reporting
    attempt = 0       # which attempt of this process a stop (and its escalation) belongs to

    @classmethod
    def reset(cls) -> None:
        cls.requested, cls.outcome, cls.kernel, cls.began, cls.finished = None, "interrupted", None, False, False
        cls.attempt += 1

    @classmethod
    def kill_kernel(cls) -> None:
        if cls.kernel is not None:
            cls.kernel.kill()


#: cells that nbjobs or papermill add around the job's code: a kernel death in one of them is not the job's
WRAPPER_TAGS = frozenset({"injected-parameters", "nbjobs-parameters", "nbjobs-inputs"})


async def _ready(kc: Any, km: Any, timeout: float) -> None:
    """Wait until the kernel answers and our iopub subscription is live.  jupyter_client's
    ``wait_for_ready`` checks the same but waits 0.2 s for iopub after the first reply, which a
    fresh subscription misses (ZeroMQ's slow joiner): a warm kernel would spend 200 ms there."""
    from queue import Empty

    from jupyter_core.utils import ensure_async

    deadline = time.monotonic() + timeout
    while True:
        msg_id = kc.kernel_info()
        while True:
            try:
                reply = await ensure_async(kc.shell_channel.get_msg(timeout=1))
            except Empty:
                break
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                try:
                    await ensure_async(kc.iopub_channel.get_msg(timeout=0.02))
                    return
                except Empty:
                    break
        if not km.is_alive():
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")


def _engine(report: Report, kernel: Any, redact: Redactor | None = None, prepare: str | None = None):
    """papermill engine class of ours, registered as ``nbjobs``: papermill runs the notebook in
    ``kernel`` (a `nbjobs.kernels.Kernel` already started, warm or on demand), whose process is
    reported before anything else (so a stop can reach it); progress is reported per cell, and
    `_Stop.began` is set when the first cell of the job's own code starts.  ``prepare`` is the
    silent cell that moves a warm kernel into the job (see `nbjobs.kernels.prepare_code`).  A cell
    that runs past its timeout gets the error in its outputs, as a failing cell does."""
    import nbformat
    from jupyter_core.utils import ensure_async
    from nbclient.client import run_sync
    from nbclient.exceptions import CellTimeoutError
    from nbclient.util import run_hook
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines
    from papermill.log import logger

    class Manager(NotebookExecutionManager):
        last_save = None

        def save(self, **kwargs):
            # papermill saves before and after every cell; a job of quick cells would spend most of
            # its time writing the notebook.  Save at the start, then at most once a second while
            # cells run, and at the end (papermill writes the finished notebook once more itself).
            now = time.monotonic()
            if self.last_save is not None and now - self.last_save < SAVE_EVERY:
                return
            self.last_save = now
            if redact:  # a secret the job printed never reaches the output notebook
                for cell in self.nb.cells:
                    redact.deep(cell.get("outputs", []))
            super().save(**kwargs)

        def cell_start(self, cell, cell_index=None, **kwargs):
            if cell.get("cell_type") == "code" and not WRAPPER_TAGS & set(cell.get("metadata", {}).get("tags", [])):
                _Stop.began = True
            super().cell_start(cell, cell_index=cell_index, **kwargs)

        def notebook_complete(self, **kwargs):
            self.last_save = None  # papermill's own final save goes through
            super().notebook_complete(**kwargs)

        def cell_complete(self, cell, cell_index=None, **kwargs):
            super().cell_complete(cell, cell_index=cell_index, **kwargs)
            if cell.get("cell_type") == "code" and cell_index is not None:
                code = [i for i, c in enumerate(self.nb.cells) if c.get("cell_type") == "code"]
                report({"type": "progress", "done": code.index(cell_index) + 1, "total": len(code)})

    class Client(PapermillNotebookClient):
        async def async_start_new_kernel_client(self):
            # ours, already started (nbclient skipped async_start_new_kernel)
            _Stop.kernel = kernel.proc
            report({"type": "kernel", "pid": kernel.pid, "proc": kernel.proc.dump() if kernel.proc else None,
                    "warm": kernel.warm})
            if _Stop.requested:  # asked to stop while the kernel was starting
                _Stop.kill_kernel()
            self.kc = kc = self.km.client()
            await ensure_async(kc.start_channels())
            await _ready(kc, self.km, self.startup_timeout)
            kc.allow_stdin = False
            await run_hook(self.on_notebook_start, notebook=self.nb)
            if prepare:
                reply = await self.async_wait_for_reply(await ensure_async(
                    kc.execute(prepare, silent=True, store_history=False, allow_stdin=False)))
                if (reply or {}).get("content", {}).get("status") != "ok":
                    raise RuntimeError("the warm kernel could not be prepared for the job "
                                       f"({(reply or {}).get('content', {}).get('evalue', 'no reply')})")
            return kc

        # nbclient binds each sync wrapper to its own coroutine: rebind them to ours
        start_new_kernel_client = run_sync(async_start_new_kernel_client)

        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            try:
                return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
            except CellTimeoutError as exc:
                message = _ANSI.sub("", str(exc)).strip().splitlines()[0]
                cell.outputs.append(nbformat.v4.new_output(
                    "error", ename="CellTimeoutError", evalue=message, traceback=[f"CellTimeoutError: {message}"]))
                self.nb_man.cell_exception(cell, cell_index=cell_index, exception=exc)
                exc.cell_index = cell_index
                raise

        execute_cell = run_sync(async_execute_cell)

    class NbjobsEngine(NBClientEngine):
        @classmethod
        def execute_notebook(cls, nb, kernel_name, output_path=None, progress_bar=False, log_output=False,
                             autosave_cell_every=30, **kwargs):
            nb_man = Manager(nb, output_path=output_path, progress_bar=False, log_output=log_output,
                             autosave_cell_every=autosave_cell_every)
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            client = Client(nb_man, km=kernel.km, timeout=execution_timeout,
                            startup_timeout=start_timeout, kernel_name=kernel_name, log=logger,
                            log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
            try:
                return client.execute()
            finally:
                if client.kc is not None:  # nbclient leaves a kernel it does not own
                    client.kc.stop_channels()

    papermill_engines.register("nbjobs", NbjobsEngine)
    return "nbjobs"


def _versions() -> dict[str, str]:
    import papermill

    from . import __version__

    return {"nbjobs": __version__, "papermill": papermill.__version__, "python": sys.version.split()[0],
            "host": socket.gethostname(), "pid": str(os.getpid())}


#: how jupyter_client, nbclient, `_ready` and `run_attempt` say that a kernel did not come up
_KERNEL_NOT_STARTED = "the kernel could not be started"
_START_FAILURES = ("Kernel died before replying", "Kernel didn't respond", "the warm kernel could not be prepared",
                   _KERNEL_NOT_STARTED)


def _error_from(exc: BaseException, began: bool = True) -> tuple[str, dict[str, Any]]:
    """(outcome, error dict) for an exception raised while running the notebook; ``began``: whether
    a cell of the job's own code had started (a kernel lost before that is not the job's failure)."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        tb = _ANSI.sub("", "\n".join(exc.traceback or []))
        return "error", {"type": exc.ename, "message": _ANSI.sub("", str(exc.evalue)), "cell": exc.cell_index,
                         "traceback": tb}
    if isinstance(exc, CellTimeoutError):
        message = _ANSI.sub("", str(exc)).strip().splitlines()[0]
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
    With ``pool`` (a `nbjobs.kernels.KernelPool`), the kernel comes from the pool (warm, or
    started on demand); without it, one is started for the attempt.  Either way the job runs in a
    kernel no other job has used, killed once the outcome is reported.
    """
    from .kernels import prepare_code, start_kernel

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

        if kind == "cell":
            source: Any = build_cell_notebook(spec["source"], kernel_name, outputs=options.get("outputs") or (),
                                              inputs_dir=str(run_dir / outputs.INPUTS_DIR) if options.get("inputs") else None)
        else:
            source = str(spec["notebook"])
        cwd = spec.get("cwd")
        if _Stop.requested:  # before the attempt began (a runner host busy starting up)
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
        prepare = prepare_code(cwd or os.getcwd(), job_env) if kernel.warm else None
        engine = _engine(report, kernel, log.redact, prepare)
        papermill.execute_notebook(
            source, str(output_path), parameters=spec.get("parameters") or {}, engine_name=engine,
            kernel_name=kernel_name, cwd=cwd, progress_bar=False, stdout_file=log, stderr_file=log,
            execution_timeout=spec.get("cell_timeout"))
        done["outcome"] = "succeeded"
    except BaseException as exc:  # every failure becomes a recorded outcome
        if _Stop.requested:
            done["outcome"] = _Stop.outcome
            done["error"] = {"type": "Interrupted", "message": f"stopped: {_Stop.requested}"}
            if not isinstance(exc, KeyboardInterrupt):
                done["error"] = _error_from(exc)[1] | {"message": f"stopped: {_Stop.requested}"}
            if _Stop.outcome == "worker_lost":
                done["error"]["type"] = "WorkerLost"
        elif isinstance(exc, KeyboardInterrupt):
            done["outcome"], done["error"] = "interrupted", {"type": "KeyboardInterrupt", "message": "interrupted"}
        else:
            done["outcome"], done["error"] = _error_from(exc, _Stop.began)
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
        _Stop.finished = True
        if kernel is not None:
            kernel.sink = None
        log.close()
        if _Stop.requested:
            _Stop.kill_kernel()
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

    if _Stop.requested or _Stop.finished:
        return
    _Stop.requested, _Stop.outcome = reason, outcome
    token = _Stop.attempt
    interrupted = not now and _Stop.kernel is not None and _Stop.kernel.signal(signal.SIGINT)

    def escalate():
        if _Stop.finished or _Stop.attempt != token:
            return
        _Stop.kill_kernel()
        time.sleep(config.KILL_GRACE)
        if not _Stop.finished and _Stop.attempt == token:
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
        _Stop.requested = "the worker died"
        print(f"\n[nbjobs] the worker (pid {parent}) is gone; stopping this attempt", file=sys.stderr, flush=True)
        _Stop.kill_kernel()
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


def serve(pool_size: int = 1, kernels: list[str] | None = None, workdir: str | None = None) -> int:
    """``python -m nbjobs.runner --serve``: a runner host that runs attempts one after another,
    with papermill imported once and a warm `nbjobs.kernels.KernelPool` of its own.

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
    """
    import queue

    from .kernels import KernelPool

    pools: list[KernelPool] = []
    _watch_parent(_worker_pid(), on_exit=lambda: [p.kill_now() for p in pools])  # first: papermill takes a while
    os.umask(0o077)
    report = _channel()
    runs: queue.Queue = queue.Queue()
    current: list[tuple[str, int] | None] = [None]
    waiting: set[tuple[str, int]] = set()   # runs received, not begun
    dropped: set[tuple[str, int]] = set()   # runs stopped before they began: skip them
    sizes = [pool_size]
    fence_at = [float("inf")]  # when the running attempt's lease runs out
    renewed: dict[tuple[str, int], float] = {}  # renewals of runs received, not begun
    lock = threading.Lock()

    def read() -> None:
        for line in sys.stdin:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            op = msg.get("op")
            if op == "run":
                with lock:
                    waiting.add((msg["spec"]["job_id"], msg["spec"]["attempt"]))
                runs.put(msg["spec"])
            elif op == "stop":
                key, reason = (msg.get("job_id"), msg.get("attempt")), msg.get("reason") or "stop requested"
                with lock:
                    if current[0] == key:
                        request_stop(reason)
                    elif key in waiting:  # not begun (the host may still be starting up): it ends now
                        waiting.discard(key)
                        dropped.add(key)
                        report({"type": "done", "outcome": "interrupted", "outputs": [], "output_path": None,
                                "error": {"type": "Interrupted", "message": f"stopped before it began: {reason}"}})
            elif op == "lease":
                key, until = (msg.get("job_id"), msg.get("attempt")), float(msg.get("fence_at") or "inf")
                with lock:
                    if current[0] == key:
                        fence_at[0] = until
                    elif key in waiting:
                        renewed[key] = until
            elif op == "pool":
                with lock:
                    sizes[0] = int(msg.get("size", 0))
                    for p in pools:
                        p.resize(sizes[0])
        runs.put(None)

    def fence() -> None:
        while True:
            time.sleep(0.1)
            with lock:
                if current[0] is not None and time.time() >= fence_at[0]:
                    request_stop("its worker stopped renewing the lease (stopped, stuck or gone); the job runs "
                                 "again elsewhere", outcome="worker_lost", now=True)

    threading.Thread(target=read, daemon=True, name="nbjobs-host-control").start()
    threading.Thread(target=fence, daemon=True, name="nbjobs-host-fence").start()
    import papermill  # noqa: F401 - once per host, not once per job

    with lock:
        pool = KernelPool(kernels or ["python3"], size=sizes[0], workdir=workdir or os.getcwd(),
                          idle_retire=config.POOL_IDLE_RETIRE, max_memory=config.POOL_MAX_MEMORY,
                          on_change=lambda procs: report({"type": "pool", "procs": [p.dump() for p in procs]}))
        pools.append(pool)
    stderr = os.dup(2)
    while True:
        try:
            spec = runs.get()
            if spec is None:
                break
            with lock:
                key = (spec["job_id"], spec["attempt"])
                if key in dropped:
                    dropped.discard(key)
                    renewed.pop(key, None)
                    continue
                waiting.discard(key)
                _Stop.reset()
                current[0] = key
                fence_at[0] = max(float(spec.get("fence_at") or "inf"), renewed.pop(key, 0.0))
            log = attempt_dir(Path(spec["run_dir"]), spec["attempt"]) / "log.txt"
            config.make_private_dir(log.parent)
            fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.dup2(fd, 2), os.close(fd)  # what papermill or Python itself prints goes to the attempt log
            try:
                run_attempt(spec, report, pool)
            finally:
                with lock:
                    current[0] = None
                sys.stderr.flush()
                os.dup2(stderr, 2)
        except KeyboardInterrupt:  # a stop's last resort that arrived as the attempt ended
            continue
    pool.shutdown()
    return 0


if __name__ == "__main__":
    if "--serve" in sys.argv:
        import argparse

        ap = argparse.ArgumentParser(prog="python -m nbjobs.runner")
        ap.add_argument("--serve", action="store_true")
        ap.add_argument("--pool", type=int, default=1)
        ap.add_argument("--kernel", action="append", default=[])
        ap.add_argument("--workdir")
        a = ap.parse_args()
        sys.exit(serve(a.pool, a.kernel, a.workdir))
    sys.exit(main())
