"""Shared fixtures: a private NBJOBS_HOME per test and real worker processes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import nbjobs.store


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh nbjobs home for this test, set as NBJOBS_HOME (child processes inherit it)."""
    h = tmp_path / "home"
    monkeypatch.setenv("NBJOBS_HOME", str(h))
    monkeypatch.chdir(tmp_path)
    yield h
    nbjobs.store._local.__dict__.get("stores", {}).clear()


@pytest.fixture
def store(home) -> nbjobs.store.Store:
    """The home's store (a real SQLite file), closed after the test."""
    s = nbjobs.store.Store(home / "nbjobs.db")
    yield s
    s.close()


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
    """A real `nbjobs worker` process for ``home``; waits until it has registered."""
    full_env = dict(os.environ, NBJOBS_HOME=str(home), **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "nbjobs", "worker", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store = nbjobs.store.Store(home / "nbjobs.db")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(w["pid"] == proc.pid for w in store.live_workers()):
            break
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited early: {proc.stdout.read()}")
        time.sleep(0.05)
    store.close()
    return proc


def stop_worker(proc: subprocess.Popen, timeout: float = 30) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read() if proc.stdout else ""


@pytest.fixture
def worker(home):
    """One real worker process (concurrency 2) running for the whole test."""
    proc = start_worker(home, "--concurrency", "2", "--grace", "5")
    yield proc
    stop_worker(proc)


def write_notebook(path: Path, cells: list[str], parameters: str | None = None, kernel: str = "python3") -> Path:
    """Write a minimal nbformat-4 notebook with code ``cells`` (and a tagged parameters cell first)."""
    nb_cells = []
    if parameters is not None:
        nb_cells.append({"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None,
                         "outputs": [], "source": parameters})
    for src in cells:
        nb_cells.append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                         "source": src})
    nb = {"cells": nb_cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": kernel, "display_name": kernel, "language": "python"},
                       "language_info": {"name": "python"}}}
    path.write_text(json.dumps(nb))
    return path
