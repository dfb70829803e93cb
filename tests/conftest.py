"""Shared fixtures: a private NBJOBS_HOME per test and real worker processes.

Helpers live in ``tests/support/`` (test modules import them from there, never from each other);
the fixtures defined there are re-exported here so pytest finds them.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import nbjobs.store
from support.procs import start_worker, stop_worker
from support.shell import shell  # noqa: F401  (the fixture, for every test module)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh nbjobs home for this test, set as NBJOBS_HOME (child processes inherit it)."""
    h = tmp_path / "home"
    monkeypatch.setenv("NBJOBS_HOME", str(h))
    monkeypatch.chdir(tmp_path)
    yield h
    nbjobs.store._local.__dict__.get("stores", {}).clear()
    stop_autostarted(h)


def stop_autostarted(home: Path) -> None:
    """Stop the workers nbjobs started on its own for this test's home (``--autostarted``; one may
    still be starting).  They would otherwise idle for 15 minutes, with their runner hosts and
    kernels, through the rest of the run."""
    import signal

    from nbjobs.procs import Proc, workers_starting
    from support.procs import wait_for

    procs = [p for p in map(Proc.of, workers_starting(home, autostarted=True)) if p is not None]
    for p in procs:
        p.signal(signal.SIGTERM)
    wait_for(lambda: not any(p.alive() for p in procs), 30, "the autostarted workers to stop")


@pytest.fixture
def store(home) -> nbjobs.store.Store:
    """The home's store (a real SQLite file), closed after the test."""
    s = nbjobs.store.Store(home / "nbjobs.db")
    yield s
    s.close()


@pytest.fixture
def worker(home):
    """One real worker process (concurrency 2) running for the whole test."""
    proc = start_worker(home, "--concurrency", "2", "--grace", "5")
    yield proc
    stop_worker(proc)
