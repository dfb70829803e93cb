"""End-to-end time of one trivial notebook: `nbjobs run --wait` next to plain `papermill`.

Both run the same 2-cell notebook, in the same run, on this machine.  nbjobs is measured with an
idle worker already running (the usual case after the first submit), through the real CLI, so
the figure includes the CLI's start-up, the submit, the claim, the runner, papermill and the
kernel.  The last line is the summary.

    python benchmarks/bench_run.py [--runs 5]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NB = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": None, "outputs": [],
                 "source": "n = 1"},
                {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": "x = n + 1"}],
      "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
      "nbformat": 4, "nbformat_minor": 5}


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    runs = ap.parse_args().runs
    tmp = Path(tempfile.mkdtemp(prefix="nbjobs-bench-"))
    nb = tmp / "trivial.ipynb"
    nb.write_text(json.dumps(NB))
    env = dict(os.environ, NBJOBS_HOME=str(tmp / "home"))
    worker = subprocess.Popen([sys.executable, "-m", "nbjobs", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        papermill_cmd = [sys.executable, "-m", "papermill", str(nb), str(tmp / "out.ipynb"), "-p", "n", "2",
                         "--no-progress-bar"]
        nbjobs_cmd = [sys.executable, "-m", "nbjobs", "run", str(nb), "-p", "n", "2", "--wait"]
        timed(papermill_cmd, env), timed(nbjobs_cmd, env)  # warm caches (pyc, disk) for both
        pm, nj = [], []
        for _ in range(runs):  # interleaved, so drift hits both alike
            pm.append(timed(papermill_cmd, env))
            nj.append(timed(nbjobs_cmd, env))
    finally:
        worker.terminate()
        worker.wait(30)
    pm_med, nj_med = statistics.median(pm), statistics.median(nj)
    print(f"{'':24}{'median s':>10}{'min s':>8}{'max s':>8}")
    print(f"{'papermill CLI':24}{pm_med:10.3f}{min(pm):8.3f}{max(pm):8.3f}")
    print(f"{'nbjobs run --wait':24}{nj_med:10.3f}{min(nj):8.3f}{max(nj):8.3f}")
    print(f"summary: trivial notebook, {runs} runs each: nbjobs run --wait {nj_med:.2f} s vs papermill "
          f"{pm_med:.2f} s = {nj_med / pm_med:.2f}x papermill")


if __name__ == "__main__":
    main()
