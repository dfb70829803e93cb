"""Kernels: which kernels exist, cheaply.  (The warm pool of pre-started kernels comes here too.)

`kernel_exists` answers from the kernelspec folders without importing jupyter_client, so a
submit can refuse an unknown kernel in well under a millisecond.

>>> kernel_exists("python3")
True
>>> kernel_exists("no-such-kernel")
False
"""
from __future__ import annotations

import importlib.util
import os
import time

_cache: dict[str, tuple[float, list[str]]] = {}


def kernel_dirs() -> list[str]:
    from jupyter_core.paths import jupyter_path  # light: jupyter_core only

    return jupyter_path("kernels")


def kernel_names(max_age: float = 5.0) -> list[str]:
    """Names of installed kernels (cached for ``max_age`` seconds)."""
    hit = _cache.get("names")
    if hit and time.monotonic() - hit[0] < max_age:
        return hit[1]
    names = set()
    for d in kernel_dirs():
        try:
            for entry in os.scandir(d):
                if os.path.isfile(os.path.join(entry.path, "kernel.json")):
                    names.add(entry.name.lower())
        except OSError:
            continue
    if "python3" not in names and importlib.util.find_spec("ipykernel") is not None:
        names.add("python3")  # ipykernel's built-in spec, as jupyter_client's KernelSpecManager does
    result = sorted(names)
    _cache["names"] = (time.monotonic(), result)
    return result


def kernel_exists(name: str) -> bool:
    return name.lower() in kernel_names()


_PLAIN_PYTHONS = frozenset({"python", "python3", "python%d.%d" % __import__("sys").version_info[:2]})


def kernel_for_python(executable: str | None = None) -> str:
    """The name of the kernelspec that runs ``executable`` (default: this Python), so a job runs
    in the caller's own environment; ``'python3'`` when none does.

    A spec whose ``argv[0]`` is this very interpreter path wins (paths are not resolved through
    symlinks: two virtual environments share one binary but not their packages); next one whose
    ``argv[0]`` is a bare ``python``/``python3`` (jupyter_client runs those with the launching
    interpreter, here the worker's, which is this Python when it was started from here);
    ``python3`` is preferred among equals.  Reads only the ``kernel.json`` files; cached per
    interpreter.

    >>> isinstance(kernel_for_python(), str)
    True
    """
    import json
    import sys

    exe = os.path.normpath(os.path.abspath(executable or sys.executable))
    hit = _cache.get("for:" + exe)
    if hit:
        return hit[1][0]
    best: tuple[int, int, str] | None = None
    for d in kernel_dirs():
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            try:
                with open(os.path.join(entry.path, "kernel.json")) as f:
                    argv = json.load(f).get("argv") or []
            except (OSError, ValueError, AttributeError):
                continue
            if not argv or not isinstance(argv[0], str):
                continue
            if os.path.sep in argv[0] and os.path.normpath(os.path.abspath(argv[0])) == exe:
                rank = 0
            elif argv[0] in _PLAIN_PYTHONS:
                rank = 1
            else:
                continue
            candidate = (rank, 0 if entry.name.lower() == "python3" else 1, entry.name.lower())
            best = candidate if best is None or candidate < best else best
    name = best[2] if best else "python3"
    _cache["for:" + exe] = (time.monotonic(), [name])
    return name
