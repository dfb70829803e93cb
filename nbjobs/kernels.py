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
