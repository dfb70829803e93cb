"""An in-process IPython shell with nbjobs loaded, as a notebook's kernel has it."""
from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

import nbjobs.store


def new_shell() -> InteractiveShell:
    """A fresh in-process IPython (what a kernel restart gives), with nbjobs loaded."""
    InteractiveShell.clear_instance()
    nbjobs.store._local.__dict__.get("stores", {}).clear()  # no SQLite connection survives a restart
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "nbjobs")
    return shell


@pytest.fixture
def shell(home, tmp_path, monkeypatch):
    """`new_shell` for the test's home (its IPYTHONDIR under ``tmp_path``); cleared afterwards."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    sh = new_shell()
    yield sh
    from nbjobs import panel  # loaded by the test's receipts anyway; not at collection

    panel.unwatch_all()
    InteractiveShell.clear_instance()


def run(shell: InteractiveShell, source: str):
    """Run a cell as a notebook would (history on, so `_` is the cell's value); return its result."""
    return shell.run_cell(source, store_history=True)


def ok(shell: InteractiveShell, source: str):
    """`run` a cell that must succeed; returns its value."""
    result = run(shell, source)
    result.raise_error()
    return result.result
