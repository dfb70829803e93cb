"""Attempts on a Dask distributed cluster.  SQLite stays on the head node; the cluster only executes.

The head-node worker claims from SQLite as usual and hands each attempt to `DaskExecutor.start`,
which submits `run_remote` as one Dask task (with the job's Dask ``resources``, so Dask places it
on a worker that declared them).  On a Dask worker that task runs the attempt in a warm runner
host (``python -m nbjobs.runner --serve``) that the nbjobs worker plugin keeps there
(`nbjobs.executors.dask_plugin.RunnerHosts`, registered through the client when the executor
starts: one host per worker thread, with warm kernels), in a private temporary folder (`_Remote`,
in phases: claim the start token, prepare the folder, start the attempt in a host, follow it,
collect), so a Dask worker needs nbjobs installed and nothing else: no access to ``NBJOBS_HOME``,
the notebook or the submitting folder.  What the runner needs from the head node travels inside
the task (the notebook's text, a cell job's inputs); what it produces travels back:

* the runner's events (``started``, ``kernel``, ``progress``) and the log's new bytes, while the
  job runs, as Dask structured events (``Worker.log_event`` -> ``Client.subscribe_topic``), so
  the panel's progress bars and ``nbjobs logs -f`` work for remote jobs;
* at the end, the attempt folder's files (``output.ipynb``, ``outputs/...``) up to `SHIP_LIMIT`
  bytes in all: with the events when they are small (up to `LOG_CHUNK` with the log's rest: the
  head records the end as soon as it arrives), else as the task's result.  Files that do not fit go to the shared
  ``storage`` URL when one is given (any URL fsspec understands: ``s3://``, ``gs://``,
  ``abfs://``, a path on a shared mount...) and the head node copies them into the run folder;
  without one they are listed in the attempt's log as not shipped.

The head writes everything into ``runs/<job id>/<attempt>/`` before it reports ``done`` and
``exit``, so `nbjobs.result` and the output notebook work as for local jobs.

Control: `stop` sets the attempt's ``stop`` Dask Event; the task polls it every 0.2 s and tells
the runner host to stop the attempt (it interrupts, then kills the kernel).  `kill` sets ``kill``
too (the kernel and its host are killed; the next attempt gets a new host) and cancels the
future.  A task whose future was released (the head-node worker died, or gave up on it) stops its
attempt too, so an abandoned attempt does not run on beside the retry.

A Dask worker that dies mid-job: the head notices its address leaving the cluster (or the
task's error) and reports the attempt as ``worker_lost``, so the job is retried by its policy.
Dask may re-run the task elsewhere on its own; each attempt carries a one-item start token in a
Dask Queue and a second run finds it taken and refuses to start, so an attempt never runs twice.

``import nbjobs`` never imports this module or Dask.
"""
from __future__ import annotations

import os
import queue
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..config import make_private_dir
from ..errors import BadInput
from . import Executor, Handle, Report

#: bytes of files shipped back with one attempt's result (``NBJOBS_DASK_SHIP_LIMIT``)
SHIP_LIMIT = int(os.environ.get("NBJOBS_DASK_SHIP_LIMIT", str(64 * 1024 * 1024)))
#: seconds between two polls of the control variable (and log shipments) inside the task
POLL = 0.2
#: seconds between two log shipments while the job runs, and the most bytes in one (the scheduler keeps
#: the last 1000 events of the executor's topic, so this bounds what it holds; the rest follows)
LOG_EVERY = 0.5
LOG_CHUNK = 64 * 1024
#: seconds to wait for a scheduler before saying it cannot be reached
CONNECT_TIMEOUT = float(os.environ.get("NBJOBS_DASK_CONNECT_TIMEOUT", "10"))
MISSING_EXTRA = "the dask executor needs the dask extra: pip install 'nbjobs[dask]'"


def _distributed():
    try:
        import distributed
    except ImportError:
        raise BadInput(MISSING_EXTRA) from None
    return distributed


# --- on the Dask worker ----------------------------------------------------------------------------------
def _put(dest: str, data_path: Path) -> None:
    import fsspec

    with open(data_path, "rb") as src, fsspec.open(dest, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)


def run_remote(spec: dict[str, Any], topic: str, key: str, ship_limit: int, storage: str | None,
               hosts: str = "nbjobs-hosts") -> dict[str, Any]:
    """The Dask task: run one attempt in a warm runner host of this Dask worker (the ``hosts``
    plugin, `nbjobs.executors.dask_plugin.RunnerHosts`), in a temporary folder.

    Streams events to ``topic`` as ``{"key", "event"}`` and returns the runner's ``done`` event
    and the attempt's files (see the module's docstring).  Needs only nbjobs importable here.
    """
    remote = _Remote(spec, topic, key)
    if not remote.claim():
        return dict(remote.me, refused=True)
    remote.send({"type": "_hello", **remote.me})
    tmp = Path(tempfile.mkdtemp(prefix="nbjobs-dask-"))
    try:
        remote.start(hosts, remote.prepare(tmp))
        remote.follow()
        result = remote.collect(ship_limit, storage)
        if sum(map(len, result["files"].values())) + len(result["log_tail"]) <= LOG_CHUNK:
            # small (a typical job): it travels with the events, so the head records the end without
            # waiting for the task's end to reach it and fetching the result (two round trips less)
            remote.send({"type": "_result", "result": result})
            return dict(remote.me, shipped=True)
        return result
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


class _Remote:
    """One attempt inside its Dask task, in the phases of `run_remote`: `claim` the start token,
    `prepare` the folder, `start` the attempt in a runner host of this Dask worker (its events go
    to the head as they come), `follow` it to its end (stop and kill requests, the log's new bytes),
    `collect` the result and files."""

    def __init__(self, spec: dict[str, Any], topic: str, key: str):
        from distributed import get_client, get_worker

        self.spec, self.topic, self.key = spec, topic, key
        self.worker = get_worker()
        self.client = get_client()
        self.me = {"worker": self.worker.address, "host": socket.gethostname()}
        self.stop_event: Any = None                # the attempt's Dask Events, once claimed
        self.kill_event: Any = None
        self.task_key: Any = None                  # this task, to notice the head dropping it
        self.adir = self.log_path = Path()         # the attempt's folder and its log, once prepared
        self.hosts: Any = None                     # this Dask worker's `LocalExecutor` of runner hosts
        self.handle: Any = None                    # the attempt in its host
        self.started: dict | None = None           # the runner's ``started`` event
        self.done: dict | None = None              # the runner's ``done`` event (returned, not sent)
        self.returncode: int | None = None
        self.over = threading.Event()              # the host reported the attempt's end (``exit``)
        self.sent = 0                              # bytes of the log shipped so far

    def send(self, event: dict) -> None:
        """An event to the head node, through the executor's topic."""
        self.worker.log_event(self.topic, {"key": self.key, "event": event})

    def claim(self) -> bool:
        """Take the attempt's one start token: a re-run of this task (its first worker died) finds none.
        One call to the scheduler's queue (the head created it): no Queue object, no second round trip."""
        from distributed import Event

        try:
            self.client.sync(self.client.scheduler.queue_get, name=_token(self.key), timeout=2)
        except Exception:
            return False
        self.stop_event = Event(f"nbjobs-stop-{self.key}", client=self.client)
        self.kill_event = Event(f"nbjobs-kill-{self.key}", client=self.client)
        self.task_key = self.worker.get_current_task()
        return True

    def prepare(self, tmp: Path) -> dict[str, Any]:
        """The attempt's folder in ``tmp``, with what the head shipped; the runner's spec for it."""
        spec = self.spec
        rspec = {k: v for k, v in spec.items() if k not in ("_ship", "fence_at", "resources")}
        # no fence: the head's lease clock is not this machine's; a head that goes away releases the
        # task's future instead, and `_control` stops the attempt
        ship = spec.get("_ship") or {}
        run_dir = tmp / "run"
        rspec["run_dir"] = str(run_dir)
        self.adir = make_private_dir(run_dir / str(spec["attempt"]))
        self.log_path = self.adir / "log.txt"
        if ship.get("notebook") is not None:  # the notebook's text, read on the head node
            nb_path = tmp / Path(spec["notebook"]).name
            nb_path.write_text(ship["notebook"], encoding="utf-8")
            rspec["notebook"] = str(nb_path)
        for rel, data in (ship.get("inputs") or {}).items():  # a cell job's inputs folder
            path = run_dir / "inputs" / rel
            make_private_dir(path.parent)
            path.write_bytes(data)
        if not (spec.get("cwd") and Path(spec["cwd"]).is_dir()):
            rspec["cwd"] = str(tmp)
        return rspec

    def start(self, hosts: str, rspec: dict[str, Any]) -> None:
        """Hand ``rspec`` to an idle runner host of this Dask worker; its events reach `_on_event`."""
        from .dask_plugin import hosts_on

        self.hosts = hosts_on(self.worker, hosts)
        self.handle = self.hosts.start(rspec, self._on_event)

    def _on_event(self, event: dict) -> None:
        """The host's events to the head, as they come; ``done`` is kept for the result, ``exit`` ends it."""
        kind = event.get("type")
        if kind == "done":
            self.done = event  # comes back with the files, in the result
            return
        if kind == "exit":
            self.returncode = event.get("returncode")
            self.over.set()
            return
        if kind == "started":
            self.started = event
        self.send(event)

    def follow(self) -> None:
        """Until the attempt is over: pass on stop and kill requests, ship the log's new bytes."""
        signalled: str | None = None
        last_log = 0.0
        while not self.over.wait(POLL):  # returns as soon as the attempt ends
            signalled = self._control(signalled)
            now = time.monotonic()
            if now - last_log >= LOG_EVERY:
                last_log = now
                self.ship_log()

    def _control(self, signalled: str | None) -> str | None:
        """Stop or kill the attempt if the head asked (or dropped it); what was done so far."""
        wanted = None
        if signalled != "kill":
            try:
                if self.stop_event.is_set():
                    wanted = "kill" if self.kill_event.is_set() else "stop"
            except Exception:  # the scheduler is busy or gone: ask again next time
                pass
        ts = self.worker.state.tasks.get(self.task_key) if self.task_key is not None else None
        if wanted is None and (ts is None or ts.state in ("cancelled", "released", "forgotten")):
            wanted = "stop"  # the head dropped this attempt (it died or cancelled): do not run on alone
        if wanted == "kill" and signalled != "kill":
            self.hosts.kill(self.handle)  # its kernel and its host (the next attempt gets a new one)
            return "kill"
        if wanted == "stop" and signalled is None:
            self.hosts.stop(self.handle)  # interrupt, then kill the kernel after a grace period
            return "stop"
        return signalled

    def ship_log(self, final: bool = False) -> bytes:
        """Send the log's next bytes (at most `LOG_CHUNK`) to the head; ``final``: return all the
        rest instead, for the result."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.sent)
                data = f.read() if final else f.read(LOG_CHUNK)
        except OSError:
            return b""
        if data and not final:  # raw bytes at their offset: the head writes them where they belong
            self.send({"type": "_log", "offset": self.sent, "data": data})
            self.sent += len(data)
        return data

    def collect(self, ship_limit: int, storage: str | None) -> dict[str, Any]:
        """The task's result: the runner's end, the log's rest, and the attempt's files up to
        ``ship_limit`` bytes; the others written to ``storage`` if given, else listed as skipped."""
        result = dict(self.me, returncode=self.returncode, done=self.done, started=self.started,
                      log_offset=self.sent, log_tail=self.ship_log(final=True), files={}, stored={}, skipped={})
        budget = ship_limit
        for path in sorted(self.adir.rglob("*")):
            if not path.is_file() or path == self.log_path:
                continue
            rel = path.relative_to(self.adir).as_posix()
            size = path.stat().st_size
            if size <= budget:
                result["files"][rel] = path.read_bytes()
                budget -= size
            elif storage:
                url = f"{storage.rstrip('/')}/{self.spec['job_id']}/{self.spec['attempt']}/{rel}"
                try:
                    _put(url, path)
                    result["stored"][rel] = url
                except Exception as exc:
                    result["skipped"][rel] = f"{size} bytes; writing it to {url} failed: {exc}"
            else:
                result["skipped"][rel] = f"{size} bytes, over the ship limit of {ship_limit} bytes"
        return result


# --- on the head node ------------------------------------------------------------------------------------
class DaskHandle(Handle):
    def __init__(self, spec: dict[str, Any], key: str):
        super().__init__(spec)
        self.key = key
        self.future: Any = None
        self.events: queue.Queue[dict] = queue.Queue()
        self.worker: str | None = None   # the Dask worker's address, once the task started
        self.host: str | None = None
        self.killed = False
        #: runs/<job id>/<attempt>/ on the head node: where the log, output notebook and outputs land
        self.head_dir = make_private_dir(Path(spec["run_dir"]) / str(spec["attempt"]))


class DaskExecutor(Executor):
    """Runs attempts as tasks on a Dask cluster.

    ``scheduler``: the scheduler's address (``tcp://host:8786``); None starts a `LocalCluster`
    of worker processes sized to this machine (``n_workers``, one thread each).  ``client``: an
    existing `distributed.Client` to use instead.  ``ship_limit``: bytes of result files shipped
    back per attempt; ``storage``: a shared URL for the files over it.  ``pool``: warm kernels per
    Dask worker (default: one per worker thread; 0: each job's kernel starts with the job) and
    ``kernels``, the kernel names kept warm, ``mode`` (the kernel path: ``fork``, ``pool``,
    ``cold``) and ``preload``, for the runner hosts plugin (`nbjobs.executors.dask_plugin`),
    registered on the cluster here.

    >>> ex = DaskExecutor("tcp://127.0.0.1:8786")  # doctest: +SKIP
    """

    name = "dask"

    def __init__(self, scheduler: str | None = None, *, client: Any = None, n_workers: int | None = None,
                 ship_limit: int | None = None, storage: str | None = None, pool: int | None = None,
                 kernels: list[str] | None = None, mode: str = "pool", preload: list[str] | None = None):
        distributed = _distributed()
        self.cluster = None
        self._own_client = client is None
        if client is None:
            if scheduler:
                client = _connect(distributed, scheduler)
            else:
                import logging

                logging.getLogger("distributed").setLevel(logging.WARNING)
                self.cluster = distributed.LocalCluster(n_workers=n_workers or os.cpu_count() or 1,
                                                        threads_per_worker=1, processes=True,
                                                        dashboard_address=":0")
                client = distributed.Client(self.cluster)
        self.client = client
        self.ship_limit = SHIP_LIMIT if ship_limit is None else int(ship_limit)
        self.storage = storage or os.environ.get("NBJOBS_DASK_STORAGE") or None
        self.topic = f"nbjobs-events-{uuid.uuid4().hex[:12]}"
        self.handles: dict[str, DaskHandle] = {}
        self._lock = threading.Lock()
        self._alive: tuple[float, set[str]] = (0.0, set())
        self._offers: tuple[float, list[dict[str, float]]] = (-1e9, [])
        client.subscribe_topic(self.topic, self._on_event)
        from .dask_plugin import register

        self.mode, self.preload = mode, list(preload or [])
        self.hosts = register(client, pool, kernels, mode, self.preload)  # on every Dask worker, now and when one joins
        try:
            self.dashboard_link: str | None = client.dashboard_link
        except Exception:
            self.dashboard_link = None

    @property
    def description(self) -> str:
        """What the worker registers as its executor: ``dask`` and the dashboard link."""
        return f"dask@{self.dashboard_link}" if self.dashboard_link else "dask"

    @property
    def slots(self) -> int:
        """Threads in the cluster: how many attempts can run at once."""
        workers = self.client.scheduler_info().get("workers", {})
        return max(1, sum(w.get("nthreads", 1) for w in workers.values()))

    def offers(self) -> list[dict[str, float]]:
        """Each Dask worker's declared resources (``dask worker --resources GPU=1``), asked of the
        scheduler at most every 2 s; when it cannot be asked, the last answer."""
        at, offers = self._offers
        if time.monotonic() - at > 2.0:
            try:
                workers = self.client.scheduler_info().get("workers", {})
                offers = [{k: float(v) for k, v in (w.get("resources") or {}).items()} for w in workers.values()]
            except Exception:  # noqa: BLE001 - the scheduler is busy or gone: keep the last answer
                pass
            self._offers = (time.monotonic(), offers)
        return offers

    # --- events from the tasks (on the client's event loop: hand them over, never block) ---
    def _on_event(self, event: Any) -> None:
        msg = event[1] if isinstance(event, tuple) else event
        handle = self.handles.get(msg.get("key")) if isinstance(msg, dict) else None
        if handle is not None:
            handle.events.put(msg["event"])

    # --- the executor interface ---
    def start(self, spec: dict[str, Any], report: Report) -> DaskHandle:
        key = f"{spec['job_id']}-{spec['attempt']}-{uuid.uuid4().hex[:6]}"
        handle = DaskHandle(spec, key)
        ship: dict[str, Any] = {}
        if spec.get("kind") == "notebook" and spec.get("notebook"):
            try:
                ship["notebook"] = Path(spec["notebook"]).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                ship["notebook"] = None  # the runner reports it as unreadable
        inputs = Path(spec["run_dir"]) / "inputs"
        if (spec.get("options") or {}).get("inputs") and inputs.is_dir():
            ship["inputs"] = {p.relative_to(inputs).as_posix(): p.read_bytes() for p in inputs.rglob("*") if p.is_file()}
        if spec.get("resources"):  # until a Dask worker with them starts it (first: before its events)
            handle.events.put({"type": "placing"})
        with self._lock:
            self.handles[key] = handle
        self.client.sync(_put_token, self.client, key)  # the task takes it before it starts the attempt
        handle.future = self.client.submit(run_remote, dict(spec, _ship=ship), self.topic, key, self.ship_limit,
                                           self.storage, self.hosts, key=f"nbjobs-{key}", pure=False, retries=0,
                                           resources=spec.get("resources") or None)
        handle.future.add_done_callback(lambda _f: handle.events.put({"type": "_finished"}))  # wake _follow
        threading.Thread(target=self._follow, args=(handle, report), daemon=True,
                         name=f"nbjobs-dask-{handle.job_id[:8]}").start()
        return handle

    def _control(self, handle: DaskHandle, kill: bool = False) -> None:
        distributed = _distributed()
        try:
            if kill:
                distributed.Event(f"nbjobs-kill-{handle.key}", client=self.client).set()
            distributed.Event(f"nbjobs-stop-{handle.key}", client=self.client).set()
        except Exception:
            pass  # the scheduler is gone: the task notices its future is released and stops

    def stop(self, handle: DaskHandle) -> None:
        self._control(handle)

    def kill(self, handle: DaskHandle) -> None:
        handle.killed = True
        self._control(handle, kill=True)
        if handle.future is not None:
            handle.future.cancel()

    def shutdown(self) -> None:
        try:
            self.client.unsubscribe_topic(self.topic)
        except Exception:  # noqa: BLE001 - the scheduler is gone already: nothing left to unsubscribe from
            pass
        if self._own_client:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    # --- one thread per attempt: events, liveness of its Dask worker, the end ---
    def _follow(self, handle: DaskHandle, report: Report) -> None:
        seen_started = False
        last_check = time.monotonic()
        lost: str | None = None
        try:
            while True:
                try:
                    event = handle.events.get(timeout=0.5)
                except queue.Empty:
                    event = None
                if event is not None and event.get("type") == "_result":  # the end, with the events
                    self._complete(handle, report, event["result"], seen_started)
                    return
                if event is not None and event.get("type") != "_finished":
                    seen_started |= self._event(handle, event, report)
                    continue
                if handle.future.done():
                    break
                if handle.worker and time.monotonic() - last_check > 1.0:
                    last_check = time.monotonic()
                    if not self._worker_alive(handle.worker):
                        lost = handle.worker
                        break
            while not handle.events.empty():
                event = handle.events.get()
                if event.get("type") == "_result":
                    self._complete(handle, report, event["result"], seen_started)
                    return
                seen_started |= self._event(handle, event, report)
            self._end(handle, report, lost, seen_started)
        except Exception as exc:  # never leave the worker waiting for an exit that will not come
            report({"type": "done", "outcome": "runner_died",
                    "error": {"type": type(exc).__name__, "message": f"the dask executor failed: {exc}"}})
            report({"type": "exit", "returncode": None})
        finally:
            with self._lock:
                self.handles.pop(handle.key, None)
            self._cleanup(handle)

    def _worker_alive(self, address: str) -> bool:
        """Is the Dask worker at ``address`` still in the cluster?  One scheduler query a second
        for all attempts; when the scheduler cannot be asked, yes (the future will tell)."""
        with self._lock:
            at, workers = self._alive
            if time.monotonic() - at > 1.0:
                try:
                    workers = set(self.client.scheduler_info().get("workers", {}))
                except Exception:
                    return True
                self._alive = (time.monotonic(), workers)
        return address in workers

    def _cleanup(self, handle: DaskHandle) -> None:
        distributed = _distributed()
        try:
            for what in ("stop", "kill"):
                distributed.Event(f"nbjobs-{what}-{handle.key}", client=self.client).clear()
            self.client._send_to_scheduler({"op": "queue_release", "name": _token(handle.key)})  # frees it
        except Exception:
            pass  # the scheduler is gone, and with it these

    def _paths(self, handle: DaskHandle) -> dict[str, str]:
        return {"output_path": str(handle.head_dir / "output.ipynb"), "log_path": str(handle.head_dir / "log.txt")}

    def _started(self, handle: DaskHandle, event: dict) -> dict:
        event = dict(event, **self._paths(handle))
        versions = dict(event.get("versions") or {})
        versions.update(executor="dask", dask_worker=handle.worker or "")
        event["versions"] = versions
        if versions.get("host"):
            event["host"] = versions["host"]
        return event

    def _event(self, handle: DaskHandle, event: dict, report: Report) -> bool:
        kind = event.get("type")
        if kind == "_hello":
            handle.worker, handle.host = event.get("worker"), event.get("host")
        elif kind == "_log":
            self._write_log(handle, event["offset"], event["data"])
        elif kind == "started":
            report(self._started(handle, event))
            return True
        elif kind == "kernel":
            handle.kernel_pid = event.get("pid")  # a pid on the Dask worker's machine, for information
            report(event)
        elif kind in ("began", "progress", "placing"):
            report(event)
        return False

    def _write_log(self, handle: DaskHandle, offset: int, data: bytes) -> None:
        path = handle.head_dir / "log.txt"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def _note(self, handle: DaskHandle, text: str) -> None:
        with open(handle.head_dir / "log.txt", "a", opener=lambda p, f: os.open(p, f, 0o600)) as f:
            f.write(f"\n[nbjobs] {text}\n")

    def _end(self, handle: DaskHandle, report: Report, lost: str | None, seen_started: bool) -> None:
        distributed = _distributed()
        result = None
        if lost is None:
            try:
                result = handle.future.result()
            except distributed.CancelledError:
                pass
            except Exception as exc:
                name = type(exc).__name__
                if name == "KilledWorker" or "worker" in str(exc).lower() and "lost" in str(exc).lower():
                    lost = handle.worker or "?"
                else:
                    report({"type": "done", "outcome": "runner_died", "error": {
                        "type": name, "message": f"the Dask task failed: {exc} (is nbjobs installed on the "
                                                 "Dask workers?)"}})
                    report({"type": "exit", "returncode": None})
                    return
        if result is not None and result.get("refused"):
            lost = handle.worker or "?"
        if lost is not None:
            self._control(handle)
            handle.future.cancel()
            message = f"the Dask worker {lost} running it left the cluster (it died or was stopped)"
            self._note(handle, message)
            report({"type": "done", "outcome": "worker_lost", "error": {"type": "WorkerLost", "message": message}})
            report({"type": "exit", "returncode": None})
            return
        if result is not None and result.get("shipped"):  # its ``_result`` event is on the way
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    event = handle.events.get(timeout=0.1)
                except queue.Empty:
                    continue
                if event.get("type") == "_result":
                    self._complete(handle, report, event["result"], seen_started)
                    return
                seen_started |= self._event(handle, event, report)
            result = None  # lost on the way: no outcome to report (the worker records runner_died)
        if result is None:  # cancelled after a kill
            report({"type": "exit", "returncode": None})
            return
        self._complete(handle, report, result, seen_started)

    def _complete(self, handle: DaskHandle, report: Report, result: dict, seen_started: bool) -> None:
        """Record an attempt's result from its Dask worker: the log's rest, the files, ``done``, ``exit``."""
        handle.worker = handle.worker or result.get("worker")
        self._write_log(handle, result.get("log_offset", 0), result.get("log_tail") or b"")
        for rel, data in result["files"].items():
            path = handle.head_dir / rel
            make_private_dir(path.parent)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        for rel, url in result["stored"].items():
            try:
                import fsspec

                make_private_dir((handle.head_dir / rel).parent)
                with fsspec.open(url, "rb") as src, open(handle.head_dir / rel, "wb",
                                                          opener=lambda p, f: os.open(p, f, 0o600)) as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
                self._note(handle, f"{rel} came through the shared storage {url}")
            except Exception as exc:
                self._note(handle, f"{rel} is at {url} but could not be copied here: {exc}")
        for rel, why in result["skipped"].items():
            self._note(handle, f"{rel} was not shipped back from the Dask worker ({why}); "
                               "raise NBJOBS_DASK_SHIP_LIMIT or give a shared storage URL")
        if not seen_started and result.get("started"):
            report(self._started(handle, result["started"]))
        done = result.get("done")
        if done is not None:
            done = dict(done)
            out = handle.head_dir / "output.ipynb"
            done["output_path"] = str(out) if out.exists() else None
            report(done)
        report({"type": "exit", "returncode": result.get("returncode")})


def _token(key: str) -> str:
    """The name of an attempt's start token queue on the scheduler."""
    return f"nbjobs-start-{key}"


async def _put_token(client: Any, key: str) -> None:
    """Create the attempt's start token queue and put its one token in, in one hop from the caller's thread."""
    await client.scheduler.queue_create(name=_token(key), maxsize=0)
    await client.scheduler.queue_put(name=_token(key), data=1, timeout=None)


def _connect(distributed, address: str):
    """A Client for ``address``, or one clear line saying it cannot be reached."""
    import logging

    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInput(f"cannot reach the Dask scheduler at {address} ({why[:200]}); check the address "
                       "(tcp://HOST:8786) and that `dask scheduler` runs there") from None
    finally:
        logging.getLogger("distributed").setLevel(logging.WARNING)
