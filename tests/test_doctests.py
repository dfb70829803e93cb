"""The examples in nbjobs' docstrings run as tests, one test per module that has any.

``python -m pytest`` runs them (so CI does).  Each module's examples run in a private home: NBJOBS_HOME
and the working directory are the test's temporary folders, and so is ``tempfile``'s folder
(``tempfile.mkdtemp()`` in an example lands under the test's ``tmp_path``); the environment is
restored afterwards (an example may set a variable).  ``nbjobs`` is defined in every example, as
in a user's session.  Examples that need a running worker, a kernel
or a notebook front end are marked ``# doctest: +SKIP`` where they are written.
"""
from __future__ import annotations

import builtins
import doctest
import importlib
import io
import os
import pkgutil
import tempfile
from pathlib import Path

import pytest

import nbjobs

#: modules that cannot be imported to be searched: ``python -m nbjobs`` runs the CLI on import
NOT_IMPORTED = {"nbjobs.__main__"}


def _modules_with_examples() -> list[str]:
    """Every nbjobs module whose source has a ``>>>`` line (read as text: nothing is imported here)."""
    found = []
    for info in pkgutil.walk_packages(nbjobs.__path__, "nbjobs."):
        if info.name in NOT_IMPORTED:
            continue
        spec = info.module_finder.find_spec(info.name)
        if spec and spec.origin and ">>> " in Path(spec.origin).read_text(encoding="utf-8"):
            found.append(info.name)
    return sorted(found)


MODULES = _modules_with_examples()


def test_the_examples_are_found():
    """The discovery works: the modules known to carry examples are in the list."""
    assert {"nbjobs.job", "nbjobs.policy", "nbjobs.schedule", "nbjobs.outputs"} <= set(MODULES), MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, home, tmp_path, monkeypatch):
    module = importlib.import_module(name)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = io.StringIO()
    environ = dict(os.environ)
    try:
        examples = finder.find(module, name, extraglobs={"nbjobs": nbjobs})  # examples say nbjobs.X
        for test in examples:
            runner.run(test, out=report.write)
    finally:
        os.environ.clear()
        os.environ.update(environ)
        builtins.__dict__.pop("_", None)  # the plain displayhook set it; an IPython shell made later would not
    assert sum(len(t.examples) for t in examples) > 0, f"{name} has '>>> ' lines but no docstring example"
    assert runner.failures == 0, f"{runner.failures} of {runner.tries} examples failed in {name}:\n{report.getvalue()}"
