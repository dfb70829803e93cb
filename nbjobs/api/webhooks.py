"""Webhooks through the API: the home's default (`notify_default`) and a job's `deliveries`.  Sending
them is `nbjobs.notify`'s.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import policy
from .handle import _store


def notify_default(url: str | None = None, *, secret_env: str | None = None, on: str | None = None,
                   off: bool = False, home: Path | str | None = None) -> dict[str, Any]:
    """Show or set the home's default webhook (used by jobs without ``notify=``).  ``secret_env``
    names the worker's environment variable holding the HMAC signing secret (the value is never
    stored); ``on`` is ``end`` (final states, default), ``all`` (every state change) or ``failure`` (only
    failed and timed-out jobs); ``off=True`` removes them.

    >>> nbjobs.notify_default("https://hooks.example.com/nbjobs", secret_env="NBJOBS_WEBHOOK_SECRET")
    {'url': 'https://hooks.example.com/nbjobs', 'secret_env': 'NBJOBS_WEBHOOK_SECRET', 'on': 'end'}
    """
    from ..notify import check_env_name, check_url

    store = _store(home)
    if off:
        for k in ("notify_url", "notify_secret_env", "notify_on"):
            store.set_setting(k, None)
    else:
        url = check_url(url) if url is not None else None
        secret_env = check_env_name(secret_env) if secret_env is not None else None
        if on is not None:
            policy.check_notify_on(on, "on")
        for k, v in (("notify_url", url), ("notify_secret_env", secret_env), ("notify_on", on)):
            if v is not None:
                store.set_setting(k, v)
    return {"url": store.get_setting("notify_url"), "secret_env": store.get_setting("notify_secret_env"),
            "on": store.get_setting("notify_on") or "end"}


def deliveries(job_id: str, home: Path | str | None = None) -> list[dict[str, Any]]:
    """The webhook deliveries of a job: id, url, event, state (pending/delivered/failed),
    attempts, last status and error."""
    store = _store(home)
    return store.deliveries(store.resolve(job_id))

