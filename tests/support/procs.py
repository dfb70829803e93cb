"""Real worker processes for a test's home, and `wait_for`: wait on a condition, never a fixed sleep."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbjobs.store


def wait_for(pred, timeout: float, what: str, every: float = 0.05):
    """Poll ``pred`` until it returns something truthy (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:  # the condition is checked at least once, even with no time left
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def start_worker(home: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """A real `nbjobs worker` process for ``home``; returns once it has registered."""
    full_env = dict(os.environ, NBJOBS_HOME=str(home), **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "worker", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store = nbjobs.store.Store(home / "nbjobs.db")
    try:
        def registered() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited early: {proc.stdout.read()}")
            return any(w["pid"] == proc.pid for w in store.live_workers())
        wait_for(registered, 30, f"worker {proc.pid} to register")
    finally:
        store.close()
    return proc


def stop_worker(proc: subprocess.Popen, timeout: float = 30) -> str:
    """SIGTERM ``proc`` (SIGKILL if it is still there after ``timeout`` s); returns its output."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""
