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
