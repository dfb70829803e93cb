"""A job's spec (the dict the store inserts) from a submit's arguments, checked: the common fields,
``options`` (timeouts, secrets, retry policy), dependencies and webhook, per-name limits, report.
`submit`, `run_notebook`, `schedule_add` and `nbjobs.sweep` build theirs here.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from .. import params, policy
from ..errors import BadInput
from ..job import code_hash
from .checks import (MAX_PRIORITY, MAX_RETRIES, MAX_RUNNING, _check_cwd, _check_int, _check_kernel, _check_seconds,
                     _check_text, _read_notebook)
from .handle import Job, _store


def _common(name: Any, retries: Any, timeout: Any, priority: Any, tags: Iterable[str] | str | None,
            key: Any, kernel: str | None, cwd: Any, parameters: Any) -> dict[str, Any]:
    if isinstance(tags, str):
        tags = [tags]
    return {
        "name": _check_text("name", name) if name is not None else None,
        "retries": _check_int("retries", retries, 0, MAX_RETRIES),
        "timeout": _check_seconds("timeout", timeout),
        "priority": _check_int("priority", priority, -MAX_PRIORITY, MAX_PRIORITY),
        "tags": [_check_text("tag", t, 64) for t in (tags or [])],
        "idem_key": _check_text("key", key) if key is not None else None,
        "kernel": _check_kernel(kernel),
        "cwd": _check_cwd(cwd),
        "parameters": params.check_json(dict(parameters or {})),
    }


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _options(cell_timeout: Any, secrets: Any, retry_on: Any, backoff: Any, infra_retries: Any = None) -> dict[str, Any]:
    """The job's ``options``: per-cell timeout, secret names (never values), retry policy, and its
    infrastructure budget (only when given: else the home's setting applies when it is needed)."""
    out: dict[str, Any] = {"cell_timeout": _check_seconds("cell_timeout", cell_timeout)}
    if infra_retries is not None:
        out["infra_retries"] = policy.check_infra_retries(infra_retries)
    names = [n.strip() for n in secrets.split(",")] if isinstance(secrets, str) else list(secrets or [])
    for n in names:
        if not isinstance(n, str) or not _ENV_NAME.match(n):
            raise BadInput(f"secret {n!r} is not an environment variable name; name the variable (e.g. "
                           "--secret API_TOKEN), never its value")
    if names:
        out["secrets"] = list(dict.fromkeys(names))
    if backoff is not None and not isinstance(backoff, dict):
        raise BadInput("backoff must be a dict like {'base': 1, 'factor': 2, 'cap': 300, 'jitter': 'full'}")
    unknown = set(backoff or {}) - {"base", "factor", "cap", "jitter"}
    if unknown:
        raise BadInput(f"unknown backoff setting(s) {', '.join(sorted(unknown))}; use base, factor, cap, jitter")
    out.update(policy.check_retry_options(retry_on, **(backoff or {})))
    return out


def _notebook_spec(path: Any, parameters: Any, name: Any, kernel: Any, cwd: Any, retries: Any, timeout: Any,
                   priority: Any, tags: Any, key: Any, cell_timeout: Any, secrets: Any, retry_on: Any,
                   backoff: Any, infra_retries: Any = None) -> dict[str, Any]:
    nb_path, nb = _read_notebook(path)
    spec = _common(name, retries, timeout, priority, tags, key, kernel, cwd, parameters)
    if spec["kernel"] is None:
        nb_kernel = (nb.get("metadata") or {}).get("kernelspec", {}).get("name") or "python3"
        spec["kernel"] = _check_kernel(nb_kernel)
    spec.update(kind="notebook", notebook=nb_path, code_hash=code_hash("notebook", notebook=nb_path),
                options=_options(cell_timeout, secrets, retry_on, backoff, infra_retries))
    spec["name"] = spec["name"] or Path(nb_path).stem
    return spec


def _default_cell_name(code: str) -> str:
    for line in code.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "%", "!", "import ", "from ")):
            return line[:40]
    return "cell"


def _flow(spec: dict[str, Any], home: Path | str | None, after: Any, after_any: bool, notify: str | None,
          notify_on: str | None) -> dict[str, Any]:
    """Add dependencies (resolved to full IDs; unknown or expired ones refused) and the webhook."""
    if after is not None:
        items = [after] if isinstance(after, (str, Job)) else list(after)
        ids: list[str] = []
        for item in items:
            texts = [item.id] if isinstance(item, Job) else [t for t in str(item).split(",") if t.strip()]
            for text in texts:
                ids.append(_store(home).resolve(text.strip()))
        if not ids and items:
            raise BadInput("after names no job; give job IDs (or unique prefixes) separated by commas")
        spec["after"] = list(dict.fromkeys(ids))
    if after_any:
        if not spec.get("after"):
            raise BadInput("after_any needs after=[job IDs] (--after-any goes with --after ID,...)")
        spec["options"]["after_any"] = True
    if notify is not None:
        from ..notify import check_url

        spec["options"]["notify"] = check_url(notify)
    if notify_on is not None:
        spec["options"]["notify_on"] = policy.check_notify_on(notify_on)
    return spec


def _limits(spec: dict[str, Any], concurrency_key: Any, max_running: Any) -> dict[str, Any]:
    """Add the per-name limit: at most ``max_running`` (default 1) running jobs share ``concurrency_key``."""
    if concurrency_key is None:
        if max_running is not None:
            raise BadInput("max_running goes with a concurrency key: --concurrency-key K --max-running N")
        return spec
    key = _check_text("concurrency_key", concurrency_key)
    if key.startswith("group:"):
        raise BadInput("concurrency keys starting with 'group:' are kept for --max-parallel of sweeps; pick another")
    spec["concurrency_key"] = key
    spec["max_running"] = _check_int("max_running", 1 if max_running is None else max_running, 1, MAX_RUNNING)
    return spec


def _report_option(spec: dict[str, Any], report: Any) -> dict[str, Any]:
    """``report="html"``: the worker renders the output notebook when the job succeeds."""
    if report is not None:
        from ..reports import FORMATS

        if report not in FORMATS:
            raise BadInput(f"report must be {' or '.join(repr(f) for f in FORMATS)} (a standalone HTML page of the "
                           f"output notebook), not {report!r}")
        spec["options"]["report"] = report
    return spec

