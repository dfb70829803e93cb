"""Argument checks: each returns the clean value or raises `BadInput`, one line that says what to do.

"""
from __future__ import annotations

import json
import keyword
import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

from ..errors import BadInput
from ..job import State

MAX_RETRIES = 100
MAX_TIMEOUT = 30 * 24 * 3600.0
MAX_PRIORITY = 1_000_000
MAX_RUNNING = 10_000


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                value = int(value)
            else:
                raise TypeError
        except TypeError:
            raise BadInput(f"{name} must be a whole number from {lo} to {hi}, not {value!r}") from None
    if not lo <= value <= hi:
        raise BadInput(f"{name} must be from {lo} to {hi}, not {value}")
    return value


def _check_seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise BadInput(f"{name} must be a number of seconds, not {value!r}") from None
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_TIMEOUT:
        raise BadInput(f"{name} must be more than 0 and at most {MAX_TIMEOUT:.0f} seconds (30 days), not {value}")
    return seconds


def _check_text(name: str, value: Any, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit \
            or any(ord(c) < 32 for c in value):
        raise BadInput(f"{name} must be a non-empty single-line string of at most {limit} characters, not {value!r}")
    return value.strip()


def _check_kernel(kernel: str | None) -> str | None:
    if kernel is None:
        return None
    from ..kernels import kernel_exists, kernel_names

    kernel = _check_text("kernel", kernel, 100)
    if not kernel_exists(kernel):
        raise BadInput(f"kernel {kernel!r} is not installed (installed: {', '.join(kernel_names()) or 'none'}); "
                       "pick one of those or install it with `python -m ipykernel install --user --name NAME`")
    return kernel


def _check_cwd(cwd: str | os.PathLike | None) -> str:
    path = Path(cwd).expanduser().absolute() if cwd else Path.cwd()
    if not path.is_dir():
        raise BadInput(f"working directory {path} does not exist; give an existing folder")
    return str(path)


def _read_notebook(path: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """Check that ``path`` is a readable notebook; return its absolute path and its JSON."""
    p = Path(path).expanduser().absolute()
    if not p.exists():
        raise BadInput(f"notebook {path} does not exist; check the path (relative to {Path.cwd()})")
    if p.is_dir() or p.suffix != ".ipynb":
        raise BadInput(f"{path} is not a notebook; give a .ipynb file")
    try:
        nb = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read notebook {path} ({exc}); check its permissions") from None
    except ValueError as exc:
        raise BadInput(f"notebook {path} is not valid JSON ({exc}); open and re-save it in Jupyter") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list) or nb.get("nbformat", 0) < 4:
        raise BadInput(f"{path} is not a Jupyter notebook in format 4 (no 'cells' list); re-save it in Jupyter")
    return str(p), nb


def _check_names(what: str, names: Sequence[str] | str | None) -> list[str]:
    """Variable names for inputs/outputs: identifiers, in order, without repeats."""
    if names is None:
        return []
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: list[str] = []
    for n in names:
        if not isinstance(n, str) or not n.isidentifier() or keyword.iskeyword(n):
            raise BadInput(f"{what} name {n!r} is not a valid Python variable name; use letters, digits and _")
        if n not in out:
            out.append(n)
    return out


def _check_state(s: str) -> None:
    try:
        State(s)
    except ValueError:
        raise BadInput(f"unknown state {s!r}; use one of: {', '.join(x.value for x in State)}") from None


def _check_callback(on_done: Any) -> None:
    if on_done is not None and not callable(on_done):
        raise BadInput(f"on_done must be a function taking the job, not {type(on_done).__name__}")


def check_wait_timeout(timeout: Any, what: str = "timeout") -> float | None:
    """A wait's timeout: None (no limit) or a finite number of seconds, 0 or more."""
    if timeout is None:
        return None
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        raise BadInput(f"{what} must be a number of seconds, not {timeout!r}") from None
    if not 0 <= seconds < math.inf:  # also false for nan
        raise BadInput(f"{what} must be 0 or more seconds (leave it out to wait without limit), not {timeout}")
    return seconds


def check_preload(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """The ``preload`` modules as a list, each one importable here, or `BadInput` that says which is not.

    >>> check_preload("json, csv")
    ['json', 'csv']
    """
    import importlib.util
    import sys

    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n and n.strip()]
    for name in names:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", name):
            raise BadInput(f"--preload takes module names separated by commas (e.g. pandas,numpy), not {name!r}")
        try:
            found = importlib.util.find_spec(name.split(".")[0]) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise BadInput(f"--preload: no module named {name.split('.')[0]!r} in this Python ({sys.executable}); "
                           "install it or leave it out")
    return names

