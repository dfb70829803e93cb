"""Notebook files for tests."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path


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


#: a notebook cell that records what a job sees of its kernel, to compare a warm kernel with a cold one
INSIDE = textwrap.dedent("""\
    import gc, os, sys, time, nbjobs
    _ip = get_ipython()
    def _kernel_started():  # epoch seconds, to 10 ms: now minus how long ago this process started
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])
        since_boot = float(open("/proc/uptime").read().split()[0])
        return time.time() - (since_boot - ticks / os.sysconf("SC_CLK_TCK"))
    nbjobs.record("inside", {
        "cwd": os.getcwd(), "path": sys.path, "env": dict(os.environ), "name": __name__,
        "names": sorted(k for k in globals() if not k.startswith("_")),
        "dh": [str(d) for d in _dh], "starting_dir": _ip.starting_dir,
        "execution_count": _ip.execution_count, "history": len(In),
        "argv": sys.argv[1:2] + sys.argv[3:], "modules": sorted(m for m in sys.modules if not m.startswith("nbjobs")),
        "kernel_started": _kernel_started(), "cmdline": open("/proc/self/cmdline", "rb").read().count(b"ipykernel"),
        "gc": [gc.isenabled(), gc.get_threshold()],
    })
    """)


def assert_warm_equals_cold(warm: dict, cold: dict, workdir: Path) -> None:
    """What two jobs recorded with `INSIDE` (``kernelspec`` added from the output notebook) is the
    same, but for what differs between any two jobs anyway (their ID, output folder, kernel pid)."""
    assert warm["cwd"] == cold["cwd"] == str(workdir)
    assert warm["dh"] == cold["dh"] == [str(workdir)] and warm["starting_dir"] == cold["starting_dir"] == str(workdir)
    assert warm["path"] == cold["path"]
    assert warm["name"] == cold["name"] == "__main__"
    assert warm["names"] == cold["names"]  # no extra variables in the namespace
    assert warm["execution_count"] == cold["execution_count"] and warm["history"] == cold["history"]
    assert warm["argv"] == cold["argv"] and warm["kernelspec"] == cold["kernelspec"] == "python3"
    assert warm["modules"] == cold["modules"]
    assert warm["gc"] == cold["gc"] and warm["gc"][0] is True, (warm["gc"], cold["gc"])  # the collector runs
    # the environment: the same variables, with values that differ only where two jobs differ anyway
    per_job = {"NBJOBS_OUTPUT_DIR", "NBJOBS_JOB_ID", "NBJOBS_HOME", "JPY_PARENT_PID", "JPY_SESSION_NAME"}
    assert set(warm["env"]) == set(cold["env"]), set(warm["env"]) ^ set(cold["env"])
    assert {k: v for k, v in warm["env"].items() if k not in per_job} == \
        {k: v for k, v in cold["env"].items() if k not in per_job}
