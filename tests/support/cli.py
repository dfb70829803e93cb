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
