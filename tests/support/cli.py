"""The real `nbjobs` command, run as a subprocess, and checks on what it prints."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ID_RE = re.compile(r"^[0-9a-f]{32}$")


def nbj(*args: str, home: Path | str | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run ``nbjobs ARGS`` (as ``python -m nbjobs``) with ``home`` as NBJOBS_HOME when given."""
    env = dict(os.environ)
    if home is not None:
        env["NBJOBS_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "nbjobs", *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def assert_bad_input(r: subprocess.CompletedProcess, usage: bool = False) -> str:
    """``r`` exited 2 with one ``nbjobs: error: ...`` line (or argparse's usage, with ``usage``) and no
    traceback; returns the error line."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.strip().splitlines()
    if usage:  # argparse's own usage errors: usage lines, then the error
        assert lines[-1].startswith("nbjobs") and ": error:" in lines[-1], r.stderr
    else:
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("nbjobs: error: "), r.stderr
    return lines[-1]


def nbj_here(*args: str, home: Path | str | None = None) -> subprocess.CompletedProcess:
    """``nbjobs ARGS`` run in this process (``nbjobs.cli.main``), as `nbj` runs it in a new one.

    For the long catalogues of refused input, where a new Python per case costs most of the test's
    time and tells nothing more: the same entry point, the same exit code (argparse's ``SystemExit``
    included), the same stdout and stderr.  No SQLite connection survives from or into the call,
    as none would across processes; the environment is restored.  (`nbj` still runs each kind of
    refusal once as a real process.)
    """
    import contextlib
    import io

    import nbjobs.store
    from nbjobs import cli

    out, err = io.StringIO(), io.StringIO()
    environ = dict(os.environ)
    if home is not None:
        os.environ["NBJOBS_HOME"] = str(home)
    stores = nbjobs.store._local.__dict__.setdefault("stores", {})
    saved = dict(stores)
    stores.clear()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(list(args))
            except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        for s in stores.values():
            s.close()
        stores.clear()
        stores.update(saved)
        os.environ.clear()
        os.environ.update(environ)
    return subprocess.CompletedProcess(["nbjobs", *args], code or 0, out.getvalue(), err.getvalue())
