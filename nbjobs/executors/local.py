"""Attempts as local processes: one ``python -m nbjobs.runner`` per attempt, in its own session,
its events read from a pipe by a small thread."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from ..config import make_private_dir
from ..runner import WORKER_PID_ENV, attempt_dir
from . import Executor, Handle, Report


class LocalHandle(Handle):
    def __init__(self, spec: dict[str, Any], proc: subprocess.Popen):
        super().__init__(spec)
        self.proc = proc


class LocalExecutor(Executor):
    name = "local"

    def start(self, spec: dict[str, Any], report: Report) -> LocalHandle:
        adir = make_private_dir(attempt_dir(Path(spec["run_dir"]), spec["attempt"]))
        log = open(adir / "log.txt", "ab", opener=lambda p, f: os.open(p, f, 0o600))
        try:
            proc = subprocess.Popen([sys.executable, "-m", "nbjobs.runner"], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=log, start_new_session=True,
                                    env=dict(os.environ, **{WORKER_PID_ENV: str(os.getpid())}))
        finally:
            log.close()
        handle = LocalHandle(spec, proc)
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
        threading.Thread(target=self._pump, args=(handle, report), daemon=True,
                         name=f"nbjobs-pump-{handle.job_id[:8]}").start()
        return handle

    @staticmethod
    def _pump(handle: LocalHandle, report: Report) -> None:
        for line in handle.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue  # a stray line is not an event; the runner's own output goes to the log
            if event.get("type") == "kernel":
                handle.kernel_pid = event.get("pid")
            report(event)
        report({"type": "exit", "returncode": handle.proc.wait()})

    def stop(self, handle: LocalHandle) -> None:
        if handle.proc.poll() is None:
            handle.proc.send_signal(signal.SIGTERM)

    def kill(self, handle: LocalHandle) -> None:
        for pid in (handle.kernel_pid, handle.proc.pid):
            if not pid:
                continue
            try:
                os.killpg(os.getpgid(pid), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                continue
